"""The params schema: profiles, validation errors naming file and key, overrides, nothing written on error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from effbert import params
from effbert.errors import ParamsError
from tests.conftest import ROOT, run_cli

PROFILES = [ROOT / "params" / "demo.yaml", ROOT / "params" / "smoke.yaml", ROOT / "params" / "paper.yaml"]


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profiles_are_complete_and_valid(path: Path) -> None:
    raw = params.read_yaml(path)
    validated = params.load(path)
    # complete: every key of the schema is spelled out (an unset search.proxy_task is filled in from tasks)
    if raw["search"]["proxy_task"] is None:
        raw["search"]["proxy_task"] = validated.proxy_task
    assert raw == validated.model_dump(mode="json", exclude={"dag"})  # dag: derived, written to params.yaml only


def test_dag_lists_follow_methods_and_tasks() -> None:
    """`dag` (what dvc.yaml's foreach stages iterate over) follows `methods` and `tasks`: DynaBERT skips span QA,
    FastBERT keeps classification only, TinyBERT's tasks split by augmentation, a method left out has no stage."""
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    raw["tasks"] = ["sst2", "stsb", "squad_v1"]
    raw["tinybert"]["augment"]["tasks"] = ["stsb"]
    dag = params.validate(raw).dag
    assert dag["dynabert"] == ["sst2", "stsb"] and dag["fastbert"] == ["sst2"]
    assert dag["tinybert_plain"] == ["sst2", "squad_v1"] and dag["tinybert_augmented"] == ["stsb"]
    assert "fastbert-sst2" in dag["evaluations"] and "fastbert-stsb" not in dag["evaluations"]
    assert dag["evaluations"]["theseus-squad_v1"] == {"model": "theseus", "task": "squad_v1"}
    raw["methods"], raw["variants"] = ["efficientbert", "theseus"], []
    dag = params.validate(raw).dag
    assert dag["tinybert_general"] == [] and dag["dynabert"] == [] and dag["theseus"] == ["sst2", "stsb", "squad_v1"]
    assert sorted({e["model"] for e in dag["evaluations"].values()}) == ["student", "teacher", "theseus"]
    assert dag["variants"] == [] and dag["variant_students"] == {}
    # the workspace file spells dag out; reading it back ignores it (derived, never an input)
    assert params.validate({**raw, "dag": {"anything": 1}}).dag == dag


def test_dag_lists_follow_variants() -> None:
    """`variants` gives each variant a general stage and a student per task it defines (EfficientBERT+: no span QA,
    its heads are stage 3's GLUE heads), each evaluated like the main student."""
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    raw["tasks"], raw["variants"] = ["sst2", "squad_v1"], ["tiny", "plus"]
    dag = params.validate(raw).dag
    assert dag["variants"] == ["tiny", "plus"]
    assert dag["variant_students"] == {
        "student_tiny-sst2": {"variant": "tiny", "model": "student_tiny", "task": "sst2"},
        "student_tiny-squad_v1": {"variant": "tiny", "model": "student_tiny", "task": "squad_v1"},
        "student_plus-sst2": {"variant": "plus", "model": "student_plus", "task": "sst2"},
    }
    assert {"student_tiny-squad_v1", "student_plus-sst2"} <= set(dag["evaluations"])
    assert "student_plus-squad_v1" not in dag["evaluations"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": ["tiny", "tiny"]}, "variants must not repeat"),
        ({"variants": ["plus"], "tasks": ["sst2", "wnli"]}, "QNLI head"),
        ({"variants": ["huge"]}, "variants.0"),
        ({"student": {"tiny_hidden_size": 40}}, "multiple of student.num_attention_heads"),
        ({"student": {"tiny_hidden_size": 48}}, "below student.hidden_size"),
    ],
)
def test_bad_variants_are_refused(change: dict[str, object], message: str) -> None:
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    with pytest.raises(params.ParamsError, match=message):
        params.validate(raw, "p.yaml")


def test_methods_must_include_efficientbert() -> None:
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    raw["methods"] = ["tinybert"]
    with pytest.raises(params.ParamsError, match="methods: must include efficientbert"):
        params.validate(raw, "p.yaml")
    raw["methods"] = ["efficientbert", "bert"]
    with pytest.raises(params.ParamsError, match=r"methods\.1"):
        params.validate(raw, "p.yaml")


def test_unset_proxy_task_is_the_first_sentence_task(tmp_path: Path) -> None:
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    assert raw["search"]["proxy_task"] is None
    assert params.validate(raw).proxy_task == "sst2"
    assert params.validate(params.apply_overrides(raw, ["tasks=[squad_v1, wnli]", "variants=[]"])).proxy_task == "wnli"
    assert params.validate(params.apply_overrides(raw, ["tasks=[rte, mrpc]"])).search.proxy_task == "rte"
    with pytest.raises(ParamsError) as err:
        params.validate(params.apply_overrides(raw, ["tasks=[squad_v1]"]), "p.yaml")
    message = str(err.value)
    assert message.startswith("p.yaml: search.proxy_task is unset and tasks ['squad_v1'] hold no sentence task")
    assert "set search.proxy_task" in message and "\n" not in message


def test_search_budget_names_each_stage() -> None:
    search = params.load(ROOT / "params" / "smoke.yaml").search
    assert [search.budget(n) for n in (1, 2, 3)] == [search.stage1, search.stage2, search.stage3]
    assert search.budget(3).candidates == search.stage3.candidates
    with pytest.raises(ValueError, match="search stage must be 1, 2 or 3, got 4"):
        search.budget(4)


