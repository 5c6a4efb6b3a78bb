"""The search loop: budgets, batches of workers, and resume after a crash or a kill -9 with the same hall of fame.

Candidates are scored by ``fake_fitness`` (a deterministic function of the architecture string, a test fake), so
these tests exercise the loop and the state file, not training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from effbert import interrupt
from effbert.errors import StageInterrupted
from effbert.methods.efficientbert.search.loop import LoopSettings, in_process, load_records, search_loop
from effbert.methods.efficientbert.search.samplers import Proposal, make_sampler
from effbert.methods.efficientbert.search.space import (
    ParamWindow,
    SearchSpace,
    frame_params,
    scaled_param_window,
    stage1_space,
)
from effbert.params import StageBudget

HIDDEN, LAYERS = 32, 2
TIMING = ("elapsed_seconds", "wall_seconds", "worker", "run_id")


def fake_fitness(architecture: str) -> float:
    """A deterministic stand-in for proxy training: a hash of the architecture string mapped to [0, 1)."""
    return int(hashlib.sha256(architecture.encode()).hexdigest()[:8], 16) / 2**32


def small_space() -> SearchSpace:
    fixed, max_mlp = frame_params(
        hidden=HIDDEN,
        num_layers=LAYERS,
        vocab_size=100,
        embedding_size=8,
        max_position_embeddings=64,
        type_vocab_size=2,
        fit_dense_size=48,
        max_units=4,
    )
    window: ParamWindow = scaled_param_window(fixed, max_mlp)
    return stage1_space(HIDDEN, LAYERS, fixed, window)


def fake_evaluate(calls: list[int], crash_at: int | None = None, signal_at: int | None = None) -> Any:
    from effbert.methods.efficientbert.search.space import architecture_string

    def evaluate_one(index: int, proposal: Proposal) -> dict[str, Any]:
        if crash_at is not None and index == crash_at:
            raise KeyboardInterrupt(f"injected crash at candidate {index}")
        if index == signal_at:  # SIGTERM while this candidate is evaluated (its handler runs at once)
            os.kill(os.getpid(), signal.SIGTERM)
        calls.append(index)
        return {"fitness": fake_fitness(architecture_string(proposal.arch)), "status": "ok", "error": ""}

    return in_process(evaluate_one)


def describe(space: SearchSpace) -> Any:
    return lambda arch: {"params": space.params(arch), "latency_ms": 0.0}


def run(
    state: Path,
    strategy: str,
    candidates: int,
    workers: int,
    calls: list[int],
    crash_at: int | None = None,
    signal_at: int | None = None,
) -> Any:
    space = small_space()
    sampler = make_sampler(
        strategy, space, n_init=3, refit_every=2, population_size=3, tournament_size=2, seed=0, tree_height=1
    )
    settings = LoopSettings("search_stage1", StageBudget(candidates=candidates), workers, seed=7)
    return search_loop(space, sampler, settings, state, fake_evaluate(calls, crash_at, signal_at), describe(space))


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.mark.parametrize(("strategy", "workers"), [("lanas", 1), ("evolution", 2), ("random", 3)])
def test_resume_after_crash_gives_the_same_hall_of_fame(tmp_path: Path, strategy: str, workers: int) -> None:
    straight_calls: list[int] = []
    straight = run(tmp_path / "straight.jsonl", strategy, 8, workers, straight_calls)
    assert [r["index"] for r in straight] == list(range(8))
    assert straight[0]["origin"] == "seed"
    assert len({r["fingerprint"] for r in straight}) == 8  # no duplicates

    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed.jsonl", strategy, 8, workers, calls, crash_at=5)
    assert calls == list(range(5))
    assert sorted(load_records(tmp_path / "resumed.jsonl")) == list(range(5))
    resumed = run(tmp_path / "resumed.jsonl", strategy, 8, workers, calls)
    assert calls == list(range(8))  # finished candidates are never evaluated again
    assert comparable(resumed) == comparable(straight)


def test_a_signal_stops_the_loop_once_the_candidate_in_hand_is_recorded(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight.jsonl", "lanas", 8, 1, [])
    calls: list[int] = []
    with interrupt.handled(), pytest.raises(StageInterrupted) as stopped:
        run(tmp_path / "stopped.jsonl", "lanas", 8, 1, calls, signal_at=4)
    assert stopped.value.exit_code == 143 and "5 candidates recorded" in str(stopped.value)
    assert calls == list(range(5))  # candidate 4 was finished and recorded, nothing after it started
    assert sorted(load_records(tmp_path / "stopped.jsonl")) == list(range(5))
    with interrupt.handled():
        resumed = run(tmp_path / "stopped.jsonl", "lanas", 8, 1, calls)
    assert calls == list(range(8))  # the next run evaluates only the rest
    assert comparable(resumed) == comparable(straight)


def test_a_larger_budget_continues_where_the_smaller_one_stopped(tmp_path: Path) -> None:
    calls: list[int] = []
    run(tmp_path / "state.jsonl", "lanas", 4, 1, calls)
    longer = run(tmp_path / "state.jsonl", "lanas", 7, 1, calls)
    assert calls == list(range(7))
    fresh = run(tmp_path / "fresh.jsonl", "lanas", 7, 1, [])
    assert comparable(longer) == comparable(fresh)


def test_a_torn_last_line_is_evaluated_again(tmp_path: Path) -> None:
    state = tmp_path / "state.jsonl"
    run(state, "random", 3, 1, [])
    state.write_text(state.read_text() + '{"index": 3, "archi', encoding="utf-8")  # killed mid-write
    assert sorted(load_records(state)) == [0, 1, 2]


def _damage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("effbert")]


def test_a_torn_last_line_is_dropped_with_one_warning_and_its_candidate_evaluated_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    straight = run(tmp_path / "straight.jsonl", "lanas", 8, 1, [])
    state, calls = tmp_path / "state.jsonl", []
    with pytest.raises(KeyboardInterrupt):
        run(state, "lanas", 8, 1, calls, crash_at=6)
    lines = state.read_text(encoding="utf-8").splitlines()
    state.write_text("\n".join(lines[:5]) + "\n" + lines[5][:40], encoding="utf-8")  # killed while writing line 6
    calls.clear()
    with caplog.at_level(logging.WARNING):
        resumed = run(state, "lanas", 8, 1, calls)
    assert comparable(resumed) == comparable(straight)
    assert calls == [5, 6, 7]
    # the torn line is gone from the file: the record appended after it did not join it
    assert comparable(sorted(load_records(state).values(), key=lambda r: r["index"])) == comparable(straight)
    assert len(state.read_text(encoding="utf-8").splitlines()) == 8
    assert _damage_warnings(caplog) == [
        f"{state}: dropped 1 damaged record line (line 6: cut short or changed since written); those candidates are "
        "evaluated again"
    ]


@pytest.mark.parametrize("how", ["changed value", "flipped bit"])
def test_a_changed_middle_line_is_dropped_with_one_warning_and_its_candidate_evaluated_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    straight = run(tmp_path / "straight.jsonl", "lanas", 8, 1, [])
    state = tmp_path / "state.jsonl"
    shutil.copyfile(tmp_path / "straight.jsonl", state)
    lines = state.read_bytes().split(b"\n")
    if how == "changed value":  # still valid JSON: only the checksum tells
        record = json.loads(lines[2])
        record["fitness"] = round(record["fitness"] + 0.25, 6)
        lines[2] = json.dumps(record, sort_keys=True).encode()
    else:
        line = bytearray(lines[2])
        line[len(line) // 2] ^= 0x01
        lines[2] = bytes(line)
    state.write_bytes(b"\n".join(lines))
    calls: list[int] = []
    with caplog.at_level(logging.WARNING):
        resumed = run(state, "lanas", 8, 1, calls)
    assert comparable(resumed) == comparable(straight)
    assert calls == [2]
    assert _damage_warnings(caplog) == [
        f"{state}: dropped 1 damaged record line (line 3: cut short or changed since written); those candidates are "
        "evaluated again"
    ]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from search.test_search_loop import fake_fitness, run
    import effbert.methods.efficientbert.search.space as space_mod

    class Slow(list):
        def append(self, item):
            super().append(item)
            with open({log!r}, "a") as fh:
                fh.write(f"{{item}}\\n")
            time.sleep(0.3)

    run(__import__("pathlib").Path({state!r}), "lanas", 8, 1, Slow())
    """
)


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    tests = str(Path(__file__).resolve().parents[1])
    state, log = tmp_path / "state.jsonl", tmp_path / "calls.log"
    yield state, log, KILL_SCRIPT.format(tests=tests, state=str(state), log=str(log))


def test_kill_9_then_the_same_command_finishes_without_repeating_work(
    tmp_path: Path, killable: tuple[Path, Path, str]
) -> None:
    state, log, script = killable
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(load_records(state)) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 3 <= len(load_records(state)) < 8
    finished_before = set(load_records(state))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    evaluated = [int(line) for line in log.read_text().split()]
    # a candidate recorded before the kill is never evaluated again (the one in flight may be)
    assert sorted(set(evaluated)) == list(range(8))
    assert all(evaluated.count(i) == 1 for i in finished_before)
    straight = run(tmp_path / "straight.jsonl", "lanas", 8, 1, [])
    assert comparable(sorted(load_records(state).values(), key=lambda r: r["index"])) == comparable(straight)
