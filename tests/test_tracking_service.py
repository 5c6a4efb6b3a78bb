"""The stages' tracking calls served by ``effbert run`` (`effbert.tracking_service`) record exactly what the same
calls record in the stage's own process; a served stage never imports MLflow; failures and a missing or foreign
service are handled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from effbert import tracking, tracking_service
from effbert.errors import EffbertError

EXPERIMENT = "service-test"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh SQLite store under ``tmp_path`` (the project root) and a client on it."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("EFFBERT_ROOT", str(tmp_path))
    monkeypatch.delenv(tracking_service.SOCKET_ENV, raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exports it
    yield MlflowClient(tracking_uri=tracking.tracking_uri(None, tmp_path))


def record_stage(tmp_path: Path, fail: bool = False) -> str:
    """One stage's worth of tracking calls; returns its run id."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "rows.txt").write_text("a\nb\n", encoding="utf-8")
    report = tmp_path / "report"
    report.mkdir(exist_ok=True)
    (report / "metrics.json").write_text('{"accuracy": 0.5}\n', encoding="utf-8")
    params = {"seed": 42, "final_distill": {"task": {"learning_rate": 1e-4, "task_overrides": {"sst2": None}}}}
    with tracking.stage_run("final_distill", params, run_name="final_distill@sst2", experiment=EXPERIMENT) as run:
        run.record_compute({"device": "cpu", "bf16": True})
        run.log_dataset("data/sst2", data, "train")
        run.log_metrics({"loss": 1.5, "kd_hidden": 0.25}, step=10)
        run.log_metrics({"loss": 1.25}, step=20)
        run.log_summary({"accuracy": 0.5, "note": "text", "inf": float("inf")})
        run.log_artifact(report)
        run.child_run("candidate-0", {"expr": "gelu(x)", "units": 4}, {"score": 0.7}, tags={"effbert.search": "1"})
        if fail:
            raise RuntimeError("the stage failed")
        return run.run_id


def describe(client: Any, run_id: str) -> dict[str, Any]:
    """What a run recorded, without ids and times."""
    run = client.get_run(run_id)
    volatile = {"mlflow.user", "mlflow.source.git.commit", "mlflow.source.name", "mlflow.source.type"}
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    history = [(m.key, m.value, m.step) for key in ("loss",) for m in client.get_metric_history(run_id, key)]
    return {
        "name": run.info.run_name,
        "status": run.info.status,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "history": history,
        "tags": {k: v for k, v in run.data.tags.items() if k not in volatile},
        "inputs": [
            (d.dataset.name, d.dataset.digest, d.dataset.source, [t.value for t in d.tags])
            for d in run.inputs.dataset_inputs
        ],
        "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
        "children": [
            (c.info.run_name, c.data.params, c.data.metrics, c.data.tags.get("effbert.search")) for c in children
        ],
    }


def test_served_stage_records_what_an_in_process_stage_records(
    tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = record_stage(tmp_path)
    with tracking_service.serve(tracking.MlflowBackend(None, EXPERIMENT)) as path:
        monkeypatch.setenv(tracking_service.SOCKET_ENV, path)
        served = record_stage(tmp_path)
        assert isinstance(tracking.stage_backend(None, EXPERIMENT).live(), tracking_service.RemoteBackend)
    assert served != local
    assert describe(store, served) == describe(store, local)
    assert describe(store, local)["status"] == "FINISHED"
    assert describe(store, local)["history"] == [("loss", 1.5, 10), ("loss", 1.25, 20)]


def test_served_failure_marks_the_run_failed(tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with tracking_service.serve(tracking.MlflowBackend(None, EXPERIMENT)) as path:
        monkeypatch.setenv(tracking_service.SOCKET_ENV, path)
        with pytest.raises(RuntimeError, match="the stage failed"):
            record_stage(tmp_path, fail=True)
    runs = store.search_runs(
        [store.get_experiment_by_name(EXPERIMENT).experiment_id], "tags.mlflow.runName = 'final_distill@sst2'"
    )
    assert [(r.info.run_name, r.info.status) for r in runs] == [("final_distill@sst2", "FAILED")], runs


def test_a_served_stage_process_does_not_import_mlflow(tmp_path: Path, store: Any) -> None:
    code = (
        "import sys, json\n"
        "from effbert import tracking\n"
        f"with tracking.stage_run('report', {{'seed': 1}}, experiment={EXPERIMENT!r}) as run:\n"
        "    run.log_metrics({'x': 1.0})\n"
        "print(json.dumps({'mlflow': 'mlflow' in sys.modules, 'run': run.run_id}))\n"
    )
    with tracking_service.serve(tracking.MlflowBackend(None, EXPERIMENT)) as path:
        env = {**os.environ, tracking_service.SOCKET_ENV: path, "EFFBERT_ROOT": str(tmp_path)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mlflow"] is False
    assert store.get_run(result["run"]).data.metrics == {"x": 1.0}


def test_unreachable_or_foreign_service_falls_back_to_this_process(
    tmp_path: Path, store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(tracking_service.SOCKET_ENV, str(tmp_path / "no-such-socket"))
    assert isinstance(tracking.stage_backend(None, EXPERIMENT).live(), tracking.MlflowBackend)
    assert "unreachable" in caplog.text
    with tracking_service.serve(tracking.MlflowBackend(None, EXPERIMENT)) as path:
        monkeypatch.setenv(tracking_service.SOCKET_ENV, path)
        assert isinstance(tracking.stage_backend(None, "another-experiment").live(), tracking.MlflowBackend)
    assert "records elsewhere" in caplog.text


def test_the_service_runs_only_the_backend_operations(tmp_path: Path, store: Any) -> None:
    with tracking_service.serve(tracking.MlflowBackend(None, EXPERIMENT)) as path:
        remote = tracking_service.RemoteBackend(path, ("describe", "__init__"))
        assert remote.describe()["experiment"] == EXPERIMENT
        with pytest.raises(EffbertError, match="unknown tracking operation '__init__'"):
            remote.call("__init__")
        with pytest.raises(EffbertError, match="end_run"):
            remote.call("end_run", run_id="0" * 32, status="FINISHED", end_time=0)
        remote.close()
