"""Every dev evaluation of a run in one pandas table: one row per (model, task), the score relative to the
teacher's on the same task, every metric; and that table as Markdown (no file I/O here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from effbert.errors import EffbertError


def summary_table(evaluations: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (model, task): split, row count, score, score relative to the teacher's, every metric; plus a
    ``majority`` row per sentence task (the most frequent training label for every dev row, from the records'
    ``majority`` baseline), the floor every model must clear.

    Args:
        evaluations: the ``evaluate`` stage's ``metrics.json`` records.

    Raises:
        EffbertError: no record.
    """
    records = []
    baselines: dict[str, dict[str, Any]] = {}
    for record in evaluations:
        row = {"model": record["model"], "task": record["task"], "split": record["split"]}
        row["rows"] = sum(record["rows"].values())
        records.append({**row, "score": record["score"], **record["metrics"]})
        if record.get("majority"):
            majority = record["majority"]
            baselines[record["task"]] = {**row, "model": "majority", "score": majority["score"], **majority["metrics"]}
    records += baselines.values()
    if not records:
        raise EffbertError("no evaluate record to summarise")
    table = pd.DataFrame.from_records(records).sort_values(["task", "model"], ignore_index=True)
    teacher = table[table["model"] == "teacher"].set_index("task")["score"]
    # the share of the teacher's score each model keeps on the same task (empty without a teacher row)
    table.insert(5, "vs_teacher", table["score"] / table["task"].map(teacher))
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table; metrics shown with 4 decimals (SQuAD EM/F1 are already x100)."""
    shown = table.copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    head = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def nested(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {task: {metric: value}}}`` of a summary table (the DVC metrics file)."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for row in table.to_dict("records"):
        values = {k: v for k, v in row.items() if k not in ("model", "task", "split") and pd.notna(v)}
        result.setdefault(str(row["model"]), {})[str(row["task"])] = values
    return result
