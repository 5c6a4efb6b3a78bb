"""The report document: its sections (`effbert.report.sections`), its figures, the raw data and the params, as one
JSON-ready dict (`build_report`) that `effbert.report.render` turns into HTML and Markdown and the stage writes as
``report.json``; and its key numbers for MLflow (`headline_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effbert import params as params_mod
from effbert.params import Params
from effbert.report import paper, render
from effbert.report.sections.blocks import MODEL_NAMES, figure_src
from effbert.report.sections.cost import cost_section
from effbert.report.sections.exports import export_section
from effbert.report.sections.intro import intro_blocks
from effbert.report.sections.lineage import lineage_section
from effbert.report.sections.methods import figure_name, methods_section
from effbert.report.sections.quality import quality_section
from effbert.report.sections.search import search_section
from effbert.report.sections.size_speed import size_speed_section

if TYPE_CHECKING:
    from effbert.report.inputs import ReportInputs

TITLE = "effbert report: the searched student, its teacher and the paper"
"""The report's title (HTML title and first heading)."""


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples as lists and paths as strings (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _figures(params: Params, inputs: ReportInputs, quality_rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """The PNG bytes of every figure, keyed by the path the report links: the two the report draws (latency, quality)
    and the ones the search stages and search_quality drew."""
    measured = inputs.measured
    images: dict[str, bytes] = {
        figure_src("latency"): render.latency_figure(
            [dict(r, model=MODEL_NAMES[r["model"]]) for r in measured["latency"]], params.latency.seq_len
        )
    }
    if quality_rows:
        images[figure_src("quality")] = render.quality_figure(quality_rows)
    for stage in inputs.stages:
        if stage["figure"] is not None:
            images[figure_src(f"search_stage{stage['stage']}")] = stage["figure"]
    if inputs.quality is not None and inputs.quality_png is not None:
        images[figure_src("search_quality")] = inputs.quality_png
    if inputs.comparison is not None and len(params.methods) > 1:
        batch = int(inputs.comparison["protocol"]["batch_sizes"][0])
        for task, rows in inputs.comparison["tasks"].items():
            images[figure_src(figure_name(task))] = render.methods_figure(rows, task, batch)
    return images


def _raw_data(inputs: ReportInputs, entries: Sequence[paper.PaperEntry]) -> dict[str, Any]:
    """What the report was built from (``report.json``'s ``data``), search figures left out."""
    return {
        "summary": inputs.summary,
        "size_speed": inputs.measured,
        "search": [{k: v for k, v in s.items() if k != "figure"} for s in inputs.stages],
        "search_quality": inputs.quality,
        "export": inputs.exports,
        "comparison": inputs.comparison,
        "predict_test": inputs.manifest,
        "lineage": inputs.lineage,
        "paper_entries": [e.id for e in entries],
    }


def build_report(
    params: Params, inputs: ReportInputs, entries: Sequence[paper.PaperEntry]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The report dict (JSON-ready: the document both renderings come from, plus the raw data and the params) and
    its figures.

    Args:
        params: the run's params.
        inputs: from `effbert.report.inputs.collect`.
        entries: the published numbers (`effbert.report.paper.load_paper_results`).

    Returns:
        The report and the PNG bytes of every figure, keyed by the path the report links (``figures/<name>.png``).
    """
    measured = inputs.measured
    quality_part, quality_rows = quality_section(params, inputs.summary, entries, measured["sizes"])
    images = _figures(params, inputs, quality_rows)
    report: dict[str, Any] = {
        "title": TITLE,
        "generated_at": inputs.lineage["generated_at"],
        "intro": intro_blocks(params),
        "sections": [
            quality_part,
            size_speed_section(measured, entries, params),
            methods_section(inputs.comparison, params),
            search_section(params, inputs.stages, inputs.quality, figure_src("search_quality") in images),
            export_section(inputs.exports, inputs.manifest),
            cost_section(inputs.cost),
            lineage_section(inputs.lineage),
        ],
        "data": _raw_data(inputs, entries),
        "params_yaml": params_mod.dump(params),
    }
    return json_ready(report), images


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's key numbers, flat, for the stage's MLflow run: parameters and MACs per model, median latency and
    speed-ups per batch size, the student's score relative to the teacher per task.

    Args:
        report: a dict returned by `build_report` (or read from ``report.json``).

    Returns:
        Metric name -> finite value.
    """
    data = report["data"]
    metrics: dict[str, Any] = {}
    for name, row in data["size_speed"]["sizes"].items():
        metrics[f"params/{name}"] = row["params"]
        metrics[f"params_without_embeddings/{name}"] = row["params_without_embeddings"]
        metrics[f"macs/{name}"] = row["macs"]
    by_batch: dict[int, dict[str, float]] = {}
    for row in data["size_speed"]["latency"]:
        by_batch.setdefault(int(row["batch_size"]), {})[row["model"]] = row["median_ms"]
        metrics[f"latency_ms/{row['model']}/b{row['batch_size']}"] = row["median_ms"]
    for batch, medians in by_batch.items():
        student = medians.get("student")
        for other in ("teacher", "bert_base"):
            if student and other in medians:
                metrics[f"speedup_vs_{other}/b{batch}"] = medians[other] / student
    for task, record in data["summary"].get("student", {}).items():
        metrics[f"student_vs_teacher/{task}"] = record.get("vs_teacher")
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
