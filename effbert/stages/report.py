"""Stage ``report``: the run's results beside the paper's, as one self-contained HTML page and as Markdown.

Reads the pipeline's outputs under ``--results`` (`effbert.report.inputs.ReportPaths`: dev metrics, search stages,
models, export and submission records, data digests, lineage), measures size and speed of the student, the teacher
and a random-init BERT-base (`effbert.report.measurements`), builds the document beside the published rows of
`effbert.report.paper` (`effbert.report.document`) and renders it (`effbert.report.render`).

Output ``results/report/``: ``report.html`` (figures embedded, no script, no external reference), ``report.md`` (the
same tables, figures linked), ``report.json`` (the dict both are rendered from, with the raw measurements and the
resolved params), ``figures/*.png`` and ``lineage.json``; the headline numbers go to the stage's MLflow run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from effbert.params import Params
from effbert.runtime import load_params, params_option, stage_context, write_json

if TYPE_CHECKING:
    from torch import nn

    from effbert.report.inputs import ReportPaths

log = logging.getLogger(__name__)

PARAMS = (
    "tasks",
    "methods",
    "variants",
    "latency",
    "report",
    "data",
    "finetune_teacher",
    "student.num_layers",
    "student.hidden_size",
    "student.num_attention_heads",
    "student.embedding_size",
    "warmup_kd",
    "search",
    "final_distill",
    "tinybert",
    "theseus",
    "dynabert",
    "fastbert",
    "launch",
)
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("report")
@click.option(
    "--results", "results_dir", default="results", show_default=True, type=click.Path(exists=True, file_okay=False)
)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@params_option
def command(results_dir: str, out: str, params_file: str) -> None:
    """The final report (HTML + Markdown): our numbers beside the paper's, size and speed, search, lineage."""
    from effbert.report.document import headline_metrics
    from effbert.report.inputs import ReportPaths

    params = load_params(params_file)
    with stage_context("report", "report", params, PARAMS, [Path(out)]) as (run, (tmp,)):
        paths = ReportPaths.under(Path(results_dir), Path(params_file))
        for name, directory in paths.inputs().items():
            run.consume(directory, name, context="report")
        record = make_report(params, paths, tmp)
        run.log_artifact(tmp)
        run.log_metrics(headline_metrics(record))


def make_report(
    params: Params, paths: ReportPaths, out_dir: Path, *, bert_base: nn.Module | None = None
) -> dict[str, Any]:
    """Collect and measure the inputs, build the report, render both pages and write them with the data and figures.

    Args:
        params: the run's params.
        paths: where the pipeline's outputs are.
        out_dir: the directory to write into (``report.html``, ``report.md``, ``report.json``, ``figures/``).
        bert_base: the BERT-base measured for size and speed; None builds the random-init one (tests pass a small
            stand-in).

    Returns:
        The report dict (also written to ``report.json``).

    Raises:
        EffbertError: a missing or malformed input (the message names the file).
    """
    from effbert.report.document import build_report
    from effbert.report.inputs import collect
    from effbert.report.paper import load_paper_results
    from effbert.report.render import render_html, render_markdown, table_summaries

    report, images = build_report(params, collect(params, paths, bert_base), load_paper_results())
    markdown, page = render_markdown(report), render_html(report, images)  # both rendered before anything is written
    for name, data in images.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_bytes(data)
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    log.info("report: %d tables, %d figures in %s", len(table_summaries(report)), len(images), out_dir)
    return report