def test_profiles_share_the_fixed_names() -> None:
    demo = params.load(ROOT / "params" / "demo.yaml")
    assert demo.tasks == ["sst2", "mrpc", "squad_v1"]
    paper = params.load(ROOT / "params" / "paper.yaml")
    assert paper.finetune_teacher.model == "bert-base-uncased"
    assert set(paper.tasks) == {
        "cola",
        "sst2",
        "mrpc",
        "stsb",
        "qqp",
        "mnli",
        "qnli",
        "rte",
        "wnli",
        "squad_v1",
        "squad_v2",
    }
    assert paper.finetune_teacher.for_task("qqp").eval_steps == 250
    assert paper.search.proxy_task == "mnli" and paper.search.param_window == (15.0e6, 16.0e6)  # the paper's


def _write(tmp_path: Path, mutate: dict) -> Path:
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    for dotted, value in mutate.items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        ({"finetune_teacher.bogus": 1}, "finetune_teacher.bogus: unknown key"),
        ({"finetune_teacher.epochs": "many"}, "finetune_teacher.epochs: Input should be a valid number"),
        ({"data.max_seq_length": 4096}, "data.max_seq_length: Input should be less than or equal to 512"),
        ({"data.heldout_fraction": 1.5}, "data.heldout_fraction: Input should be less than 1"),
        ({"tasks": ["sst2", "sst3"]}, "tasks: unknown task 'sst3'"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"finetune_teacher.task_overrides": {"nope": {}}}, "unknown task 'nope'"),
        ({"search.proxy_task": "cola"}, "search.proxy_task='cola' must be one of tasks"),
        ({"search.proxy_task": "squad_v1"}, "search.proxy_task='squad_v1': use a classification task"),
        ({"search.strategy": "bayes"}, "search.strategy: Input should be 'lanas', 'evolution' or 'random'"),
        ({"search.param_window": [16.0e6, 15.0e6]}, "search.param_window: must be [low, high]"),
        ({"search.latency.runs": 5}, "search.latency.runs: Input should be greater than or equal to 20"),
    ],
)
def test_invalid_values_name_file_and_key(tmp_path: Path, mutate: dict, expected: str) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(ParamsError) as err:
        params.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\ntasks: [sst2\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=rf"^{path}:3: invalid YAML"):
        params.load(path)


def test_overrides_parse_yaml_values() -> None:
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    overrides = ["finetune_teacher.learning_rate=1e-4", "tasks=[rte]", "search.proxy_task=rte", "data.corpus=null"]
    merged = params.apply_overrides(raw, overrides)
    p = params.validate(merged)
    assert p.finetune_teacher.learning_rate == pytest.approx(1e-4)
    assert p.tasks == ["rte"] and p.data.corpus is None
    assert raw["tasks"] != ["rte"]  # the input is not modified
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        params.apply_overrides(raw, ["novalue"])
    with pytest.raises(ParamsError, match="'seed' is not a section"):
        params.apply_overrides(raw, ["seed.x=1"])


def test_cli_rejects_bad_override_and_writes_nothing(project: Path) -> None:
    before = (project / "params.yaml").read_bytes()
    result = run_cli(["effbert", "run", "--params", "params/smoke.yaml", "--set", "data.doc_stride=0"], project)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    expected = "params/smoke.yaml (with --set): data.doc_stride: Input should be greater than or equal to 1 (got 0)"
    assert lines == [f"effbert: error: {expected}"]
    assert (project / "params.yaml").read_bytes() == before
    assert not (project / "results").exists() and not (project / "mlflow.db").exists()


def test_check_params_cli(tmp_path: Path) -> None:
    good = run_cli(["effbert", "check-params", str(ROOT / "params" / "smoke.yaml")], tmp_path)
    assert good.returncode == 0 and "finetune_teacher:" in good.stdout
    bad = run_cli(["effbert", "check-params", str(_write(tmp_path, {"evaluate.n_best": 0}))], tmp_path)
    assert bad.returncode == 2 and "evaluate.n_best" in bad.stderr and "Traceback" not in bad.stderr


def test_a_profile_run_never_rewrites_another_profile(project: Path) -> None:
    """`effbert run --params params/smoke.yaml` writes the workspace params.yaml only; `make demo` (the demo profile)
    then writes the demo's params again, whatever ran before."""
    demo_before = (project / "params" / "demo.yaml").read_bytes()
    smoke = run_cli(["effbert", "run", "--params", "params/smoke.yaml", "--engine", "snakemake", "--dry-run"], project)
    assert smoke.returncode == 0, smoke.stderr
    assert (project / "params" / "demo.yaml").read_bytes() == demo_before
    workspace = params.load(project / "params.yaml")
    assert workspace == params.load(project / "params" / "smoke.yaml")
    assert "--params params/smoke.yaml" in (project / "params.yaml").read_text().splitlines()[0]
    demo = run_cli(["effbert", "run", "--params", "params/demo.yaml", "--engine", "snakemake", "--dry-run"], project)
    assert demo.returncode == 0, demo.stderr
    assert params.load(project / "params.yaml") == params.load(project / "params" / "demo.yaml")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "effbert run --params params/demo.yaml" in makefile  # make demo names its profile
