"""The search loop every search stage runs: propose a batch, evaluate it, record each candidate at once, resume.

The sampler proposes a batch of ``workers`` candidates from the evaluated history alone; each evaluated candidate
is appended to the search state (an append-only ``records.jsonl``, fsynced) before the next one starts, so a killed
search restarted with the same inputs re-proposes the same batch and evaluates only what is missing, reaching the
same result as an uninterrupted run. A SIGTERM or SIGINT (`effbert.interrupt`) stops the loop once the candidate in
hand is recorded (or abandons it, when its training stops first): the next run resumes from the records. Each line
carries a checksum of its record (`effbert.integrity.sealed`): a line cut short by a kill or changed since is
dropped on restart, with one warning line, and its candidate evaluated again. Evaluation back-ends:
:func:`in_process` and :func:`process_pool` (a picklable top-level function of a job, e.g.
`effbert.methods.efficientbert.search.proxy.evaluate_candidate`). The state file is the only file this module
touches.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert import interrupt
from effbert.integrity import replace_text, sealed, unsealed
from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.search.samplers import Evaluated, Proposal, Sampler
from effbert.methods.efficientbert.search.space import SearchSpace, architecture_string, parse_architecture_string
from effbert.params import StageBudget

log = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
"""The search state: one JSON record per evaluated candidate."""

Evaluate = Callable[[list[tuple[int, Proposal]]], Iterator[tuple[int, dict[str, Any]]]]
"""Evaluates (index, proposal) pairs; yields (index, result) as each finishes (any order)."""


def _parse(line: str) -> dict[str, Any] | None:
    """The record of one state line; None when it does not parse or no longer matches its checksum."""
    try:
        record = unsealed(json.loads(line))
    except ValueError:
        return None
    return record if record is not None and isinstance(record.get("index"), int) else None


def read_records(path: Path) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """The intact records of a search state file by index, and the numbers (from 1) of its damaged lines: cut short
    by a kill, or changed since they were written (they fail to parse or to match their checksum)."""
    records: dict[int, dict[str, Any]] = {}
    damaged: list[int] = []
    if not path.is_file():
        return records, damaged
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        record = _parse(line)
        if record is None:
            damaged.append(number)
        else:
            records[record["index"]] = record
    return records, damaged


def load_records(path: Path) -> dict[int, dict[str, Any]]:
    """The intact records of a search state file, by index (damaged lines are skipped; the file is not changed)."""
    return read_records(path)[0]


def recover_records(path: Path) -> dict[int, dict[str, Any]]:
    """The intact records of a search state file before a search continues it; damaged lines are dropped from the
    file (rewritten without them, with one warning line naming it and the lines), so their candidates are evaluated
    again and the next record starts on a line of its own."""
    records, damaged = read_records(path)
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if damaged or (text and not text.endswith("\n")):
        kept = [line for line in text.splitlines() if _parse(line) is not None]
        replace_text(path, "".join(f"{line}\n" for line in kept))
    if damaged:
        log.warning(
            "%s: dropped %d damaged record line%s (line %s: cut short or changed since written); those candidates "
            "are evaluated again",
            path,
            len(damaged),
            "s" if len(damaged) > 1 else "",
            ", ".join(map(str, damaged)),
        )
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record with its checksum (`effbert.integrity.sealed`) and flush it to disk before the next
    candidate starts."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(sealed(record), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def evaluated(records: dict[int, dict[str, Any]], hidden: int, below: int) -> list[Evaluated]:
    """The history the sampler sees before candidate ``below``: records 0..below-1 in index order."""
    return [
        Evaluated(
            parse_architecture_string(records[i]["architecture"], hidden),
            records[i]["fingerprint"],
            records[i]["fitness"],
        )
        for i in range(below)
    ]


@dataclass(frozen=True)
class LoopSettings:
    """How one search stage runs: its name (for seeds), the budget, the batch width and the seed."""

    stage: str
    budget: StageBudget
    workers: int
    seed: int


def _propose(
    space: SearchSpace, sampler: Sampler, settings: LoopSettings, records: dict[int, dict[str, Any]], missing: int
) -> tuple[int, list[Proposal], int]:
    """The batch holding candidate ``missing``: (its first index, its proposals, how many it should hold).

    Batch ``b`` holds candidates ``b*w .. b*w+w-1`` (``w`` = workers); its proposals are a function of the records
    before it and of ``(seed, stage, b)`` only.
    """
    batch = missing // settings.workers
    first = batch * settings.workers
    history = evaluated(records, space.hidden, first)
    count = min(settings.workers, settings.budget.candidates - first)
    rng = random.Random(f"{settings.seed}/{settings.stage}/batch{batch}")
    return first, sampler.propose(history, count, rng, {h.fingerprint for h in history}), count


def search_loop(
    space: SearchSpace,
    sampler: Sampler,
    settings: LoopSettings,
    state_file: Path,
    evaluate: Evaluate,
    describe: Callable[[Architecture], dict[str, Any]],
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Propose, evaluate and record candidates until the budget is spent; resumes from ``state_file``.

    Args:
        space: the stage's search space.
        sampler: the proposal strategy.
        settings: stage name, budget, workers, seed.
        state_file: the append-only record file (created when missing).
        evaluate: runs candidates (in this process or a pool).
        describe: extra columns of a proposal computed before evaluation (params, latency).
        on_record: called with each finished record before it is appended (e.g. logs an MLflow child run and sets
            ``run_id``).

    Returns:
        every record, in index order.

    Raises:
        StageInterrupted: a signal arrived; every finished candidate is in ``state_file``.
    """
    from tqdm.auto import tqdm

    records = recover_records(state_file)
    budget = settings.budget
    previous = max((r.get("elapsed_seconds", 0.0) for r in records.values()), default=0.0)
    started = time.perf_counter()
    if records:
        log.info("%s: resuming with %d evaluated candidates from %s", settings.stage, len(records), state_file)
    progress = tqdm(total=budget.candidates, initial=min(len(records), budget.candidates), desc=settings.stage)
    with interrupt.deferred():  # a signal stops the loop once the candidate in hand is recorded
        while True:
            missing = next((i for i in range(budget.candidates) if i not in records), None)
            if missing is None:
                break
            elapsed = previous + time.perf_counter() - started
            if budget.max_minutes is not None and elapsed >= budget.max_minutes * 60:
                log.info(
                    "%s: time budget of %.1f min spent (%d candidates)", settings.stage, budget.max_minutes, missing
                )
                break
            first, proposals, count = _propose(space, sampler, settings, records, missing)
            if not proposals:
                log.warning("%s: the sampler found no new candidate; the space looks exhausted", settings.stage)
                break
            todo = [(first + k, p) for k, p in enumerate(proposals) if first + k not in records]
            extra = {index: describe(p.arch) for index, p in todo}
            for index, result in evaluate(todo):
                proposal = proposals[index - first]
                record = {
                    "index": index,
                    "architecture": architecture_string(proposal.arch),
                    "fingerprint": proposal.fingerprint,
                    "origin": proposal.origin,
                    **extra[index],
                    **result,
                    "run_id": "",
                    "elapsed_seconds": previous + time.perf_counter() - started,
                }
                if on_record is not None:
                    on_record(record)
                append_record(state_file, record)
                records[index] = record
                progress.update(1)
                _log_record(settings.stage, record)
                interrupt.check(f"{settings.stage} stopped with {len(records)} candidates recorded in {state_file}")
            if len(proposals) < count:
                log.warning("%s: the sampler proposed %d of %d; stopping", settings.stage, len(proposals), count)
                break
    progress.close()
    return [records[i] for i in sorted(records)]


