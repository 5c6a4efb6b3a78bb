"""eval_summary: one table of every model's dev metrics, with the share of the teacher's score each model keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from effbert.errors import EffbertError
from effbert.stages import eval_summary


def write_metrics(root: Path, model: str, task: str, score: float) -> None:
    folder = root / model / task
    folder.mkdir(parents=True)
    record = {"task": task, "model": model, "split": "dev", "rows": {"dev": 10}, "metrics": {"accuracy": score}}
    (folder / "metrics.json").write_text(json.dumps({**record, "score": score}))


def test_summary_relates_each_model_to_the_teacher(tmp_path: Path) -> None:
    evals, out = tmp_path / "eval", tmp_path / "out"
    out.mkdir()
    write_metrics(evals, "teacher", "sst2", 0.8)
    write_metrics(evals, "student", "sst2", 0.76)
    write_metrics(evals, "student", "mrpc", 0.7)  # no teacher row: no ratio
    table = eval_summary.summarize(evals, out)
    rows = {(r["model"], r["task"]): r for r in table.to_dict("records")}
    assert rows[("student", "sst2")]["vs_teacher"] == pytest.approx(0.95)
    assert rows[("teacher", "sst2")]["vs_teacher"] == pytest.approx(1.0)
    assert rows[("student", "mrpc")]["vs_teacher"] != rows[("student", "mrpc")]["vs_teacher"]  # NaN
    nested = json.loads((out / "summary.json").read_text())
    assert nested["student"]["sst2"]["vs_teacher"] == pytest.approx(0.95)
    assert "vs_teacher" not in nested["student"]["mrpc"]
    assert "| student | sst2 | dev | 10 | 0.7600 | 0.9500 |" in (out / "summary.md").read_text()


def test_summary_without_metrics_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    with pytest.raises(EffbertError, match=r"no \*/\*/metrics\.json"):
        eval_summary.summarize(tmp_path / "eval", tmp_path)


def test_summary_shows_the_majority_class_beside_the_models(tmp_path: Path) -> None:
    evals, out = tmp_path / "eval", tmp_path / "out"
    out.mkdir()
    write_metrics(evals, "teacher", "mrpc", 0.8)
    write_metrics(evals, "student", "mrpc", 0.7)
    for model in ("teacher", "student"):  # both records carry the same baseline: one row
        path = evals / model / "mrpc" / "metrics.json"
        record = json.loads(path.read_text())
        record["majority"] = {"prediction": "1", "metrics": {"accuracy": 0.684}, "score": 0.684}
        path.write_text(json.dumps(record))
    table = eval_summary.summarize(evals, out)
    rows = {(r["model"], r["task"]): r for r in table.to_dict("records")}
    assert len(table) == 3 and rows[("majority", "mrpc")]["accuracy"] == pytest.approx(0.684)
    assert rows[("majority", "mrpc")]["vs_teacher"] == pytest.approx(0.684 / 0.8)
    assert "| majority | mrpc | dev | 10 | 0.6840 |" in (out / "summary.md").read_text()
