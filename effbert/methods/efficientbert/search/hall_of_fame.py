"""Tables over a search's evaluation records: the hall of fame, Pareto fronts, progress and operator statistics.

A search stage evaluates candidate architectures and keeps one record (a mapping) per evaluation with the keys of
`RECORD_COLUMNS`. Everything here is pure: records or DataFrames in, DataFrames or strings out, no file I/O.

An architecture is the per-layer sized expressions joined by ``" | "``, for example
``linear1_1(gelu(linear1_1(x,wb1)),wb2) | tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from effbert.methods.efficientbert.expr.tree import (
    ALL_SIZES,
    BINARY_OPS,
    UNARY_OPS,
    Binary,
    Expr,
    Term,
    Unary,
    nodes,
    parse,
    size_id,
)

RECORD_COLUMNS: tuple[str, ...] = (
    "index",
    "architecture",
    "fingerprint",
    "origin",
    "status",
    "fitness",
    "params",
    "latency_ms",
    "error",
    "wall_seconds",
    "worker",
    "run_id",
)
"""The keys every evaluation record carries, in the hall of fame's column order (after ``rank``)."""

STATUSES: tuple[str, ...] = ("ok", "invalid", "diverged", "error")
"""The values of a record's ``status``; only ``ok`` candidates have a meaningful fitness."""

LAYER_SEPARATOR = " | "
"""What joins the per-layer expressions of an architecture string."""

SIZE_IDS: tuple[str, ...] = tuple(f"{s}_{r}" for s, r in ALL_SIZES)
"""Every size id as ``operator_frequency`` names its columns (``"4_2"``: 4 units of width H/2)."""

OPERATOR_COLUMNS: tuple[str, ...] = (*UNARY_OPS, *BINARY_OPS, *SIZE_IDS)
"""The columns of `operator_frequency`: activations, binary ops, then size ids."""

_INT_COLUMNS = ("index", "params")
_FLOAT_COLUMNS = ("fitness", "latency_ms", "wall_seconds")
_STR_COLUMNS = ("architecture", "fingerprint", "origin", "status", "error", "worker", "run_id")


def split_architecture(architecture: str) -> list[str]:
    """The per-layer expression strings of an architecture string (whitespace around each layer stripped).

    Args:
        architecture: the layers' expressions joined by ``" | "``.

    Returns:
        One expression string per layer, layer 1 first.
    """
    return [layer.strip() for layer in architecture.split("|")]


