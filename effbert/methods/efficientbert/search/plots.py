"""Figures of a search: fitness against cost with Pareto fronts, progress, operator statistics, proxy quality.

Figures are built on matplotlib's Agg canvas without pyplot (so nothing is registered globally and nothing needs
closing) and returned; callers save them (``fig.savefig(path, dpi=100)``), nothing here writes files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from effbert.methods.efficientbert.search.hall_of_fame import best_so_far, operator_frequency, pareto_front

STATUS_COLORS: dict[str, str] = {"invalid": "tab:gray", "diverged": "tab:orange", "error": "tab:red"}
"""The colour of each failure status' ``x`` markers."""

_OK_COLOR = "tab:blue"
_FRONT_COLOR = "tab:green"


def _new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _empty(ax: Axes, message: str) -> None:
    """Write ``message`` in the middle of an otherwise blank panel."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="dimgray")
    ax.set_xticks([])
    ax.set_yticks([])


def _cost_panel(ax: Axes, df: pd.DataFrame, cost: str, label: str, scale: float, missing: str) -> None:
    """Fitness against one cost: ``ok`` candidates as dots, failures as ``x`` at fitness 0, the Pareto front
    as a step line through highlighted points."""
    ok = df[(df["status"] == "ok") & df[cost].notna()]
    failed = df[(df["status"] != "ok") & df[cost].notna()]
    if ok.empty and failed.empty:
        _empty(ax, missing)
        ax.set_xlabel(label)
        return
    ax.scatter(ok[cost] / scale, ok["fitness"], s=14, alpha=0.5, color=_OK_COLOR, label=f"ok ({len(ok)})")
    for status, rows in failed.groupby("status", sort=True):
        ax.scatter(
            rows[cost] / scale,
            np.zeros(len(rows)),
            marker="x",
            s=20,
            color=STATUS_COLORS.get(str(status), "black"),
            label=f"{status} ({len(rows)})",
        )
    front = pareto_front(df, cost)
    if not front.empty:
        ax.step(front[cost] / scale, front["fitness"], where="post", color=_FRONT_COLOR, linewidth=1.2)
        ax.scatter(
            front[cost] / scale,
            front["fitness"],
            s=36,
            facecolors="none",
            edgecolors=_FRONT_COLOR,
            linewidths=1.5,
            label=f"Pareto front ({len(front)})",
        )
    ax.set_xlabel(label)
    ax.set_ylabel("fitness")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)


def _progress_panel(ax: Axes, df: pd.DataFrame, reference_fitness: float | None) -> None:
    """Best fitness so far against candidates evaluated, each candidate's own fitness faintly behind."""
    progress = best_so_far(df)
    if progress.empty:
        _empty(ax, "no candidates evaluated")
        return
    ordered = df.sort_values("index", kind="mergesort")
    ax.scatter(progress["evaluated"], ordered["fitness"].fillna(0.0), s=8, alpha=0.3, color="gray", label="candidate")
    ax.step(progress["evaluated"], progress["best_fitness"], where="post", color=_OK_COLOR, label="best so far")
    if reference_fitness is not None and not math.isnan(reference_fitness):
        ax.axhline(reference_fitness, linestyle="--", color="black", linewidth=1.0, label="vanilla GELU")
    ax.set_xlabel("candidates evaluated")
    ax.set_ylabel("best fitness so far")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)


def _operator_panel(fig: Figure, ax: Axes, df: pd.DataFrame, top: int) -> None:
    """A layers x operators heatmap of operator counts among the ``top`` best candidates, counts written in."""
    table = operator_frequency(df, top)
    table = table.loc[:, (table != 0).any(axis=0)]
    counted = int(min(top, ((df["status"] == "ok") & df["fitness"].notna()).sum()))
    ax.set_title(f"(d) operators per layer, top {counted}")
    if table.empty:
        _empty(ax, "no successful candidates")
        return
    values = table.to_numpy()
    image = ax.imshow(values, cmap="Blues", aspect="auto", vmin=0, vmax=max(int(values.max()), 1))
    ax.set_xticks(np.arange(values.shape[1]), labels=list(table.columns), rotation=60, ha="right", fontsize="small")
    ax.set_yticks(np.arange(values.shape[0]), labels=[str(layer) for layer in table.index])
    ax.set_ylabel("layer")
    threshold = values.max() / 2
    for (row, column), count in np.ndenumerate(values):
        if count:
            color = "white" if count > threshold else "black"
            ax.text(column, row, str(count), ha="center", va="center", fontsize="x-small", color=color)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)


