"""One DAG, two engines: the Snakefile's rules are exactly dvc.yaml's stages, with the same edges."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from effbert import dag
from tests.conftest import ROOT, run_cli


def _dvc_edges(project: Path) -> set[tuple[str, str]]:
    dot = run_cli(["dvc", "dag", "--dot"], project)
    assert dot.returncode == 0, dot.stderr
    pairs = re.findall(r'"([^"]+)"\s*->\s*"([^"]+)"', dot.stdout)
    return {(a, b) for a, b in pairs}


def _snakemake_rulegraph(project: Path, *targets: str) -> tuple[set[str], set[tuple[str, str]]]:
    result = run_cli(["snakemake", "--rulegraph", "--cores", "1", *targets], project)
    assert result.returncode == 0, result.stderr
    labels = dict(re.findall(r"(\d+)\[label = \"([^\"]+)\"", result.stdout))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"\b(\d+) -> (\d+)", result.stdout)}
    return set(labels.values()), edges


def test_snakefile_rules_equal_dvc_stages(project: Path) -> None:
    every = dag.load_stages(project)
    stages = [s for s in every if not s.optional]
    names = {s.name for s in stages}
    assert {"prepare_data@sst2", "finetune_teacher@squad_v1", "evaluate@teacher-mrpc", "eval_summary"} <= names
    assert {"search_stage1", "search_stage2", "search_stage3"} <= names
    rules, rule_edges = _snakemake_rulegraph(project)
    by_rule = {s.rule: s.name for s in every}
    assert rules - {"all"} == {s.rule for s in stages}  # the default target leaves optional stages out
    snake = {(by_rule[a], by_rule[b]) for a, b in rule_edges if a != "all" and b != "all"}
    dvc_edges = {(a, b) for a, b in _dvc_edges(project) if a in names and b in names}
    assert dvc_edges == dag.edges(stages)
    # the one difference: a Snakemake rule takes its code files as inputs (mtime trigger) instead of the digest
    code_edges = {("code_digest", s.name) for s in stages if s.name != "code_digest"}
    assert code_edges <= dvc_edges and snake == dvc_edges - code_edges
    assert ("search_stage3", "final_distill_general") in snake  # the search winner feeds final distillation
    # an optional stage is still one DAG: asked for by its output, Snakemake plans it after the stages it reads
    optional = [s for s in every if s.optional]
    assert [s.name for s in optional] == ["search_quality"]
    rules, rule_edges = _snakemake_rulegraph(project, "results/search_quality")
    planned = {by_rule[r] for r in rules}
    assert {"search_quality", "search_stage1", "warmup_kd", "finetune_teacher@sst2"} <= planned
    assert "final_distill_general" not in planned
    snake = {(by_rule[a], by_rule[b]) for a, b in rule_edges}
    assert snake == {(a, b) for a, b in dag.edges(every) if a in planned and b in planned and a != "code_digest"}


def test_snakemake_dry_run_plans_every_stage(project: Path) -> None:
    result = run_cli(["snakemake", "-n", "--cores", "2", "--quiet", "rules"], project)
    assert result.returncode == 0, result.stderr
    stages = dag.load_stages(project)
    for stage in stages:
        if stage.optional:
            continue  # not in the default target (see test_snakefile_rules_equal_dvc_stages)
        assert re.search(rf"^{stage.rule}\s+1$", result.stdout, re.M), stage.rule


def test_rule_params_mirror_dvc_params() -> None:
    stages = {s.name: s for s in dag.load_stages(ROOT)}
    teacher = stages["finetune_teacher@sst2"]
    assert teacher.params["seed"] == 42
    assert "learning_rate" in teacher.params["finetune_teacher"]
    assert teacher.is_training and not stages["evaluate@teacher-sst2"].is_training
    assert all(stages[f"{m}@sst2"].is_training for m in ("tinybert", "theseus", "dynabert", "fastbert"))


def test_every_training_command_is_a_command() -> None:
    from effbert.cli import COMMANDS
    from effbert.launch import DDP_COMMANDS, GPU_COMMANDS

    assert DDP_COMMANDS < GPU_COMMANDS <= set(COMMANDS)


def test_efficientbert_plus_start_trains_nothing_so_it_runs_as_one_process() -> None:
    """``final-distill-general --variant plus`` only cuts weights: no torchrun relaunch, no GPU job under SLURM."""
    from effbert.launch import relaunch, trains, trains_distributed

    plus = ["final-distill-general", "--supernet", "s", "--variant", "plus", "--params", "params/smoke.yaml"]
    tiny = [*plus[:4], "--variant=tiny", *plus[6:]]
    assert not trains(plus) and not trains_distributed(plus) and relaunch(plus) is None
    assert trains(tiny) and trains_distributed(tiny) and trains(["search-stage1"]) and not trains([])


def test_a_stage_reserves_the_threads_its_params_give_and_timing_stages_run_alone() -> None:
    """Snakemake runs stages side by side only where their ``threads`` params say they fit (StageSpec.threads)."""

    def spec(**params: object) -> dag.StageSpec:
        return dag.StageSpec("s", "s", "effbert s", deps=(), outs=(), params=dict(params))

    section = {"epochs": 1.0, "threads": 1, "task_overrides": {"sst2": {"epochs": 2.0, "threads": None}}}
    assert spec(seed=42, finetune_teacher=section).threads(2) == 1  # an override's null inherits
    assert spec(finetune_teacher={**section, "threads": None}).threads(2) == 2  # null: torch's default, every core
    assert spec(prepare_data={"num_proc": 1}).threads(4) == 4  # no threads key: every core
    assert spec(**{"finetune_teacher.threads": 3}).threads(2) == 2  # at most the cores
    overrides = {"sst2": {"threads": 2}}
    assert spec(t={"threads": 1, "task_overrides": overrides}).threads(4) == 2  # every task's override counts
    theseus = {"compress": {"threads": 1}, "finetune": {"threads": 1}}
    assert spec(theseus=theseus, **{"search.latency": {"threads": 1}}).threads(2) == 2  # it times models: alone
    assert spec(theseus=theseus, latency={"threads": None}).threads(2) == 2
    assert spec(search={"latency": {"threads": 1}}, theseus=theseus).threads(2) == 2  # a protocol in a section
    assert spec(theseus=theseus).threads(2) == 1


def test_inputs_map_onto_producing_outputs() -> None:
    stages = dag.load_stages(ROOT)
    summary = next(s for s in stages if s.name == "eval_summary")
    inputs = dag.snakemake_inputs(summary, stages)
    assert "results/eval" not in inputs  # a parent of outputs becomes those outputs
    assert {"results/eval/teacher/sst2", "results/eval/teacher/squad_v1"} <= set(inputs)
    assert "results/code" in inputs  # its code digest lies in the code_digest stage's output (DVC's view)
    with_code = dag.snakemake_inputs(summary, stages, ROOT)  # Snakemake's: the files the digest hashes
    assert "results/code" not in with_code and "effbert/stages/eval_summary.py" in with_code
    digest = next(s for s in stages if s.name == "code_digest")
    assert dag.snakemake_inputs(digest, stages) == ["effbert"]
    code_files = dag.snakemake_inputs(digest, stages, ROOT)  # a source folder: its files, for the mtime trigger
    assert "effbert/stages/eval_summary.py" in code_files and not any(".pyc" in f for f in code_files)
    spec = dag.StageSpec("x", "x", "true", deps=("results/prepare_data/sst2/train",), outs=("results/x",))
    producer = dag.StageSpec("p", "p", "true", deps=(), outs=("results/prepare_data/sst2",))
    assert dag.snakemake_inputs(spec, [spec, producer]) == ["results/prepare_data/sst2"]
    assert dag.edges([spec, producer]) == {("p", "x")}


def test_every_stage_writes_directories_with_one_effbert_command() -> None:
    for stage in dag.load_stages(ROOT):  # its code and params: tests/test_code_deps.py
        assert all(dag.is_directory_out(out) for out in stage.outs)
        assert stage.cmd.startswith("effbert "), stage.name


def test_run_targets_name_stages_or_families() -> None:
    from effbert.errors import EffbertError
    from effbert.pipeline import resolve_targets

    dvc_targets, outputs = resolve_targets(ROOT, ["search_quality", "final_distill"])
    assert dvc_targets[0] == "workflow/optional/dvc.yaml:search_quality"  # an optional stage by its file
    assert dvc_targets[1:] == [f"final_distill@{t}" for t in ("sst2", "mrpc", "squad_v1")]  # a family: every task
    assert outputs[0] == "results/search_quality" and "results/models/student/sst2" in outputs
    assert resolve_targets(ROOT, []) == ([], [])
    with pytest.raises(EffbertError, match="--target nope: no such stage"):
        resolve_targets(ROOT, ["nope"])


def test_run_prints_the_overhead_outside_the_stage_runs() -> None:
    from effbert.pipeline import overhead_line

    line = overhead_line(100.0, [40.0, 50.0, 4.0])
    assert line.startswith("Stage runs: 94.0 s; outside them (start-up, tracking setup, engine hashing and lock): ")
    assert line.endswith(" 6.0 s = 2.0 s per stage")
    assert overhead_line(1.0, []).endswith("= 0.0 s per stage")


def test_commands_name_whole_stage_outputs() -> None:
    """A command reads another stage's output by the directory that stage declares (or a parent of several), never
    a folder inside it: each stage's reader joins its own split names (final_distill's --corpus once named
    ``results/prepare_corpus/corpus`` and failed on ``.../corpus/corpus``)."""
    stages = dag.load_stages(ROOT)
    outputs = {out for stage in stages for out in stage.outs}
    for stage in stages:
        for token in stage.cmd.split():
            if token.startswith("results/") and token not in stage.outs:
                inside = [out for out in outputs if token.startswith(out + "/")]
                assert not inside, f"{stage.name}: {token} lies inside the output {inside[0]}"


def test_both_engines_plan_the_paper_profile_for_its_eleven_tasks(project: Path) -> None:
    """``effbert run --dry-run`` on the paper profile, with its local data folders present but empty: DVC and
    Snakemake plan the same jobs, every method's and variant's stages for the tasks it defines, on the 9 GLUE tasks
    and both SQuADs."""
    for folder in ("glue_data", "squad_data", "corpus/wikipedia"):
        (project / folder).mkdir(parents=True)
    dvc = run_cli(["effbert", "run", "--params", "params/paper.yaml", "--dry-run"], project)
    assert dvc.returncode == 0, dvc.stderr[-2000:]
    planned = set(re.findall(r"^Would run stage '([^']+)'", dvc.stdout, re.M))
    stages = [s for s in dag.load_stages(project) if not s.optional]
    assert planned == {s.name for s in stages}  # a fresh workspace: everything
    glue = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]
    for task in [*glue, "squad_v1", "squad_v2"]:
        for family in ("prepare_data", "finetune_teacher", "final_distill", "theseus"):
            assert f"{family}@{task}" in planned, (family, task)
        assert {f"tinybert@{task}", f"tinybert_augmented@{task}"} & planned  # augmented: the 8 GLUE tasks
        assert f"evaluate@student-{task}" in planned and f"evaluate@teacher-{task}" in planned
    assert {f"dynabert@{t}" for t in glue} <= planned and "dynabert@squad_v1" not in planned
    assert "fastbert@stsb" not in planned and "fastbert@squad_v2" not in planned  # classification only
    assert {f"tinybert_augment@{t}" for t in glue if t != "wnli"} <= planned
    # the variants: EfficientBERT+ on the GLUE tasks (stage 3's heads), TINY and ++ on all 11, each exported
    assert {"variant_general@plus", "variant_general@tiny", "variant_general@plusplus"} <= planned
    for task in [*glue, "squad_v1", "squad_v2"]:
        for model in ("student_tiny", "student_plusplus"):
            assert {f"variant_distill@{model}-{task}", f"evaluate@{model}-{task}"} <= planned, (model, task)
            assert f"variant_export@{model}-{task}" in planned
    assert {f"variant_distill@student_plus-{t}" for t in glue} <= planned
    assert "variant_distill@student_plus-squad_v1" not in planned
    snake = run_cli(["effbert", "run", "--params", "params/paper.yaml", "--engine", "snakemake", "--dry-run"], project)
    assert snake.returncode == 0, snake.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", snake.stdout.split("Job stats:", 1)[1], re.M))
    assert {rule for rule in jobs if rule not in ("all", "total")} == {s.rule for s in stages}
