"""Stage ``eval_summary``: every ``results/eval/<model>/<task>/metrics.json`` in one pandas table.

Output ``results/eval_summary/``: ``summary.csv`` (one row per model and task), ``summary.json`` (nested
``{model: {task: {metric: value}}}``, registered as DVC metrics) and ``summary.md`` (what ``effbert run`` prints).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from effbert.errors import EffbertError

log = logging.getLogger(__name__)


def collect(eval_dir: Path) -> pd.DataFrame:
    """One row per (model, task): split, row count, score, score relative to the teacher's, every metric."""
    records = []
    for path in sorted(eval_dir.glob("*/*/metrics.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        records.append(
            {
                "model": record["model"],
                "task": record["task"],
                "split": record["split"],
                "rows": sum(record["rows"].values()),
                "score": record["score"],
                **record["metrics"],
            }
        )
    if not records:
        raise EffbertError(f"{eval_dir}: no */*/metrics.json found")
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


def run(eval_dir: Path, out_dir: Path) -> pd.DataFrame:
    table = collect(eval_dir)
    table.to_csv(out_dir / "summary.csv", index=False)
    nested: dict[str, dict[str, dict[str, float]]] = {}
    for row in table.to_dict("records"):
        values = {k: v for k, v in row.items() if k not in ("model", "task", "split") and pd.notna(v)}
        nested.setdefault(str(row["model"]), {})[str(row["task"])] = values
    (out_dir / "summary.json").write_text(json.dumps(nested, indent=2) + "\n", encoding="utf-8")
    markdown = to_markdown(table)
    (out_dir / "summary.md").write_text(markdown, encoding="utf-8")
    log.info("dev metrics (ours, %s rows):\n%s", int(table["rows"].sum()), markdown)
    return table
