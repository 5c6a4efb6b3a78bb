"""The proxy's noise: scores under several seeds, the search's own reused, gains stated in its units."""

from __future__ import annotations

import math
import statistics

import pytest

from effbert.methods.efficientbert.search.noise import in_noise_units, measure_noise, noise_seeds, verdict


def test_measure_noise_reuses_known_scores_and_scores_the_rest() -> None:
    scored: list[int] = []

    def score(seed: int) -> float:
        scored.append(seed)
        return {43: 0.70, 44: 0.72}[seed]

    noise = measure_noise(noise_seeds(42, 3), {42: 0.71}, score)
    assert scored == [43, 44] and noise["seeds"] == [42, 43, 44] and noise["fitness"] == [0.71, 0.70, 0.72]
    assert noise["mean"] == pytest.approx(0.71) and noise["std"] == pytest.approx(statistics.stdev([0.71, 0.7, 0.72]))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        measure_noise([42], {}, score)


def test_gains_in_units_of_the_noise() -> None:
    noise = {"std": 0.01}
    assert in_noise_units(0.03, noise) == pytest.approx(3.0)
    assert verdict(0.03, noise).endswith("beyond noise")
    assert "within noise" in verdict(0.015, noise) and "+1.5 SD" in verdict(0.015, noise)
    assert math.isnan(in_noise_units(0.03, None)) and math.isnan(in_noise_units(0.03, {"std": 0.0}))
    assert verdict(0.03, None).startswith("the proxy's noise was not measured")
