"""Stage ``eval_summary``: every ``results/eval/<model>/<task>/metrics.json`` in one table
(`effbert.eval.summary`), and the comparison of the compression methods (`effbert.report.comparison`).

Output ``results/eval_summary/``: ``summary.csv`` (one row per model and task), ``summary.json`` (nested
``{model: {task: {metric: value}}}``, registered as DVC metrics), ``summary.md`` (what ``effbert run`` prints),
``comparison.json`` (per task: every method's models with shape, parameters, MACs, latency under the one protocol
on this machine, dev score, share of the teacher's and Pareto flags) and ``comparison.md`` (its tables).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from effbert.errors import EffbertError
from effbert.runtime import load_params, params_option, read_json, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS = (
    "tasks",
    "methods",
    "variants",
    "latency",
    "report.macs_seq_len",
    "fastbert.speeds",
    "fastbert.latency_rows",
)
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("eval-summary")
@click.option("--eval-dir", default="results/eval", show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--results",
    "results_dir",
    default="results",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="The results folder: its models/ and prepare_data/ for the comparison of the methods.",
)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@params_option
def command(eval_dir: str, results_dir: str, out: str, params_file: str) -> None:
    """Collect every results/eval/<model>/<task>/metrics.json into one table (CSV, JSON, Markdown) and compare the
    methods' models (size, MACs, latency, dev score)."""
    params = load_params(params_file)
    with stage_context("eval_summary", "eval_summary", params, PARAMS, [Path(out)]) as (run, (tmp,)):
        for metrics_dir in sorted(Path(eval_dir).glob("*/*")):
            if metrics_dir.is_dir():
                run.consume(metrics_dir, f"eval/{metrics_dir.parent.name}/{metrics_dir.name}", context="metrics")
        table = summarize(Path(eval_dir), tmp)
        compare_methods(params, Path(results_dir), Path(eval_dir), tmp)
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


def compare_methods(params: Any, results: Path, eval_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``comparison.json`` and ``comparison.md``: every method's models measured side by side."""
    from effbert.report.comparison import compare, comparison_markdown

    comparison = compare(params, results, eval_dir, lambda path, what: read_json(path, what))
    write_json(out_dir / "comparison.json", comparison)
    markdown = comparison_markdown(comparison)
    (out_dir / "comparison.md").write_text(markdown, encoding="utf-8")
    log.info("the methods compared:\n%s", markdown)
    return comparison
