"""A training stage's report as files: ``metrics.json``, ``history.csv``, one CSV per curve under ``plots/`` (for
``dvc plots``) and ``history.png`` (for people)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from effbert.data.tasks import SELECTION
from effbert.training.loop import TrainingOutcome

TRAIN_CURVES = ("loss", "kd_attention", "kd_hidden", "kd_prediction")
"""Training-log columns plotted when present: the total loss and the distillation terms."""


def write_history(history: Any, report_dir: Path) -> None:
    """The Trainer's log history as ``history.csv``, per-curve CSVs under ``plots/`` (for ``dvc plots``) and
    ``history.png`` (for people): training losses against step, and the held-out selection score when evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history.to_csv(report_dir / "history.csv", index=False)
    plots = report_dir / "plots"
    plots.mkdir()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    curves = [c for c in TRAIN_CURVES if c in history and history[c].notna().any()]
    for curve in curves:
        rows = history.dropna(subset=[curve])[["step", curve]]
        rows.to_csv(plots / f"train_{curve}.csv", index=False)
        ax.plot(rows["step"], rows[curve], label=f"train {curve}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if len(curves) > 1:
        ax.set_yscale("log")
    score = f"eval_{SELECTION}"
    if score in history and history[score].notna().any():
        evals = history.dropna(subset=[score])[["step", score]]
        evals.rename(columns={score: "heldout_score"}).to_csv(plots / "heldout_score.csv", index=False)
        ax2 = ax.twinx()
        ax2.plot(evals["step"], evals[score], "o-", color="black", label="held-out score")
        ax2.set_ylabel("held-out selection score")
    fig.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(report_dir / "history.png", dpi=100)
    plt.close(fig)


def write_training_report(
    outcome: TrainingOutcome, train_rows: int, report_dir: Path, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """``metrics.json`` and the history files of a training stage; returns the metrics.

    The metrics: ``train_steps``, ``train_rows``, ``train_seconds``, ``resumed``, with held-out selection
    ``best_heldout_score`` and ``best_checkpoint_step``, then ``extra``.
    """
    write_history(outcome.history(), report_dir)
    metrics: dict[str, Any] = {
        "train_steps": outcome.steps,
        "train_rows": train_rows,
        "train_seconds": outcome.seconds,
        "resumed": outcome.resumed,
    }
    if outcome.best_score is not None:
        metrics.update(best_heldout_score=outcome.best_score, best_checkpoint_step=outcome.best_step)
    metrics.update(extra)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
