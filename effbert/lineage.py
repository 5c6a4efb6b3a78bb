"""``effbert lineage``: the chain of stages, runs, params, data digests and code that produced an artifact.

A path is resolved to the ``lineage.json`` of the stage output that holds it; that names the MLflow run, whose
``effbert.upstream_run_ids`` tag names the runs of the artifacts it consumed, and so on back to the raw data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.errors import EffbertError

_SHOWN_PARAMS = 40


def _find_lineage(path: Path) -> tuple[Path, dict[str, Any]]:
    start = path.resolve()
    for directory in [start, *start.parents] if start.is_dir() else list(start.parents):
        record = tracking.read_lineage(directory)
        if record is not None:
            return directory, record
        if (directory / "dvc.yaml").is_file():
            break
    raise EffbertError(f"{path}: no lineage.json in it or its parent folders; is it a stage output?")


def _metric_lines(path: Path) -> list[str]:
    if path.suffix != ".json" or not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    metrics = data.get("metrics", data) if isinstance(data, dict) else {}
    flat = tracking.flatten(metrics) if isinstance(metrics, dict) else {}
    return [f"  {k} = {v}" for k, v in flat.items() if isinstance(v, int | float)]


def _describe(client: Any, run_id: str, level: int) -> tuple[list[str], list[str]]:
    run = client.get_run(run_id)
    tags = run.data.tags
    pad = "  " * level
    seconds = ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000
    lines = [
        f"{pad}[{tags.get('effbert.stage', '?')}] {run.info.run_name}  run {run_id}"
        f"  {run.info.status}  {seconds:.1f} s",
        f"{pad}  code: git {tags.get('effbert.git_commit', '?')}  effbert {tags.get('effbert.version', '?')}"
        f"  code digest {tags.get('effbert.code_digest', '?')}",
    ]
    if tags.get("mlflow.parentRunId"):
        lines.append(f"{pad}  pipeline run: {tags['mlflow.parentRunId']}")
    for key in sorted(k for k in tags if k.startswith("effbert.search.")):
        # search stages name their winning candidate (a nested run) and the warm-up checkpoint it inherited
        lines.append(f"{pad}  {key.removeprefix('effbert.')}: {tags[key]}")
    for ds_input in run.inputs.dataset_inputs:
        ds = ds_input.dataset
        context = next((t.value for t in ds_input.tags if t.key == "mlflow.data.context"), "")
        source = json.loads(ds.source).get("url", ds.source) if ds.source.startswith("{") else ds.source
        lines.append(f"{pad}  data ({context}): {ds.name}  sha256 {ds.digest}  {source}")
    params = sorted(run.data.params.items())
    for key, value in params[:_SHOWN_PARAMS]:
        lines.append(f"{pad}  param {key} = {value}")
    if len(params) > _SHOWN_PARAMS:
        lines.append(f"{pad}  ... {len(params) - _SHOWN_PARAMS} more params (mlflow ui)")
    upstream = [u for u in tags.get(tracking.TAG_UPSTREAM, "").split(",") if u]
    return lines, upstream


def explain(target: str, depth: int = 20) -> str:
    """Human-readable lineage of ``target`` (a path inside a stage output, or an MLflow run id)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    root = tracking.project_root()
    out: list[str] = []
    path = Path(target)
    if path.exists():
        directory, record = _find_lineage(path)
        if record.get("tracking") == "pending":  # `effbert.tracking_journal`
            reason = record.get("tracking_pending", {}).get("reason", "?")
            raise EffbertError(
                f"{directory}: its run is not in the tracking store yet (the store was unavailable: {reason}); "
                "its records are in its lineage.json, and the next `effbert run` records them"
            )
        run_id = record["run_id"]
        out.append(f"{target}")
        out += _metric_lines(path)
        out.append(f"produced by stage {record.get('dvc_stage') or record['stage']} into {directory}")
        out.append(f"  output sha256 {record['digest']}  git {record['git_commit']}")
    else:
        run_id = target
    from effbert import params as params_mod

    configured = None
    if (root / "params.yaml").is_file():
        configured = params_mod.read_yaml(root / "params.yaml").get("tracking", {}).get("tracking_uri")
    client = MlflowClient(tracking_uri=tracking.tracking_uri(configured, root))
    seen: set[str] = set()
    frontier = [(run_id, 0)]
    out.append("")
    out.append("lineage (each stage, then what it consumed):")
    while frontier:
        current, level = frontier.pop(0)
        if current in seen or level > depth:
            continue
        seen.add(current)
        try:
            lines, upstream = _describe(client, current, level)
        except MlflowException:
            if current == run_id:
                raise EffbertError(f"MLflow run {current} not found in {client.tracking_uri}") from None
            # an upstream output restored from DVC's cache can name a run of another MLflow store: say so, go on
            lines = [
                f"{'  ' * level}[?] run {current}: not in {client.tracking_uri} (an output restored from DVC's "
                "cache, produced with another MLflow store?)"
            ]
            upstream = []
        out += lines
        frontier = [(u, level + 1) for u in upstream] + frontier
    return "\n".join(out)
