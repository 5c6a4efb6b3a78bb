"""The proxy's noise: how much one architecture's fitness moves between seeds (data order and fresh head).

Stage 1 scores its vanilla GELU candidate under ``search.noise_seeds`` seeds (the search's own first, its score
reused); the standard deviation of those scores is the unit in which every stage's gain over the vanilla candidate is
stated: a gain within about two standard deviations is not evidence that the searched MLPs are better.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

BEYOND_NOISE_SD = 2.0
"""A gain counts as beyond the proxy's noise when it exceeds this many standard deviations."""


def noise_seeds(seed: int, count: int) -> list[int]:
    """The seeds of the noise measurement: the search's own ``seed`` first, then ``seed + 1``, ..."""
    return [seed + offset for offset in range(count)]


def measure_noise(seeds: Sequence[int], known: Mapping[int, float], score: Callable[[int], float]) -> dict[str, Any]:
    """The fitness of one architecture under each of ``seeds`` (``known`` ones reused, the rest from ``score``).

    Returns:
        ``seeds``, ``fitness`` (in seed order), ``mean`` and ``std`` (sample standard deviation).

    Raises:
        ValueError: fewer than two seeds.
    """
    if len(seeds) < 2:
        raise ValueError(f"the proxy's noise needs at least 2 seeds, got {len(seeds)}")
    fitness = [float(known[s]) if s in known else float(score(s)) for s in seeds]
    return {
        "seeds": list(seeds),
        "fitness": fitness,
        "mean": statistics.mean(fitness),
        "std": statistics.stdev(fitness),
    }


def in_noise_units(gain: float, noise: Mapping[str, Any] | None) -> float:
    """``gain`` divided by the noise's standard deviation (NaN without a measurement or with zero spread)."""
    std = float(noise["std"]) if noise else math.nan
    return gain / std if std > 0 and math.isfinite(gain) else math.nan


def verdict(gain: float, noise: Mapping[str, Any] | None) -> str:
    """One plain sentence: is ``gain`` beyond the proxy's noise?"""
    units = in_noise_units(gain, noise)
    if math.isnan(units):
        return "the proxy's noise was not measured (search.noise_seeds: 0) or has no spread: no verdict"
    if units > BEYOND_NOISE_SD:
        return f"{units:.1f} SD of the proxy's noise: beyond noise"
    return f"{units:+.1f} SD of the proxy's noise: within noise, no evidence the search found better MLPs"
