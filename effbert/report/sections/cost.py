"""Section "Training cost": every training stage of the run with its optimisation steps, the sequences it trained
on and how many processes shared them (`effbert.measure.cost`), on the run's prepared data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from effbert.report.sections.blocks import section, table, text


def cost_section(cost: Mapping[str, Any] | None) -> dict[str, Any]:
    """The section: the stages' steps and sequences, the data they came from, how to price them in hours."""
    if not cost:
        return section("cost", "Training cost", [text("No cost record: rerun the report stage.", style="warning")])
    rows = [{**row, "shape": f"{row['processes']} x {row['batch']}"} for row in cost["stages"]]
    data = ", ".join(f"{task} {n:,}" for task, n in cost["train_rows"].items())
    blocks = [
        table(
            "Optimisation steps and training sequences per training stage (search stages: per candidate steps, "
            "sequences over every candidate)",
            [
                ("stage", "stage", "text"),
                ("steps", "steps", "int"),
                ("sequences", "sequences", "int"),
                ("shape", "processes x batch", "text"),
            ],
            rows,
        ),
        text(
            f"Training rows after the held-out cut: {data}; corpus: {cost['corpus_sequences']:,} packed rows. "
            "`effbert estimate --params <profile>` prices the same stages in device-hours from steps timed on "
            "the machine it runs on, before a run."
        ),
    ]
    return section("cost", "Training cost", blocks)
