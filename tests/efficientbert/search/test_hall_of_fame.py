"""The hall of fame tables: ranking, Pareto fronts, progress, operator statistics and layer formulas."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from effbert.methods.efficientbert.expr.tree import BINARY_OPS, UNARY_OPS
from effbert.methods.efficientbert.search.hall_of_fame import (
    OPERATOR_COLUMNS,
    RECORD_COLUMNS,
    best_so_far,
    describe_architecture,
    describe_layer,
    hall_of_fame,
    operator_counts,
    operator_frequency,
    pareto_front,
    split_architecture,
)

VANILLA = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
PAPER_L5 = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"
PAPER_L1 = "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))"


def record(index: int, fitness: float, params: int = 1_000_000, status: str = "ok", **extra: Any) -> dict[str, Any]:
    """One evaluation record with defaults for everything but index and fitness."""
    row: dict[str, Any] = {
        "index": index,
        "architecture": f"{VANILLA} | {PAPER_L1}",
        "fingerprint": f"fp{index}",
        "origin": "random",
        "params": params,
        "latency_ms": 1.0,
        "fitness": fitness if status == "ok" else 0.0,
        "status": status,
        "error": "" if status == "ok" else f"{status} candidate",
        "wall_seconds": 2.5,
        "worker": "w0",
        "run_id": "",
    }
    row.update(extra)
    return row


def test_record_columns_are_the_record_keys() -> None:
    assert set(RECORD_COLUMNS) == set(record(0, 0.5))
    assert len(RECORD_COLUMNS) == len(set(RECORD_COLUMNS))


def test_hall_of_fame_sorts_by_fitness_then_index_and_ranks_from_one() -> None:
    records = [record(0, 0.5), record(1, 0.7), record(2, 0.0, status="invalid"), record(3, 0.7), record(4, 0.6)]
    df = hall_of_fame(records)
    assert list(df.columns) == ["rank", *RECORD_COLUMNS]
    assert df["index"].tolist() == [1, 3, 4, 0, 2]
    assert df["rank"].tolist() == [1, 2, 3, 4, 5]
    assert df["fitness"].tolist() == [0.7, 0.7, 0.6, 0.5, 0.0]
    assert df.index.tolist() == [0, 1, 2, 3, 4]
    assert df["params"].dtype == "int64" and df["latency_ms"].dtype == "float64"


def test_hall_of_fame_keeps_nan_latency_and_extra_keys() -> None:
    df = hall_of_fame([record(0, 0.4, latency_ms=math.nan, sst2=0.9), record(1, 0.8)])
    assert df["index"].tolist() == [1, 0]
    assert math.isnan(df["latency_ms"].iloc[1])
    assert list(df.columns)[-1] == "sst2"


def test_hall_of_fame_of_no_records_is_empty_with_columns() -> None:
    df = hall_of_fame([])
    assert df.empty
    assert list(df.columns) == ["rank", *RECORD_COLUMNS]


def test_hall_of_fame_names_the_missing_key() -> None:
    bad = record(1, 0.3)
    del bad["latency_ms"]
    with pytest.raises(ValueError, match="latency_ms"):
        hall_of_fame([record(0, 0.5), bad])


def test_pareto_front_excludes_dominated_failed_and_nan_cost() -> None:
    records = [
        record(0, 0.50, params=100),  # front: cheapest
        record(1, 0.40, params=150),  # dominated by 0 (costlier, worse)
        record(2, 0.70, params=200),  # front
        record(3, 0.70, params=250),  # dominated by 2 (same fitness, costlier)
        record(4, 0.65, params=200),  # dominated by 2 (same cost, worse)
        record(5, 0.90, params=400),  # front
        record(6, 0.00, params=50, status="error"),  # failed: never on the front
        record(7, 0.95, params=300, latency_ms=math.nan),  # on the params front only
        record(8, 0.90, params=400),  # ties with 5 exactly: both stay
    ]
    df = hall_of_fame(records)
    front = pareto_front(df, "params")
    assert front["index"].tolist() == [0, 2, 7]
    assert front["params"].is_monotonic_increasing

    latency = [record(i, f, latency_ms=c) for i, (f, c) in enumerate([(0.5, 3.0), (0.6, 2.0), (0.7, 5.0), (0.2, 1.0)])]
    latency.append(record(4, 0.99, latency_ms=math.nan))
    front = pareto_front(hall_of_fame(latency), "latency_ms")
    assert front["index"].tolist() == [3, 1, 2]
    assert front["latency_ms"].tolist() == [1.0, 2.0, 5.0]


def test_pareto_front_keeps_exact_ties() -> None:
    front = pareto_front(hall_of_fame([record(0, 0.9, params=400), record(1, 0.9, params=400)]), "params")
    assert front["index"].tolist() == [0, 1]


def test_pareto_front_of_only_failures_or_no_latency_is_empty() -> None:
    assert pareto_front(hall_of_fame([record(0, 0.0, status="diverged")]), "params").empty
    assert pareto_front(hall_of_fame([record(0, 0.5, latency_ms=math.nan)]), "latency_ms").empty
    with pytest.raises(ValueError, match="flops"):
        pareto_front(hall_of_fame([record(0, 0.5)]), "flops")


def test_best_so_far_is_the_running_max_in_proposal_order() -> None:
    fitness = [0.3, 0.1, 0.0, 0.6, 0.5, 0.8, 0.2]
    records = [record(i, f) for i, f in enumerate(fitness)]
    records[2] = record(2, 0.0, status="invalid")
    progress = best_so_far(hall_of_fame(records))
    assert list(progress.columns) == ["evaluated", "best_fitness"]
    assert progress["evaluated"].tolist() == list(range(1, 8))
    assert progress["best_fitness"].tolist() == [0.3, 0.3, 0.3, 0.6, 0.6, 0.8, 0.8]
    assert progress["best_fitness"].is_monotonic_increasing


def test_best_so_far_of_nothing_is_empty() -> None:
    assert best_so_far(hall_of_fame([])).empty


def test_operator_counts_of_one_layer() -> None:
    assert operator_counts(VANILLA) == {"gelu": 1, "1_1": 1}
    assert operator_counts(PAPER_L5) == {"relu": 1, "mul": 1, "1_2": 1}
    both = "linear2_2(gelu(linear2_2(add(tanh(x),tanh(mul(x,x))),wb1)),wb2)"
    assert operator_counts(both) == {"gelu": 1, "add": 1, "tanh": 2, "mul": 1, "2_2": 1}
    assert operator_counts("linear(gelu(linear(x,wb1)),wb2)") == {"gelu": 1}


def test_operator_frequency_counts_per_layer_among_the_top_ok() -> None:
    records = [
        record(0, 0.9, architecture=f"{VANILLA} | {PAPER_L1}"),
        record(1, 0.8, architecture=f"{PAPER_L5} | {PAPER_L1}"),
        record(2, 0.7, architecture=f"{PAPER_L5} | linear2_2(tanh(linear2_2(tanh(x),wb1)),wb2)"),
        record(3, 0.1, architecture=f"{PAPER_L5} | {PAPER_L5}"),  # outside the top 3
        record(4, 0.0, status="error", architecture=f"{PAPER_L5} | {PAPER_L5}"),  # failed: never counted
    ]
    table = operator_frequency(hall_of_fame(records), top=3)
    assert list(table.columns) == list(OPERATOR_COLUMNS)
    assert list(table.columns[: len(UNARY_OPS) + len(BINARY_OPS)]) == [*UNARY_OPS, *BINARY_OPS]
    assert table.index.name == "layer"
    assert table.index.tolist() == [1, 2]
    nonzero = {layer: {op: int(n) for op, n in row.items() if n} for layer, row in table.iterrows()}
    assert nonzero[1] == {"gelu": 1, "relu": 2, "mul": 2, "1_1": 1, "1_2": 2}
    assert nonzero[2] == {"gelu": 2, "tanh": 4, "4_2": 2, "2_2": 1}


def test_operator_frequency_without_ok_candidates_is_empty() -> None:
    table = operator_frequency(hall_of_fame([record(0, 0.0, status="invalid")]), top=5)
    assert table.empty and list(table.columns) == list(OPERATOR_COLUMNS)
    with pytest.raises(ValueError, match="top"):
        operator_frequency(hall_of_fame([]), top=-1)


def test_describe_layer_vanilla_and_paper_layers() -> None:
    assert describe_layer(VANILLA) == "W2·gelu(W1·x + b1) + b2"
    assert describe_layer("linear(gelu(linear(x,wb1)),wb2)") == "W2·gelu(W1·x + b1) + b2"
    assert describe_layer(PAPER_L5) == "1×(H/2): W2·relu((W1·x + b1) ⊙ x) + b2"
    assert describe_layer(PAPER_L1) == "4×(H/2): tanh(W2·gelu(W1·x + b1) + b2)"
    assert describe_layer("elu(linear2_1(gelu(linear2_1(x,wb1)),wb2))") == "2×H: elu(W2·gelu(W1·x + b1) + b2)"


def test_describe_layer_binary_ops_and_grouping() -> None:
    assert (
        describe_layer("linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)")
        == "2×(H/2): W2·gelu(W1·max(x, tanh(x)) + b1) + b2"
    )
    assert describe_layer("linear(add(x,tanh(x)),wb1)") == "W1·(x + tanh(x)) + b1"
    assert describe_layer("mul(add(x,x),mul(x,tanh(x)))") == "(x + x) ⊙ x ⊙ tanh(x)"
    assert describe_layer("add(mul(x,x),x)") == "x ⊙ x + x"


def test_split_and_describe_architecture() -> None:
    architecture = f"{VANILLA} | {PAPER_L5}"
    assert split_architecture(architecture) == [VANILLA, PAPER_L5]
    assert describe_architecture(architecture) == [describe_layer(VANILLA), describe_layer(PAPER_L5)]


def test_hall_of_fame_frame_is_a_dataframe() -> None:
    assert isinstance(hall_of_fame([record(0, 0.1)]), pd.DataFrame)
