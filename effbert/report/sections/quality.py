"""Section "Quality per task": per task our teacher and student (dev metrics of this run) beside the published rows,
each row labelled with what it is (`data_label` for ours, `effbert.report.paper.PaperEntry.label` for the papers'),
the quality figure, and the sources of the published rows (the papers and their tables)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from effbert.data.sources import is_sample_data
from effbert.data.tasks import get_task
from effbert.params import Params
from effbert.report import paper
from effbert.report.sections.blocks import Column, bullets, figure_src, image, section, table, text
from effbert.tracking import project_root

OURS = ("teacher", "student")
"""Our models in the quality tables, in row order."""


def on_sample_data(directory: str | Path | None) -> bool:
    """Whether a params data directory (relative to the project root, or absolute) is the bundled demo sample."""
    return is_sample_data(directory, project_root())


def data_label(params: Params, task: str, rows: int | None) -> str:
    """What our dev numbers of a task are on: split, size and data source.

    Args:
        params: the run's params (``data``: where the files came from, the dev cap).
        task: the task id.
        rows: dev rows (SQuAD: questions) evaluated, None when unknown.

    Returns:
        e.g. ``ours, GLUE dev (872 rows), bundled demo sample (not comparable to the paper)``.
    """
    spec = get_task(task)
    if spec.is_squad:
        split = "SQuAD v1.1 dev" if task == "squad_v1" else "SQuAD v2.0 dev"
        directory, unit = params.data.squad_dir, "questions"
    else:
        split = "GLUE dev (matched + mismatched)" if len(spec.dev_splits) > 1 else "GLUE dev"
        directory, unit = params.data.glue_dir, "rows"
    if directory is None:
        source = "official data from the datasets hub"
    elif on_sample_data(directory):
        source = "bundled demo sample (not comparable to the paper)"
    else:
        source = f"files in {directory}"
    size = f"{rows} {unit}" if rows is not None else "rows unknown"
    if params.data.max_eval_examples is not None:
        size += f"; data.max_eval_examples = {params.data.max_eval_examples}"
    return f"ours, {split} ({size}), {source}"


def metric_scale(task: str) -> float:
    """Factor that puts our metrics on the paper's x100 scale (SQuAD EM/F1 already are)."""
    return 1.0 if get_task(task).is_squad else 100.0


def source_lines(entries: Sequence[paper.PaperEntry]) -> list[str]:
    """One line per published entry: the model, its label, the paper and table it comes from, its notes."""
    return [f"{e.model}, {e.label}: {e.source}." + (f" {e.notes}" if e.notes else "") for e in entries]


def _our_row(
    params: Params, task: str, model: str, record: Mapping[str, Any] | None, sizes: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The row of our ``model`` (teacher, student) in the table of ``task``; ``record`` None when not evaluated."""
    what = (
        f"fine-tuned teacher ({params.finetune_teacher.model})" if model == "teacher" else "searched student (EffBert)"
    )
    row: dict[str, Any] = {"_group": "ours", "model": what, "params": sizes[model]["params"]}
    if record is None:
        row["label"] = f"ours, {task} not evaluated"
        return row
    scale = metric_scale(task)
    row["label"] = data_label(params, task, int(record["rows"]) if "rows" in record else None)
    row.update({m: record[m] * scale for m in get_task(task).metrics if record.get(m) is not None})
    row["vs_teacher"] = record.get("vs_teacher")
    return row


def _task_table(
    params: Params,
    task: str,
    ours: Mapping[str, Mapping[str, Any] | None],
    published: Sequence[paper.PaperEntry],
    sizes: Mapping[str, Mapping[str, Any]],
    majority: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The table of one task: our teacher and student, the majority-class baseline, then the published rows."""
    columns: list[Column] = [("model", "model", "text"), ("label", "what the row is", "text")]
    columns += [(m, m, "metric") for m in get_task(task).metrics]
    columns += [("vs_teacher", "score vs teacher", "percent"), ("params", "params", "millions")]
    rows = [_our_row(params, task, model, record, sizes) for model, record in ours.items()]
    if majority is not None:  # the floor: the most frequent training label for every dev row
        scale = metric_scale(task)
        row = {"_group": "ours", "model": "majority class (no model)", "vs_teacher": majority.get("vs_teacher")}
        row["label"] = "ours, the most frequent training label predicted for every dev row"
        rows.append(row | {m: majority[m] * scale for m in get_task(task).metrics if majority.get(m) is not None})
    rows += [
        {"_group": "paper", "model": entry.model, "label": entry.label, "params": entry.params}
        | dict(entry.metrics[task])
        for entry in published
    ]
    note = (
        "Paper rows are published numbers on other splits and data; compare them with each other, and ours with ours."
        if published
        else f"No published numbers for {task} in the papers this report cites."
    )
    return table(
        f"{task}: our teacher and searched student (dev metrics of this run), the majority-class baseline and the "
        "published rows; metrics "
        "x100; score vs teacher = the task's selection score relative to our teacher's; params: ours = "
        "encoder without pooler, head or fit_dense, paper = as published",
        columns,
        rows,
        note,
    )


def quality_section(
    params: Params,
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    entries: Sequence[paper.PaperEntry],
    sizes: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The quality tables (one per task), the quality figure and the sources of the published rows.

    Args:
        params: the run's params (``tasks``, ``data``, ``finetune_teacher.model``).
        summary: ``summary.json`` of eval_summary (model -> task -> metrics).
        entries: the published numbers (`effbert.report.paper.load_paper_results`).
        sizes: model -> size row (`effbert.report.measurements.measure`'s ``sizes``).

    Returns:
        The section and, per task, ``{"task", "teacher", "student"}`` selection scores (x100) for
        `effbert.report.render.quality_figure`.
    """
    blocks: list[dict[str, Any]] = []
    figure_rows: list[dict[str, Any]] = []
    used: list[paper.PaperEntry] = []
    for task in params.tasks:
        ours = {model: summary.get(model, {}).get(task) for model in OURS}
        published = paper.rows_for_task(entries, task)
        used += [e for e in published if e not in used]
        majority = summary.get("majority", {}).get(task)
        blocks.append(_task_table(params, task, ours, published, sizes, majority))
        if any(record is not None for record in ours.values()):
            scale = metric_scale(task)
            scores = {m: (r["score"] * scale if r is not None else None) for m, r in ours.items()}
            figure_rows.append({"task": task, **scores})
    if figure_rows:
        blocks.append(
            image(
                figure_src("quality"),
                "Dev selection score (x100) of our teacher and student per task; the label above each student bar "
                "is its share of the teacher's score.",
            )
        )
    if used:
        blocks += [text("Sources of the published rows:"), bullets(source_lines(used))]
    return section("quality", "Quality per task", blocks), figure_rows
