"""Stage ``eval_summary``: every ``results/eval/<model>/<task>/metrics.json`` in one table
(`effbert.eval.summary`).

Output ``results/eval_summary/``: ``summary.csv`` (one row per model and task), ``summary.json`` (nested
``{model: {task: {metric: value}}}``, registered as DVC metrics) and ``summary.md`` (what ``effbert run`` prints).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from effbert.errors import EffbertError
from effbert.runtime import load_params, params_option, read_json, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS = ("tasks",)
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("eval-summary")
@click.option("--eval-dir", default="results/eval", show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@params_option
def command(eval_dir: str, out: str, params_file: str) -> None:
    """Collect every results/eval/<model>/<task>/metrics.json into one table (CSV, JSON, Markdown)."""
    params = load_params(params_file)
    with stage_context("eval_summary", "eval_summary", params, PARAMS, [Path(out)]) as (run, (tmp,)):
        for metrics_dir in sorted(Path(eval_dir).glob("*/*")):
            if metrics_dir.is_dir():
                run.consume(metrics_dir, f"eval/{metrics_dir.parent.name}/{metrics_dir.name}", context="metrics")
        table = summarize(Path(eval_dir), tmp)
        for row in table.to_dict("records"):
            run.log_metrics(
                {f"{row['model']}/{row['task']}/{k}": v for k, v in row.items() if k not in ("model", "task")}
            )
        run.log_artifact(tmp)


def summarize(eval_dir: Path, out_dir: Path) -> Any:
    """Write ``summary.csv``, ``summary.json`` and ``summary.md`` of every evaluation under ``eval_dir``."""
    from effbert.eval.summary import nested, summary_table, to_markdown

    files = sorted(eval_dir.glob("*/*/metrics.json"))
    if not files:
        raise EffbertError(f"{eval_dir}: no */*/metrics.json found")
    table = summary_table(read_json(path, "an evaluate output") for path in files)
    table.to_csv(out_dir / "summary.csv", index=False)
    write_json(out_dir / "summary.json", nested(table))
    markdown = to_markdown(table)
    (out_dir / "summary.md").write_text(markdown, encoding="utf-8")
    log.info("dev metrics (ours, %s rows):\n%s", int(table["rows"].sum()), markdown)
    return table