def search_figure(df: pd.DataFrame, title: str, reference_fitness: float | None = None, top: int = 10) -> Figure:
    """The four panels of a search's outcome.

    (a) fitness against parameters (millions), (b) fitness against latency (ms), each with its Pareto front as a step
    line through highlighted points and failed candidates as ``x`` markers at fitness 0; (c) the best fitness so far
    against candidates evaluated, with the vanilla GELU reference as a dashed line; (d) a heatmap of operator counts
    per layer among the ``top`` best candidates.

    Args:
        df: a hall of fame (see `hall_of_fame.hall_of_fame`).
        title: the figure's title.
        reference_fitness: the vanilla MLP's fitness, drawn in (c) when given.
        top: how many of the best ``ok`` candidates panel (d) counts.

    Returns:
        The figure (2 x 2 axes, plus a colour bar when (d) has counts).
    """
    fig = _new_figure(13.0, 9.5)
    axes = fig.subplots(2, 2)
    _cost_panel(axes[0, 0], df, "params", "parameters (M)", 1e6, "no parameter counts")
    axes[0, 0].set_title("(a) fitness vs parameters")
    _cost_panel(axes[0, 1], df, "latency_ms", "latency (ms)", 1.0, "latency not measured")
    axes[0, 1].set_title("(b) fitness vs latency")
    _progress_panel(axes[1, 0], df, reference_fitness)
    axes[1, 0].set_title("(c) search progress")
    _operator_panel(fig, axes[1, 1], df, top)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def quality_figure(
    df: pd.DataFrame, proxy_columns: Sequence[str], final_column: str, taus: Mapping[str, float]
) -> Figure:
    """How well each proxy fitness predicts the final score: one scatter per proxy, Kendall's tau in the title.

    Args:
        df: one row per candidate with the proxy columns and the final column.
        proxy_columns: the proxy fitness columns (x axes), one panel each.
        final_column: the final dev score column (y axis).
        taus: Kendall's tau between each proxy column and the final column (a missing or NaN tau shows as n/a).

    Returns:
        The figure, one axes per proxy column side by side.

    Raises:
        ValueError: no proxy columns, or a named column is not in ``df``.
    """
    if not proxy_columns:
        raise ValueError("quality_figure needs at least one proxy column")
    missing = [column for column in (*proxy_columns, final_column) if column not in df.columns]
    if missing:
        raise ValueError(f"column(s) {', '.join(missing)} not in the table; columns are {', '.join(df.columns)}")
    fig = _new_figure(4.5 * len(proxy_columns), 4.0)
    axes = fig.subplots(1, len(proxy_columns), squeeze=False)[0]
    for ax, column in zip(axes, proxy_columns, strict=True):
        rows = df[[column, final_column]].dropna()
        tau = taus.get(column, math.nan)
        shown = "n/a" if tau is None or math.isnan(tau) else f"{tau:.3f}"
        ax.set_title(f"{column}: Kendall's τ = {shown}")
        if rows.empty:
            _empty(ax, "no candidates with both scores")
        else:
            ax.scatter(rows[column], rows[final_column], s=20, alpha=0.7, color=_OK_COLOR)
            ax.grid(alpha=0.3)
        ax.set_xlabel(f"proxy fitness ({column})")
        ax.set_ylabel(f"final dev score ({final_column})")
    fig.tight_layout()
    return fig