def hall_of_fame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """All evaluation records as one ranked table, best first.

    Args:
        records: the evaluation records; each must carry every key of `RECORD_COLUMNS`. Extra keys are kept as extra
            columns after the standard ones.

    Returns:
        One row per record with the columns ``rank`` and `RECORD_COLUMNS` (then any extra keys), sorted by fitness
        descending (NaN fitness last), ties by ``index`` ascending; ``rank`` runs 1..n in that order (1 = best).
        The row index is 0..n-1.

    Raises:
        ValueError: a record lacks a key of `RECORD_COLUMNS` (the message names the key and the record's position).
    """
    extra: list[str] = []
    for position, record in enumerate(records):
        missing = [key for key in RECORD_COLUMNS if key not in record]
        if missing:
            raise ValueError(
                f"record {position} (index {record.get('index', '?')}) lacks the key(s) {', '.join(missing)}; "
                f"every record needs {', '.join(RECORD_COLUMNS)}"
            )
        extra.extend(key for key in record if key not in RECORD_COLUMNS and key not in extra)
    columns = [*RECORD_COLUMNS, *extra]
    df = pd.DataFrame([{key: record.get(key) for key in columns} for record in records], columns=columns)
    for column in _INT_COLUMNS:
        df[column] = df[column].astype("int64")
    for column in _FLOAT_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    for column in _STR_COLUMNS:
        df[column] = df[column].fillna("").astype(str)
    df = df.sort_values(["fitness", "index"], ascending=[False, True], na_position="last", kind="mergesort")
    df = df.reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def _successful(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with status ``ok`` and a finite fitness."""
    return df[(df["status"] == "ok") & df["fitness"].notna()]


def pareto_front(df: pd.DataFrame, cost: str) -> pd.DataFrame:
    """The non-dominated candidates: maximal fitness for minimal ``cost``.

    A candidate is dominated when another one is at most as costly and at least as fit, and strictly better in one of
    the two. Candidates equal in both cost and fitness do not dominate each other, so all of them stay.

    Args:
        df: a hall of fame (see `hall_of_fame`), or any frame with ``fitness``, ``status``, ``index`` and ``cost``.
        cost: the column to minimise, e.g. ``params`` or ``latency_ms``.

    Returns:
        The non-dominated rows among those with status ``ok`` and a non-NaN cost and fitness, sorted by cost
        ascending (then index), with the row index reset.

    Raises:
        ValueError: ``cost`` is not a column of ``df``.
    """
    if cost not in df.columns:
        raise ValueError(f"cost column {cost!r} not in the table; columns are {', '.join(map(str, df.columns))}")
    rows = _successful(df)
    rows = rows[rows[cost].notna()]
    rows = rows.sort_values([cost, "fitness", "index"], ascending=[True, False, True], kind="mergesort")
    keep: list[bool] = []
    best_cheaper = -math.inf  # the best fitness among strictly cheaper rows
    best_here = -math.inf  # the best fitness at the current cost (the first row of each cost group, given the sort)
    current: Any = None
    for row_cost, fitness in zip(rows[cost].tolist(), rows["fitness"].tolist(), strict=True):
        if current is None or row_cost != current:
            best_cheaper = max(best_cheaper, best_here)
            best_here = fitness
            current = row_cost
        keep.append(fitness == best_here and fitness > best_cheaper)
    return rows[keep].reset_index(drop=True)


def best_so_far(df: pd.DataFrame) -> pd.DataFrame:
    """The search's progress: the best fitness found after each evaluation, in proposal order.

    Args:
        df: a hall of fame (any order); failed candidates count as evaluations with their fitness (0.0).

    Returns:
        Columns ``evaluated`` (1..n, in ``index`` order) and ``best_fitness`` (running maximum; NaN fitnesses are
        skipped, NaN only until the first number).
    """
    fitness = df.sort_values("index", kind="mergesort")["fitness"].astype("float64").reset_index(drop=True)
    return pd.DataFrame(
        {"evaluated": range(1, len(fitness) + 1), "best_fitness": fitness.cummax().ffill()},
    )


def operator_counts(expr: Expr | str) -> dict[str, int]:
    """How often each activation and binary op occurs in one layer expression, plus its size id once.

    Args:
        expr: the layer expression (a tree or its string).

    Returns:
        Non-zero counts keyed by operator name (see `UNARY_OPS`, `BINARY_OPS`) and the size id as ``"s_r"``
        (count 1) when the expression's first ``linear`` carries one.

    Raises:
        ValueError: the string does not parse.
    """
    tree = parse(expr) if isinstance(expr, str) else expr
    counts: dict[str, int] = {}
    for node in nodes(tree):
        if isinstance(node, Unary | Binary):
            counts[node.op] = counts.get(node.op, 0) + 1
    size = size_id(tree)
    if size is not None:
        counts[f"{size[0]}_{size[1]}"] = 1
    return counts


def operator_frequency(df: pd.DataFrame, top: int) -> pd.DataFrame:
    """Which operators the best candidates use, layer by layer.

    Args:
        df: a hall of fame (any order).
        top: how many of the best ``ok`` candidates to count (by fitness descending, ties by index).

    Returns:
        One row per layer (index ``layer``, 1-based, as many as the longest architecture among them) and the columns
        `OPERATOR_COLUMNS`: for each activation and binary op the number of its occurrences in that layer's
        expressions, for each size id the number of candidates whose layer has it. Empty (no rows) when no ``ok``
        candidate exists.

    Raises:
        ValueError: ``top`` is negative, or a counted architecture does not parse.
    """
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    best = _successful(df).sort_values(["fitness", "index"], ascending=[False, True], kind="mergesort").head(top)
    per_layer: list[dict[str, int]] = []
    for architecture in best["architecture"].tolist():
        for position, layer in enumerate(split_architecture(architecture)):
            if position == len(per_layer):
                per_layer.append({})
            for op, count in operator_counts(layer).items():
                per_layer[position][op] = per_layer[position].get(op, 0) + count
    table = pd.DataFrame(
        [[counts.get(column, 0) for column in OPERATOR_COLUMNS] for counts in per_layer],
        columns=list(OPERATOR_COLUMNS),
        index=pd.RangeIndex(1, len(per_layer) + 1, name="layer"),
        dtype="int64",
    )
    return table


_ATOM, _PRODUCT, _SUM = 3, 2, 1  # binding strength of a rendered piece: call/symbol > a ⊙ b > a + b


def _render(expr: Expr) -> tuple[str, int]:
    """A formula for ``expr`` and how tightly it binds (`_ATOM`, `_PRODUCT` or `_SUM`)."""
    if isinstance(expr, Term):
        return expr.name, _ATOM
    if isinstance(expr, Unary):
        return f"{expr.op}({_render(expr.arg)[0]})", _ATOM
    if isinstance(expr, Binary):
        left, left_level = _render(expr.left)
        right, right_level = _render(expr.right)
        if expr.op == "max":
            return f"max({left}, {right})", _ATOM
        if expr.op == "add":
            return f"{left} + {right}", _SUM
        left = left if left_level >= _PRODUCT else f"({left})"
        right = right if right_level >= _PRODUCT else f"({right})"
        return f"{left} ⊙ {right}", _PRODUCT
    arg, arg_level = _render(expr.arg)
    arg = arg if arg_level >= _ATOM else f"({arg})"
    if isinstance(expr.wb, Term) and expr.wb.name in ("wb1", "wb2"):
        n = expr.wb.name[-1]
        return f"W{n}·{arg} + b{n}", _SUM
    return f"linear({arg}, {_render(expr.wb)[0]})", _ATOM  # an invalid candidate: weights from a non-terminal


def describe_layer(expr: Expr | str) -> str:
    """A readable formula for one layer's expression.

    ``linear(a, wbN)`` becomes ``WN·a + bN``, activations stay calls, ``add``/``mul``/``max`` become ``a + b``,
    ``a ⊙ b`` and ``max(a, b)``. A size id other than the vanilla ``1_1`` (one unit of the full width H) is prefixed
    as ``s×(H/r): `` (``s×H: `` for ``r = 1``).

    Examples:
        ``linear1_1(gelu(linear1_1(x,wb1)),wb2)`` gives ``W2·gelu(W1·x + b1) + b2``;
        ``linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)`` gives ``1×(H/2): W2·relu((W1·x + b1) ⊙ x) + b2``.

    Args:
        expr: the layer expression (a tree or its string).

    Returns:
        The formula.

    Raises:
        ValueError: the string does not parse.
    """
    tree = parse(expr) if isinstance(expr, str) else expr
    formula = _render(tree)[0]
    size = size_id(tree)
    if size is None or size == (1, 1):
        return formula
    s, r = size
    width = "H" if r == 1 else f"(H/{r})"
    return f"{s}×{width}: {formula}"


def describe_architecture(architecture: str) -> list[str]:
    """`describe_layer` for every layer of an architecture string, layer 1 first."""
    return [describe_layer(layer) for layer in split_architecture(architecture)]


__all__ = [
    "LAYER_SEPARATOR",
    "OPERATOR_COLUMNS",
    "RECORD_COLUMNS",
    "SIZE_IDS",
    "STATUSES",
    "best_so_far",
    "describe_architecture",
    "describe_layer",
    "hall_of_fame",
    "operator_counts",
    "operator_frequency",
    "pareto_front",
    "split_architecture",
]
