"""An unavailable or locked tracking store: calls retried, else kept as records in the outputs' lineage.json and
recorded by the next ``effbert run``; the stage still writes its outputs and succeeds, and no metric is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from effbert import tracking_journal
from effbert.tracking_journal import PLACEHOLDER, JournalingBackend, replay
from tests.conftest import BIN, copy_project, run_cli, stages_run

FAST_RETRIES = {"EFFBERT_TRACKING_RETRIES": "1", "EFFBERT_TRACKING_RETRY_SECONDS": "1"}
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused at once
PREPARE = ["effbert", "prepare-data", "--task", "sst2", "--out"]
OPS = ("describe", "start_run", "log_params", "log_metrics", "log_artifact", "set_tags", "end_run")


class FlakyStore:
    """A backend whose calls fail with ``error`` the first ``failures`` times, then record what they get."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error = failures, error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, op: str) -> Any:
        def call(**args: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise self.error
            self.calls.append((op, args))
            return f"run-{len(self.calls)}" if op == "start_run" else None

        return call


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(tracking_journal.time, "sleep", waits.append)
    return waits


def test_a_busy_store_is_retried_with_doubling_waits_and_wrong_calls_are_not(
    no_wait: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EFFBERT_TRACKING_RETRIES", "4")
    store = FlakyStore(3, RuntimeError("(sqlite3.OperationalError) database is locked"))
    backend = JournalingBackend(lambda: store, {"uri": "sqlite:///x", "experiment": "e"}, OPS)
    assert backend.start_run(run_name="s", parent_run_id=None, tags={}, start_time=1) == "run-1"
    assert no_wait == [1.0, 2.0, 4.0] and not backend.pending
    wrong = JournalingBackend(lambda: FlakyStore(1, ValueError("Changing param values is not allowed")), {}, OPS)
    with pytest.raises(ValueError, match="Changing param"):
        wrong.log_params(run_id="r", params={"a": "1"})


def test_an_unreachable_store_turns_the_backend_pending_once_and_replay_records_everything(
    no_wait: list[float], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EFFBERT_TRACKING_RETRIES", "2")
    down = FlakyStore(10**6, ConnectionError("Connection refused"))
    backend = JournalingBackend(lambda: down, {"uri": "http://x", "experiment": "e"}, OPS)
    run_id = backend.start_run(run_name="s", parent_run_id=None, tags={"a": "b"}, start_time=5)
    assert run_id.startswith(PLACEHOLDER) and backend.pending and len(no_wait) == 2
    backend.log_metrics(run_id=run_id, metrics={"loss": 0.5}, step=3, timestamp=7)
    backend.set_tags(run_id=run_id, tags={"effbert.upstream_run_ids": f"{run_id},other"})
    backend.log_artifact(run_id=run_id, path=str(tmp_path / "gone.log"), artifact_path="logs")
    backend.end_run(run_id=run_id, status="FINISHED", end_time=9)
    assert len(no_wait) == 2, "a pending backend never waits again"
    assert [r["op"] for r in backend.records or []] == [
        "start_run",
        "log_metrics",
        "set_tags",
        "log_artifact",
        "end_run",
    ]

    up, ids = FlakyStore(0, RuntimeError()), {}
    missing = replay(json.loads(json.dumps(backend.records)), up, ids)  # as read back from lineage.json
    assert ids == {run_id: "run-1"} and missing == [str(tmp_path / "gone.log")]
    assert up.calls == [
        ("start_run", {"run_name": "s", "parent_run_id": None, "tags": {"a": "b"}, "start_time": 5}),
        ("log_metrics", {"run_id": "run-1", "metrics": {"loss": 0.5}, "step": 3, "timestamp": 7}),
        ("set_tags", {"run_id": "run-1", "tags": {"effbert.upstream_run_ids": "run-1,other"}}),
        ("end_run", {"run_id": "run-1", "status": "FINISHED", "end_time": 9}),
    ]


def _runs(project: Path, name: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, f"attributes.run_name = '{name}'"))


def _recorded(lineage: dict[str, Any], op: str) -> dict[str, Any]:
    """The union of the ``args[key]`` mappings of the kept records ``op`` (log_params: params, log_metrics: metrics)."""
    key = {"log_params": "params", "log_metrics": "metrics"}[op]
    merged: dict[str, Any] = {}
    for record in lineage["tracking_pending"]["records"]:
        if record["op"] == op:
            merged.update(record["args"][key])
    return merged


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "WARNING" in line or "warning:" in line]


def test_an_unreachable_server_keeps_the_records_in_lineage_and_the_next_run_records_them(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    dry = run_cli(["effbert", "run", "--params", "params/smoke.yaml", "--dry-run"], project)  # writes params.yaml
    assert dry.returncode == 0, dry.stderr[-2000:]
    started = time.monotonic()
    offline = run_cli(["dvc", "repro", "prepare_data@sst2"], project, MLFLOW_TRACKING_URI=UNREACHABLE, **FAST_RETRIES)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert time.monotonic() - started < 120
    out = project / "results/prepare_data/sst2"
    assert (out / "train").is_dir()  # the outputs are written
    log = (project / "logs/prepare_data/sst2.log").read_text()
    assert len(_warnings(log)) == 1 and f"tracking store {UNREACHABLE} unavailable" in _warnings(log)[0], log
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["tracking"] == "pending" and lineage["run_id"].startswith(PLACEHOLDER)
    pending = lineage["tracking_pending"]
    assert pending["run_name"] == "prepare_data@sst2" and pending["stage"] == "prepare_data"
    assert pending["store"] == {"uri": UNREACHABLE, "experiment": "effbert"}
    metrics, params = _recorded(lineage, "log_metrics"), _recorded(lineage, "log_params")
    assert set(metrics) == {"rows/train", "rows/heldout", "rows/dev", "rows/test"} and "data.max_seq_length" in params
    assert pending["records"][-1]["op"] == "end_run" and pending["records"][-1]["args"]["status"] == "FINISHED"

    online = run_cli(["effbert", "run", "--params", "params/smoke.yaml", "--target", "prepare_data@sst2"], project)
    assert online.returncode == 0, online.stderr[-3000:]
    lines = [line for line in online.stdout.splitlines() if line.startswith("effbert: tracking:")]
    assert len(lines) == 2, online.stdout  # one per output: results/code and results/prepare_data/sst2
    assert stages_run(online.stdout) == {}, "reconciling does not make DVC run the stages again"
    reconciled = json.loads((out / "lineage.json").read_text())
    assert reconciled["tracking"] == "reconciled" and reconciled["pending_run_id"] == lineage["run_id"]
    assert f"results/prepare_data/sst2: prepare_data@sst2 recorded as MLflow run {reconciled['run_id']}" in lines[1]
    [run] = _runs(project, "prepare_data@sst2")
    assert run.info.run_id == reconciled["run_id"] and run.info.status == "FINISHED"
    assert run.data.metrics == metrics  # every metric
    assert run.data.params == params
    assert run.data.tags["effbert.stage"] == "prepare_data" and run.data.tags["effbert.output.0"] == str(
        out.relative_to(project)
    )


HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A project whose MLflow store (created, with its experiment) another process holds under an exclusive lock
    until a line is written to its stdin."""
    import yaml
    from mlflow.tracking import MlflowClient

    project = copy_project(tmp_path / "project")
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").create_experiment(
        "effbert", artifact_location=(project / "mlruns").as_uri()
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(project / "mlflow.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    yield project, holder
    if holder.poll() is None:
        holder.kill()


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)


def test_a_locked_sqlite_store_is_retried_until_the_lock_is_released(
    locked_store: tuple[Path, subprocess.Popen[str]],
) -> None:
    project, holder = locked_store
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "EFFBERT_TRACKING_RETRIES": "6"}
    stage = subprocess.Popen(
        [*PREPARE, "results/prepare_data/sst2"], cwd=project, env=env, stderr=subprocess.PIPE, text=True
    )
    assert stage.stderr is not None
    seen: list[str] = []
    for line in stage.stderr:  # the lock is released once the stage's first tracking call has failed on it
        seen.append(line)
        if "database is locked" in line and "retried in" in line and holder.poll() is None:
            _release(holder)
    assert stage.wait(timeout=120) == 0, "".join(seen)[-3000:]
    assert holder.poll() == 0, "the stage's tracking call never failed on the lock: " + "".join(seen)[-2000:]
    assert not _warnings("".join(seen)), "retried, not pending"
    lineage = json.loads((project / "results/prepare_data/sst2/lineage.json").read_text())
    assert "tracking" not in lineage
    [run] = _runs(project, "prepare_data@sst2")
    assert run.info.run_id == lineage["run_id"] and run.info.status == "FINISHED"
    assert set(run.data.metrics) == {"rows/train", "rows/heldout", "rows/dev", "rows/test"}


def test_a_store_locked_past_the_retry_budget_keeps_the_records_until_it_is_free(
    locked_store: tuple[Path, subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from effbert import tracking

    project, holder = locked_store
    started = time.monotonic()
    stage = run_cli([*PREPARE, "results/prepare_data/sst2"], project, timeout=300, **FAST_RETRIES)
    assert stage.returncode == 0, stage.stderr[-3000:]
    assert time.monotonic() - started < 90
    [warning] = _warnings(stage.stderr)
    assert "unavailable (OperationalError: (sqlite3.OperationalError) database is locked)" in warning
    out = project / "results/prepare_data/sst2"
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["tracking"] == "pending" and (out / "train").is_dir()
    _release(holder)

    monkeypatch.setenv("EFFBERT_ROOT", str(project))
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)  # MLflow and effbert set them in this process: restored afterwards
    [done] = tracking.reconcile_pending(project, None)
    assert done.recorded and done.directory == out
    [run] = _runs(project, "prepare_data@sst2")
    assert json.loads((out / "lineage.json").read_text())["run_id"] == run.info.run_id
    assert run.data.metrics == _recorded(lineage, "log_metrics") and run.info.status == "FINISHED"