def _log_record(stage: str, record: dict[str, Any]) -> None:
    log.info(
        "%s candidate %d (%s): fitness %.4f [%s] %.1f s",
        stage,
        record["index"],
        record["origin"],
        record["fitness"],
        record["status"],
        record.get("wall_seconds", math.nan),
    )


def in_process(evaluate_one: Callable[[int, Proposal], dict[str, Any]]) -> Evaluate:
    """Evaluate candidates one after the other in this process."""

    def run(todo: list[tuple[int, Proposal]]) -> Iterator[tuple[int, dict[str, Any]]]:
        for index, proposal in todo:
            yield index, evaluate_one(index, proposal)

    return run


def scored(score: Callable[[Architecture], float]) -> Evaluate:
    """Evaluate candidates in this process by a scoring function with no training (stage 3); a failure is recorded
    with status ``error`` and fitness 0."""
    worker = f"{os.uname().nodename}:{os.getpid()}"

    def evaluate_one(index: int, proposal: Proposal) -> dict[str, Any]:
        started = time.perf_counter()
        record: dict[str, Any] = {"status": "ok", "error": "", "fitness": 0.0}
        try:
            record["fitness"] = score(proposal.arch)
        except (RuntimeError, ValueError) as err:
            record.update(status="error", error=f"{type(err).__name__}: {str(err).splitlines()[0][:500]}")
        record.update(wall_seconds=time.perf_counter() - started, worker=worker)
        return record

    return in_process(evaluate_one)


def process_pool(pool: ProcessPoolExecutor, make_job: Callable[[int, Proposal], Any], function: Any) -> Evaluate:
    """Evaluate a batch in parallel worker processes (``function(job)`` must be a picklable top-level function)."""

    def run(todo: list[tuple[int, Proposal]]) -> Iterator[tuple[int, dict[str, Any]]]:
        futures: dict[Future[Any], int] = {pool.submit(function, make_job(i, p)): i for i, p in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: futures[f]):
                yield futures[future], future.result()

    return run


def worker_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes, each with ``threads`` torch CPU threads (the caller shuts it down)."""
    import multiprocessing

    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(threads,),
    )


def init_worker(threads: int) -> None:
    """Set a pool worker's torch CPU threads."""
    import torch

    torch.set_num_threads(threads)
