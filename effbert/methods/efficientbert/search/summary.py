"""A finished search stage in tables and figures: the hall of fame, the winner, its comparison with plain GELU MLPs
of the same sizes, the metrics and the search figure (nothing is written here)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from effbert.errors import EffbertError
from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.search.frame import SearchFrame, vanilla_at
from effbert.methods.efficientbert.search.space import SearchSpace, parse_architecture_string
from effbert.params import SearchParams


@dataclass(frozen=True)
class StageSummary:
    """What a search stage reports.

    Attributes:
        table: the hall of fame (best first).
        best_so_far: best fitness against candidates evaluated (``plots/best_so_far.csv``).
        winner: the best architecture (the next stage's input).
        winner_info: ``winner.json``: the winning candidate, its MLflow run and the inherited checkpoint.
        metrics: ``metrics.json``.
        figure: the search figure (matplotlib).
    """

    table: Any
    best_so_far: Any
    winner: Architecture
    winner_info: dict[str, Any]
    metrics: dict[str, Any]
    figure: Any


def _vanilla_fitness(
    number: int,
    space: SearchSpace,
    records: Sequence[dict[str, Any]],
    winner: Architecture,
    reference_of: Callable[[Architecture], float] | None,
) -> tuple[Architecture, float]:
    """The plain GELU reference of a stage (stage 1: the space's; later: the winner's sizes) and its fitness: the
    evaluated candidate's when it was one, else scored by ``reference_of``, else NaN."""
    vanilla = space.vanilla_reference() if number == 1 else vanilla_at(winner)
    fingerprint = space.fingerprint(vanilla)
    record = next((r for r in records if r["fingerprint"] == fingerprint), None)
    if record is not None:
        return vanilla, float(record["fitness"])
    return vanilla, reference_of(vanilla) if reference_of is not None else math.nan


def summarize(
    number: int,
    records: Sequence[dict[str, Any]],
    space: SearchSpace,
    frame: SearchFrame,
    search: SearchParams,
    *,
    wall: float,
    checkpoint_label: str,
    reference_of: Callable[[Architecture], float] | None = None,
    extra: dict[str, float] | None = None,
    noise: dict[str, Any] | None = None,
) -> StageSummary:
    """Summarise search stage ``number`` from its evaluated ``records`` (``noise``: the proxy's noise measured in
    stage 1, `effbert.methods.efficientbert.search.noise`; the gain over vanilla is also stated in its units).

    Raises:
        EffbertError: no candidate could be evaluated.
    """
    from effbert.methods.efficientbert.search.hall_of_fame import best_so_far, hall_of_fame
    from effbert.methods.efficientbert.search.noise import in_noise_units, verdict
    from effbert.methods.efficientbert.search.plots import search_figure

    stage_name = f"search_stage{number}"
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        raise EffbertError(f"{stage_name}: no candidate could be evaluated (see the hall of fame in the log)")
    table = hall_of_fame(records)
    best = table.iloc[0].to_dict()
    winner = parse_architecture_string(str(best["architecture"]), frame.hidden, name=f"{stage_name}-winner")
    vanilla, vanilla_fitness = _vanilla_fitness(number, space, records, winner, reference_of)
    spent = max((float(r.get("elapsed_seconds", 0.0)) for r in records), default=0.0)
    metrics = {
        "stage": number,
        "strategy": search.strategy,
        "candidates": len(records),
        "failed": len(records) - len(ok),
        "best_fitness": float(best["fitness"]),
        "vanilla_fitness": vanilla_fitness,
        "gain_over_vanilla": float(best["fitness"]) - vanilla_fitness,
        "proxy_noise": noise,
        "gain_in_noise_sd": in_noise_units(float(best["fitness"]) - vanilla_fitness, noise),
        "gain_verdict": verdict(float(best["fitness"]) - vanilla_fitness, noise),
        "winner_params": int(best["params"]),
        "winner_latency_ms": float(best["latency_ms"]),
        "vanilla_params": space.params(vanilla),
        "param_window": [frame.window.low, frame.window.high],
        "search_seconds": spent,
        "search_seconds_this_run": wall,
        "candidates_per_minute": len(records) / (spent / 60) if spent > 0 else 0.0,
        "max_latency_ms": search.max_latency_ms,
        "latency_protocol": {**search.latency.model_dump(), "statistic": "median", "machine": frame.latency.machine},
        **(extra or {}),
    }
    winner_info: dict[str, Any] = {
        "stage": stage_name,
        "index": int(best["index"]),
        "fitness": float(best["fitness"]),
        "architecture": str(best["architecture"]),
        "fingerprint": str(best["fingerprint"]),
        "candidate_run_id": str(best["run_id"]),
        "inherited_checkpoint": checkpoint_label,
    }
    figure = search_figure(table, f"{stage_name} ({search.strategy})", reference_fitness=vanilla_fitness)
    return StageSummary(table, best_so_far(table), winner, winner_info, metrics, figure)
