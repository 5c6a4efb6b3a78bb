"""search_quality's pure parts: which candidates it takes from a hall of fame, and Kendall's tau."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from effbert.errors import EffbertError
from effbert.methods.efficientbert.search.quality import kendall_tau, pick_candidates


def table(fitness: list[float], failed: int = 0) -> pd.DataFrame:
    rows = [{"rank": i + 1, "index": i, "status": "ok", "fitness": f} for i, f in enumerate(fitness)]
    rows += [{"rank": len(rows) + k + 1, "index": 100 + k, "status": "error", "fitness": 0.0} for k in range(failed)]
    return pd.DataFrame(rows)


def test_candidates_spread_over_the_ranks_best_and_worst_included() -> None:
    picked = pick_candidates(table([0.9 - 0.05 * i for i in range(10)], failed=2), 4)
    assert picked["index"].tolist() == [0, 3, 6, 9]  # evenly spaced ranks; failed candidates never picked
    assert pick_candidates(table([0.5, 0.4, 0.3]), 8)["index"].tolist() == [0, 1, 2]  # never more than exist


def test_too_few_evaluated_candidates_is_a_clear_error() -> None:
    with pytest.raises(EffbertError, match="at least 3 evaluated candidates"):
        pick_candidates(table([0.5, 0.4], failed=3), 4)


def test_kendall_tau_b() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10])[0] == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3])[0] == pytest.approx(4 / 6)
    assert math.isnan(kendall_tau([1, 2, 3], [5, 5, 5])[0])  # undefined for a constant score
