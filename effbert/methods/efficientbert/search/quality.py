"""Does warm-up KD make the proxy faithful? Candidates picked across a hall of fame's ranks, and the rank
correlation between their proxy fitness and their final dev score (the optional ``search_quality`` stage)."""

from __future__ import annotations

from typing import Any

from effbert.errors import EffbertError

PROXY_COLUMNS = ("proxy_fitness_inherit", "proxy_fitness_scratch")
"""Proxy fitness with weight inheritance from the warm-up supernet, and from random init."""
FINAL_COLUMN = "final_dev_score"
"""The dev score after the full final distillation."""


def pick_candidates(hall_of_fame: Any, count: int) -> Any:
    """``count`` ok candidates at evenly spaced ranks of a hall of fame (best and worst included)."""
    ok = hall_of_fame[hall_of_fame["status"] == "ok"].sort_values("rank").reset_index(drop=True)
    if len(ok) < 3:
        raise EffbertError(f"search_quality needs at least 3 evaluated candidates, the hall of fame has {len(ok)}")
    count = min(count, len(ok))
    positions = sorted({round(i * (len(ok) - 1) / (count - 1)) for i in range(count)})
    return ok.iloc[positions].reset_index(drop=True)


def kendall_tau(x: list[float], y: list[float]) -> tuple[float, float]:
    """Kendall's tau-b and its two-sided p-value (NaN when undefined, e.g. constant scores)."""
    from scipy.stats import kendalltau

    result = kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)
