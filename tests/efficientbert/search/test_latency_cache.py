"""The search's latency cache carries a checksum: a cache cut short or changed since it was written is discarded with
one warning line and rebuilt, never read.

Latency is a test fake (a deterministic function of the architecture string), so a rebuilt cache equals the first.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from effbert.methods.efficientbert.search.frame import LatencyMeter, load_latency_cache
from effbert.methods.efficientbert.search.space import architecture_string
from effbert.params import LatencyParams
from tests.efficientbert.search.test_search_loop import fake_fitness, small_space


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The architectures measured (the supernet slice and the protocol replaced by a fake)."""
    calls: list[str] = []

    def measure(model: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(architecture_string(model))
        return SimpleNamespace(median_ms=10 * fake_fitness(calls[-1]))

    monkeypatch.setattr("effbert.methods.efficientbert.supernet.materialize", lambda supernet, arch: arch)
    monkeypatch.setattr("effbert.measure.latency.measure_latency", measure)
    return calls


def _latencies(cache: Path) -> list[float]:
    meter = LatencyMeter(None, LatencyParams(), cache)
    space = small_space()
    return [meter(space.sample(random.Random(seed))) for seed in range(4)]


@pytest.mark.parametrize("how", ["changed value", "truncated"])
def test_a_damaged_latency_cache_is_discarded_with_one_warning_and_rebuilt(
    tmp_path: Path, measured: list[str], caplog: pytest.LogCaptureFixture, how: str
) -> None:
    cache = tmp_path / "latency.json"
    first = _latencies(cache)
    assert len(measured) == 4 and len(load_latency_cache(cache)) == 4
    assert _latencies(cache) == first and len(measured) == 4  # an intact cache is read, nothing measured again
    text = cache.read_text(encoding="utf-8")
    if how == "changed value":  # still valid JSON: only the checksum tells
        record = json.loads(text)
        key = next(iter(record["latency_ms"]))
        record["latency_ms"][key] += 1.0
        cache.write_text(json.dumps(record, indent=0), encoding="utf-8")
    else:
        cache.write_text(text[: len(text) // 2], encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        again = _latencies(cache)
    assert again == first
    assert len(measured) == 8  # every latency measured again
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"{cache}: damaged latency cache (cut short or changed since written): discarded, measuring again"
    ]
    assert sorted(load_latency_cache(cache).values()) == sorted(first)  # rebuilt, intact
