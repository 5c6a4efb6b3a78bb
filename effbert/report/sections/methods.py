"""Section "Methods compared": every compression method's models on every task, from the same teacher, data,
evaluation and latency protocol (`effbert.report.comparison`, measured by the ``eval_summary`` stage): one table
and one figure per task (dev score against latency and against parameters, DynaBERT's grid and FastBERT's thresholds
as curves, the Pareto front marked), and why a method is absent from a task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from effbert.data.tasks import get_task
from effbert.params import Params, method_tasks
from effbert.report.sections.blocks import figure_src, image, section, table, text

ABSENT_BECAUSE = {
    "dynabert": "DynaBERT defines no span-QA recipe (its width/depth distillation matches logits of a sentence head)",
    "fastbert": "FastBERT's exit rule is the normalised entropy of a class distribution: classification tasks only",
}
"""Why a method has no stage for a task it does not define (the report says so instead of a placeholder)."""


def figure_name(task: str) -> str:
    """The figure of one task's comparison (``methods_<task>``)."""
    return f"methods_{task}"


def _columns(batch_sizes: list[int]) -> list[tuple[str, str, str]]:
    return [
        ("method_label", "method", "text"),
        ("variant", "variant", "text"),
        ("shape", "shape", "text"),
        ("params", "params", "millions"),
        ("params_without_embeddings", "without embeddings", "millions"),
        ("macs", "MACs / sequence", "giga"),
        *((f"latency_ms_b{b}", f"latency b{b}", "ms") for b in batch_sizes),
        ("score", "dev score", "float4"),
        ("vs_teacher", "share of teacher", "percent"),
        ("front", "Pareto (latency)", "text"),
    ]


def absent_notes(params: Params) -> list[str]:
    """One sentence per (method, tasks) pair the DAG has no stage for, and why."""
    notes = []
    for method, why in ABSENT_BECAUSE.items():
        if method not in params.methods:
            continue
        missing = [t for t in params.tasks if t not in method_tasks(method, params.tasks)]
        if missing:
            kinds = sorted({get_task(t).kind for t in missing})
            notes.append(f"{method} is absent from {', '.join(missing)} ({'/'.join(kinds)}): {why}.")
    return notes


def methods_section(comparison: Mapping[str, Any] | None, params: Params) -> dict[str, Any]:
    """The section (tables and figures per task); a note when the run compared no other method."""
    if len(params.methods) < 2:
        note = "Only EfficientBERT ran (params `methods`); add tinybert, theseus, dynabert or fastbert to compare."
        return section("methods", "Methods compared", [text(note)])
    if comparison is None:
        note = "eval_summary wrote no comparison.json: rerun it (`effbert run`) to measure the methods side by side."
        return section("methods", "Methods compared", [text(note, style="warning")])
    batches = list(comparison["protocol"]["batch_sizes"])
    blocks: list[dict[str, Any]] = [
        text(
            "Every method below started from the same fine-tuned teacher checkpoint and the same prepared data "
            "(held-out slice of train for checkpoint selection, dev for the scores), went through the same "
            "evaluation code and was timed by the same latency protocol on this machine, side by side, every model "
            "on the same linear kernel. Sizes differ: read the figures' x axes. Parameters count the encoder "
            "(embeddings included; no pooler, task head or distillation projection)."
        )
    ]
    for note in absent_notes(params):
        blocks.append(text(note))
    if "fastbert" in params.methods and len(batches) > 1:
        blocks.append(
            text(
                f"FastBERT's rows are timed on real dev rows padded to {comparison['protocol']['seq_len']} tokens: one "
                f"at a time at batch {batches[0]} (each row leaves at its own exit), and in batches of {batches[-1]} "
                "where a batch leaves only when all its rows may (the paper's batch rule): compare its two latency "
                "columns to see what batching costs early exit. Thresholds under which every batch runs the same "
                "layers do the same work and share one timing."
            )
        )
    for task, rows in comparison["tasks"].items():
        shown = [dict(row, front="on the front" if row["pareto_latency"] else "") for row in rows]
        blocks.append(table(f"{task}: every method's models (dev)", _columns(batches), shown))
        blocks.append(
            image(
                figure_src(figure_name(task)),
                f"{task}: dev score against latency at batch {batches[0]} and against parameters; the line is the "
                "Pareto front",
            )
        )
    return section("methods", "Methods compared", blocks)
