"""The report stage on a tiny results tree: tiny random student/teacher, a small stand-in for BERT-base, made-up
metrics and search outputs; what it writes, what it measures, what it reads, and its errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from effbert import params as params_mod
from effbert.distill.projection import FIT_DENSE_FILE
from effbert.errors import EffbertError
from effbert.methods.efficientbert.architecture import Architecture, LayerSpec
from effbert.report.document import headline_metrics
from effbert.report.inputs import ReportPaths, collect
from effbert.report.render import network_references, table_summaries
from effbert.report.sections.quality import data_label
from effbert.stages.report import make_report
from tests.report.report_samples import SMOKE_PARAMS, STAGE_LAYERS, stand_in_png

TEACHER_HIDDEN = 64
STUDENT_LAYERS = [
    ("tanh(linear2_2(gelu(linear2_2(x,wb1)),wb2))", 2, 16),
    ("linear1_4(relu(mul(linear1_4(x,wb1),x)),wb2)", 1, 8),
]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _tiny_bert(hidden: int = TEACHER_HIDDEN) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=99,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )


def _results_tree(root: Path) -> ReportPaths:
    """A results folder with the files the stage reads; models only for mrpc (sst2 and squad_v1 have none)."""
    from safetensors.torch import save_file
    from transformers import BertForSequenceClassification

    from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
    from effbert.methods.efficientbert.modeling_effbert import EffBertForSequenceClassification

    results = root / "results"
    paths = ReportPaths.under(results, root / "params.yaml")
    paths.params_file.write_text(SMOKE_PARAMS.read_text(encoding="utf-8"), encoding="utf-8")
    torch.manual_seed(0)
    student_config = EffBertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        embedding_size=8,
        max_position_embeddings=128,
        ffn_exprs=[expr for expr, _, _ in STUDENT_LAYERS],
        ffn_units=[units for _, units, _ in STUDENT_LAYERS],
        ffn_widths=[width for _, _, width in STUDENT_LAYERS],
    )
    EffBertForSequenceClassification(student_config).save_pretrained(paths.student_models / "mrpc")
    BertForSequenceClassification(_tiny_bert()).save_pretrained(paths.teacher_models / "mrpc")
    paths.student_general.mkdir(parents=True)
    save_file(
        {"fit_dense.weight": torch.zeros(TEACHER_HIDDEN, 32), "fit_dense.bias": torch.zeros(TEACHER_HIDDEN)},
        str(paths.student_general / FIT_DENSE_FILE),
    )
    summary = {
        "teacher": {"mrpc": {"rows": 408, "score": 0.77, "vs_teacher": 1.0, "f1": 0.82, "accuracy": 0.72}},
        "student": {
            "mrpc": {"rows": 408, "score": 0.75, "vs_teacher": 0.974, "f1": 0.81, "accuracy": 0.69},
            "sst2": {"rows": 872, "score": 0.81, "vs_teacher": None, "accuracy": 0.81},
        },
    }
    _write_json(paths.eval_summary / "summary.json", summary)
    _write_json(paths.eval_summary / "lineage.json", {"run_id": "r" * 32, "stage": "eval_summary", "digest": "d" * 64})
    architecture = Architecture("winner", 48, tuple(LayerSpec(e, u, w) for e, u, w, _ in STAGE_LAYERS))
    for number, directory in enumerate(paths.search_stages, start=1):
        _write_json(
            directory / "metrics.json",
            {"stage": number, "strategy": "lanas", "candidates": 3, "failed": 1, "best_fitness": 0.7,
             "vanilla_fitness": 0.69, "gain_over_vanilla": 0.01, "param_window": [1.0e6, 1.1e6]},
        )  # fmt: skip
        architecture.save(directory / "architecture.json")
        (directory / "search.png").write_bytes(stand_in_png(f"stage {number}"))
    assert paths.search_quality is not None and paths.export is not None and paths.predict_test is not None
    _write_json(
        paths.search_quality / "metrics.json",
        {"candidates": 3, "proxy_task": "sst2", "kendall_tau_inherit": 1.0, "kendall_p_inherit": 0.33,
         "kendall_tau_scratch": -0.33, "kendall_p_scratch": 1.0, "search_stage": "search_stage1"},
    )  # fmt: skip
    _write_json(paths.export / "mrpc" / "onnx.json", {"opset": 17, "parity": {"max_abs_diff": 1e-7, "passed": True}})
    _write_json(paths.export / "mrpc" / "registry.json", {"name": "effbert-mrpc", "alias": "champion", "version": 1})
    _write_json(
        paths.predict_test / "manifest.json",
        {"files": {"MRPC.tsv": {"task": "mrpc", "split": "test", "rows": 1725}}, "glue": {"missing": ["CoLA.tsv"]}},
    )
    _write_json(
        paths.prepare_data / "mrpc" / "meta.json",
        {"tokenizer": "dist:x", "source_sha256": {"train": "a" * 64, "dev": "b" * 64}},
    )
    return paths


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    return _results_tree(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def fake_bert_base() -> Any:
    """A small BERT standing in for the random-init BERT-base (the real one takes seconds to build and time)."""
    from transformers import BertModel

    torch.manual_seed(1)
    return BertModel(_tiny_bert(96), add_pooling_layer=False)


@pytest.fixture(scope="module")
def written(
    tree: ReportPaths, fake_bert_base: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("out")
        return make_report(params_mod.load(SMOKE_PARAMS), tree, out, bert_base=fake_bert_base), out
    finally:
        torch.set_num_threads(threads)


def test_the_stage_writes_both_pages_the_data_and_the_figures(written: tuple[dict[str, Any], Path]) -> None:
    record, out = written
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["latency.png", "quality.png", "search_stage1.png", "search_stage2.png", "search_stage3.png"]
    assert json.loads((out / "report.json").read_text(encoding="utf-8")) == record
    page = (out / "report.html").read_text(encoding="utf-8")
    assert network_references(page) == [] and page.count("<img ") == len(figures)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for caption, _ in table_summaries(record):
        assert f"<caption>{caption.split('(')[0]}" in page.replace("&#x27;", "'")
        assert caption.split(". ", 1)[1][:60] in markdown
    assert params_mod.validate(yaml.safe_load(record["params_yaml"])) == params_mod.load(SMOKE_PARAMS)


def test_size_and_speed_are_measured_on_the_first_task_with_both_models(
    written: tuple[dict[str, Any], Path], tree: ReportPaths, fake_bert_base: Any
) -> None:
    from effbert.measure.size import model_params
    from effbert.methods.efficientbert.supernet import param_count
    from effbert.models.auto import load_encoder

    measured = written[0]["data"]["size_speed"]
    assert measured["task"] == "mrpc"
    student, teacher = load_encoder(str(tree.student_models / "mrpc")), load_encoder(str(tree.teacher_models / "mrpc"))
    sizes = measured["sizes"]
    assert sizes["student"]["params"] == param_count(student)
    assert sizes["student"]["params_without_embeddings"] == param_count(student, include_embeddings=False)
    assert sizes["student"]["fit_dense"] == TEACHER_HIDDEN * 32 + TEACHER_HIDDEN
    assert sizes["student"]["params_with_fit_dense"] == sizes["student"]["params"] + sizes["student"]["fit_dense"]
    assert sizes["teacher"]["params"] == model_params(teacher)
    embeddings = sum(p.numel() for n, p in teacher.named_parameters() if n.startswith("embeddings."))
    assert sizes["teacher"]["params_without_embeddings"] == sizes["teacher"]["params"] - embeddings
    assert sizes["bert_base"]["params"] == model_params(fake_bert_base)
    assert 0 < sizes["student"]["macs"] < sizes["teacher"]["macs"] < sizes["bert_base"]["macs"]
    measured_at = {(row["batch_size"], row["model"]) for row in measured["latency"]}
    assert measured_at == {(1, "student"), (1, "teacher"), (1, "bert_base"), (4, "student"), (4, "teacher")}
    assert all(row["runs"] >= 20 and row["seq_len"] == 32 for row in measured["latency"])
    assert measured["protocol"]["linear_kernel"].startswith("oneDNN for every model")  # like for like
    metrics = headline_metrics(written[0])
    assert {"speedup_vs_teacher/b1", "speedup_vs_bert_base/b1", "speedup_vs_teacher/b4"} <= set(metrics)
    assert "speedup_vs_bert_base/b4" not in metrics and metrics["student_vs_teacher/mrpc"] == pytest.approx(0.974)


def test_every_input_is_read(written: tuple[dict[str, Any], Path], tree: ReportPaths) -> None:
    record = written[0]
    data = record["data"]
    assert [s["layers"][0]["formula"] for s in data["search"]] == [STAGE_LAYERS[0][3]] * 3
    assert data["search_quality"]["kendall_tau_inherit"] == 1.0
    assert data["export"]["mrpc"]["registry"]["name"] == "effbert-mrpc"
    assert data["predict_test"]["files"]["MRPC.tsv"]["rows"] == 1725
    lineage = data["lineage"]
    assert lineage["params_sha256"] == hashlib.sha256(tree.params_file.read_bytes()).hexdigest()
    assert {(d["task"], d["split"]) for d in lineage["data"] if d["sha256"]} == {("mrpc", "dev"), ("mrpc", "train")}
    assert {"output": str(tree.eval_summary), "run_id": "r" * 32} == {
        k: v for k, v in lineage["runs"][-1].items() if k in ("output", "run_id")
    } or any(r["run_id"] == "r" * 32 for r in lineage["runs"])
    mrpc_table = next(
        b for b in record["sections"][0]["blocks"] if b["kind"] == "table" and b["caption"][:5] == "mrpc:"
    )
    ours = [row for row in mrpc_table["rows"] if row["_group"] == "ours"]
    assert [row["f1"] for row in ours] == [pytest.approx(82.0), pytest.approx(81.0)]  # x100 like the paper
    squad_table = next(
        b for b in record["sections"][0]["blocks"] if b["kind"] == "table" and b["caption"][:6] == "squad_"
    )
    assert all("not evaluated" in row["label"] for row in squad_table["rows"][:2])
    assert "Kendall" in json.dumps(next(s for s in record["sections"] if s["title"] == "Search"))


def test_made_up_layer_formulas_match_the_library() -> None:
    from effbert.methods.efficientbert.search.hall_of_fame import describe_layer

    assert [describe_layer(expr) for expr, _, _, formula in STAGE_LAYERS] == [f for *_, f in STAGE_LAYERS]


def test_missing_inputs_fail_with_the_file_named(tree: ReportPaths, tmp_path: Path) -> None:
    p = params_mod.load(SMOKE_PARAMS)
    no_summary = ReportPaths.under(tmp_path / "results", tree.params_file)
    with pytest.raises(EffbertError, match=r"eval_summary/summary\.json: missing \(run the eval_summary stage first\)"):
        collect(p, no_summary)
    no_models = ReportPaths(
        eval_summary=tree.eval_summary,
        search_stages=tree.search_stages,
        teacher_models=tmp_path / "none",
        student_models=tree.student_models,
        student_general=tree.student_general,
        prepare_data=tree.prepare_data,
        params_file=tree.params_file,
    )
    with pytest.raises(EffbertError, match=r"no task of .* has both a student and a teacher"):
        collect(p, no_models)


def test_inputs_are_named_below_results(tree: ReportPaths) -> None:
    names = tree.inputs()
    assert {"eval_summary", "search_stage3", "models/teacher/mrpc", "models/student/mrpc", "export/mrpc"} <= set(names)
    assert names["models/student_general"] == tree.student_general


def test_labels_say_what_data_our_rows_are_on() -> None:
    raw = params_mod.read_yaml(SMOKE_PARAMS)
    raw["data"] = {**raw["data"], "glue_dir": None, "max_eval_examples": None}
    hub = params_mod.validate(raw)
    assert data_label(hub, "mnli", 9815) == (
        "ours, GLUE dev (matched + mismatched) (9815 rows), official data from the datasets hub"
    )
    raw["data"]["glue_dir"] = "/data/glue"
    assert data_label(params_mod.validate(raw), "sst2", 872).endswith("files in /data/glue")
    smoke = params_mod.load(SMOKE_PARAMS)
    assert data_label(smoke, "squad_v1", 48) == (
        "ours, SQuAD v1.1 dev (48 questions; data.max_eval_examples = 48), bundled demo sample (not comparable to the "
        "paper)"
    )
