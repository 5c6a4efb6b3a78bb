"""`effbert lineage` keeps going when an upstream run is not in this MLflow store (an output restored from DVC's
cache that was produced with another store), and still fails clearly for an unknown target run."""

from __future__ import annotations

from pathlib import Path

import pytest

from effbert import lineage, tracking
from effbert.errors import EffbertError


def test_missing_upstream_run_is_reported_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("EFFBERT_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(tracking_uri=tracking.tracking_uri(None, tmp_path))
    experiment = client.create_experiment("lineage-test")
    run = client.create_run(experiment, run_name="final_distill@sst2", tags={"effbert.stage": "final_distill"})
    client.set_tag(run.info.run_id, tracking.TAG_UPSTREAM, "0123456789abcdef0123456789abcdef")
    client.set_terminated(run.info.run_id)

    text = lineage.explain(run.info.run_id)
    assert "[final_distill] final_distill@sst2" in text
    assert "run 0123456789abcdef0123456789abcdef: not in sqlite:///" in text

    with pytest.raises(EffbertError, match="not found"):
        lineage.explain("fedcba9876543210fedcba9876543210")
