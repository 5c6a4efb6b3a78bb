"""The export stage end to end on a tiny student: card, ONNX file, parity and latency record, and the MLflow
registry round trip (a temporary sqlite store; load by alias, predict on two texts; a second registration moves
the alias)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from effbert import tracking
from effbert.errors import EffbertError
from effbert.export import card_facts
from effbert.export.model_card import SECTIONS
from effbert.export.pyfunc import MODEL_ARTIFACT, EffBertPyfunc, pip_requirements, pyfunc_config, pyfunc_signature
from effbert.stages import export
from tests.export.export_helpers import SENTENCES, prepared_sst2, save_student, small_params, teacher_dir, tiny_student


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A project root in ``tmp_path`` with its own sqlite MLflow store (restored to the previous one afterwards)."""
    monkeypatch.setenv("EFFBERT_ROOT", str(tmp_path))
    uri = tracking.tracking_uri(None, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # mlflow.set_tracking_uri exports it; monkeypatch restores it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield uri
    torch.set_num_threads(threads)


def test_export_writes_card_onnx_records_and_registers_the_student(tmp_path: Path, store: str) -> None:
    import mlflow

    p = small_params()
    model_dir = save_student(tiny_student("sst2"), tmp_path / "student")
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    record = {"task": "sst2", "model": "student", "split": "dev", "rows": {"dev": 6}, "metrics": {"accuracy": 0.5}}
    (eval_dir / "metrics.json").write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()

    with tracking.stage_run("export", {"export": p.export.model_dump()}, run_name="export@sst2") as stage:
        result = export.export_student(
            p,
            "sst2",
            model_dir,
            eval_dir,
            prepared_sst2(tmp_path / "prepared"),
            out,
            stage,
            teacher_dir=teacher_dir(tmp_path / "teacher"),
        )
        again = stage.register_model(
            "effbert-sst2",
            "champion",
            EffBertPyfunc(),
            {MODEL_ARTIFACT: out / "model"},
            pyfunc_config(p, "sst2"),
            pip_requirements(),
            signature=pyfunc_signature("sst2"),
        )

    assert sorted(path.name for path in out.iterdir()) == ["model", "model.onnx", "onnx.json", "registry.json"]
    assert sorted(path.name for path in (out / "model").iterdir()) == [
        "README.md",
        "architecture.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    onnx_record = json.loads((out / "onnx.json").read_text(encoding="utf-8"))
    assert onnx_record == {key: value for key, value in result.items() if key != "registry"}
    parity = onnx_record["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4 and parity["rows"] == 5
    assert parity["tolerance"] == 1e-4 and set(parity["per_output"]) == {"logits"}
    (latency,) = onnx_record["latency"]["by_batch"]
    assert latency["batch_size"] == 1 and latency["seq_len"] == 16
    assert latency["pytorch"]["runs"] == latency["onnxruntime"]["runs"] == 20
    assert latency["pytorch_over_onnxruntime"] == pytest.approx(
        latency["pytorch"]["median_ms"] / latency["onnxruntime"]["median_ms"]
    )
    assert onnx_record["opset"] == 17 and onnx_record["outputs"] == ["logits"] and "cpu" in onnx_record["machine"]
    assert (out / "model.onnx").stat().st_size == onnx_record["bytes"]

    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"\n## {section}\n" in card
    assert "| accuracy | 0.5000 | ours, GLUE SST-2 dev, first rows of the dev set (6 rows), demo data" in card
    assert "over 5 real dev rows (tolerance 1e-04: passed)" in card
    assert "models:/effbert-sst2@champion" in card

    registry = json.loads((out / "registry.json").read_text(encoding="utf-8"))
    assert registry == result["registry"]
    assert registry["name"] == "effbert-sst2" and registry["version"] == 1 and registry["alias"] == "champion"
    assert registry["model_uri"] == "models:/effbert-sst2@champion" and registry["run_id"] == stage.run_id
    assert again["version"] == 2  # the alias moves to the newest registration
    client = mlflow.MlflowClient(tracking_uri=store)
    assert int(client.get_model_version_by_alias("effbert-sst2", "champion").version) == 2
    assert client.get_model_version("effbert-sst2", "1").tags == {"effbert.stage": "export", "effbert.task": "sst2"}
    run = client.get_run(stage.run_id)
    assert run.data.metrics["parity/max_abs_diff"] == parity["max_abs_diff"]
    assert "latency/pytorch_ms/b1" in run.data.metrics and "latency/onnxruntime_ms/b1" in run.data.metrics
    _assert_registered_model_predicts("models:/effbert-sst2@champion")


def _assert_registered_model_predicts(uri: str) -> None:
    """The registered pyfunc model loads by alias and labels two texts; a frame without ``text_a`` is refused."""
    import mlflow

    loaded = mlflow.pyfunc.load_model(uri)
    predictions = loaded.predict(pd.DataFrame({"text_a": SENTENCES[:2]}))
    assert list(predictions.columns) == ["label", "probability"] and len(predictions) == 2
    assert set(predictions["label"]) <= {"0", "1"}
    assert ((predictions["probability"] >= 0.5) & (predictions["probability"] <= 1.0)).all()
    with pytest.raises(Exception, match="text_a"):
        loaded.predict(pd.DataFrame({"sentence": SENTENCES[:2]}))


class FakeStageRun:
    """Stands in for `effbert.tracking.StageRun` where the stage must fail before it records anything."""

    run_id = "not-a-run"

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the stage used its MLflow run ({name}) before failing")


def test_export_rejects_a_missing_evaluation(tmp_path: Path) -> None:
    model_dir = save_student(tiny_student("sst2"), tmp_path / "student")
    with pytest.raises(EffbertError, match=r"eval/metrics\.json: missing \(evaluate output of the sst2 student\)"):
        export.export_student(
            small_params(),
            "sst2",
            model_dir,
            tmp_path / "eval",
            tmp_path / "prepared",
            tmp_path / "out",
            FakeStageRun(),  # type: ignore[arg-type]
        )


def test_only_effbert_students_are_exported(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertForSequenceClassification(
        BertConfig(vocab_size=99, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    )
    with pytest.raises(EffbertError, match=r"BertForSequenceClassification is not an EffBert student \(task sst2\)"):
        card_facts.require_student(bert, tmp_path, "sst2")
    card_facts.require_student(tiny_student("sst2"), tmp_path, "sst2")
