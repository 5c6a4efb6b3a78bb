"""``effbert chaos``: run the pipeline while SIGKILL hits its stage processes at random moments, restart it until it
completes, then check that nothing was lost.

The driver starts ``effbert run`` (with the given params and options), watches the processes under it, and kills
stage processes: an ``effbert <stage command>`` process (DVC or Snakemake started it), or a worker process such a
stage started (the search's parallel candidate evaluations, a ``torchrun`` rank; Python's pool helpers excepted).
Which process and when come from a seeded random generator: the first process of a kind (its command, or
``<command> worker``) is always a target, so every kind the pipeline runs gets hit; later ones are targets with
probability ``kill_share``. The kill comes ``min_delay``..``max_delay`` seconds after the process was first seen
(the first of a kind within the first third of that range, so short stages are hit too; a process gone by then is
not counted). Several kills can be planned at once, so a pending one never shields a process that appears
meanwhile. A process of a kind already hit is spared while the kills left are needed for the expected kinds not hit
yet, and while its own workers are not hit yet (so a stage that keeps dying early still lets its workers start).
A killed stage fails its engine, ``effbert run`` exits non-zero and is started again, up to ``kills`` kills; then it
runs to the end undisturbed. Every process seen and every decision goes to the trace (``logs/chaos.log``).

After the last run, :func:`leftovers` lists what an interrupted run may leave behind (``.partial-*`` output folders,
resumable state under ``.effbert/checkpoints``), and :func:`compare_results` compares the workspace with a reference
workspace the same params ran in without faults: every evaluation's dev metrics, every search stage's hall of fame
(architectures and fitness; wall times excluded), every model weight file (bit for bit) and the summary's metrics.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ChaosOutcome",
    "Kill",
    "Victim",
    "compare_results",
    "leftovers",
    "run_with_kills",
    "stage_command_of",
    "summary",
]

WORKER_SUFFIX = " worker"
"""A stage's child process (not itself an ``effbert`` command) is the kind ``<command> worker``."""

HALL_OF_FAME_TIMING = frozenset({"latency_ms", "wall_seconds", "worker", "run_id", "elapsed_seconds"})
"""Hall-of-fame columns that measure this machine's time or name tracking runs: not compared."""


@dataclass(frozen=True)
class Victim:
    """A process the driver may kill: its pid, kind (``finetune-teacher``, ``search-stage1 worker``) and label."""

    pid: int
    kind: str
    label: str


@dataclass(frozen=True)
class Kill:
    """One SIGKILL the driver sent: what it hit, in which run of the pipeline, how long after it was first seen."""

    kind: str
    label: str
    attempt: int
    after_seconds: float


@dataclass
class ChaosOutcome:
    """What a chaos run did: the kills, the pipeline runs it took, the last run's exit code, its wall time."""

    kills: list[Kill] = field(default_factory=list)
    attempts: int = 0
    returncode: int | None = None
    seconds: float = 0.0

    def kinds(self) -> list[str]:
        """The stage kinds hit, in first-hit order."""
        return list(dict.fromkeys(kill.kind for kill in self.kills))


def stage_command_of(cmdline: Sequence[str], commands: Iterable[str]) -> tuple[str, str] | None:
    """The stage command (one of ``commands``) a process command line runs and a label for it (``finetune-teacher
    sst2``), or None when it runs none: ``.../effbert <command> ...`` or ``python -m effbert.cli <command> ...``."""
    known = set(commands)
    for index, token in enumerate(cmdline[:-1]):
        is_script = Path(token).name == "effbert"
        is_module = token == "effbert.cli" and index > 0 and cmdline[index - 1] == "-m"
        if (is_script or is_module) and cmdline[index + 1] in known:
            command = cmdline[index + 1]
            rest = list(cmdline[index + 2 :])
            names = [rest[i + 1] for i, arg in enumerate(rest[:-1]) if arg in ("--task", "--variant", "--model-name")]
            return command, " ".join([command, *names])
    return None


HELPER_PROCESSES = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
"""Python's helper processes beside a pool's workers (they hold no work of the stage): never a victim."""


def _victims(root_pid: int, commands: Iterable[str]) -> list[Victim]:
    """The stage processes under ``root_pid`` and the worker processes under those (Python's pool helpers
    excepted: `HELPER_PROCESSES`)."""
    import psutil

    try:
        descendants = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    stages: dict[int, tuple[str, str]] = {}
    cmdlines: dict[int, list[str]] = {}
    for process in descendants:
        try:
            cmdlines[process.pid] = process.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        found_command = stage_command_of(cmdlines[process.pid], commands)
        if found_command is not None:
            stages[process.pid] = found_command
    found = [Victim(pid, *command) for pid, command in stages.items()]
    for process in descendants:
        if process.pid in stages or process.pid not in cmdlines:
            continue
        if any(helper in token for token in cmdlines[process.pid] for helper in HELPER_PROCESSES):
            continue
        try:
            parent = process.ppid()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if parent in stages:
            command, label = stages[parent]
            found.append(Victim(process.pid, command + WORKER_SUFFIX, label + WORKER_SUFFIX))
    return found


@dataclass
class _Watch:
    """The driver's state inside one pipeline run: when each process was first seen (and decided on, at once) and
    the kills planned (several at once: a pending kill of one process never delays another's)."""

    seen: dict[int, float] = field(default_factory=dict)
    targets: dict[int, tuple[Victim, float]] = field(default_factory=dict)  # pid: the victim, the moment to kill it


@dataclass
class _Budget:
    """The kills still to send, the kinds the run will start, the chance and delays of a kill."""

    kills_left: int
    expected_kinds: set[str]
    share: float
    delays: tuple[float, float]

    def spares(self, kind: str, hit_kinds: set[str], planned: int) -> str | None:
        """Why a process of ``kind`` (a kind already hit) is spared, or None when it may be a target: the kills
        left (less the ``planned`` ones) are all needed for the expected kinds not hit yet, or its own workers are
        not hit yet (killing it again would take them down before their turn)."""
        unhit = self.expected_kinds - hit_kinds
        if self.kills_left - planned <= len(unhit):
            return "kills kept for the kinds not hit yet"
        if kind + WORKER_SUFFIX in unhit:
            return "its workers are not hit yet"
        return None


def _choose(
    watch: _Watch,
    victims: list[Victim],
    hit_kinds: set[str],
    budget: _Budget,
    rng: random.Random,
    trace: Callable[[str], None],
) -> None:
    """Decide on each process not decided yet: a kind not hit yet (and not already planned) is always a target, soon
    after it appears (the first third of the delays, so short stages are hit too); a kind already hit is one with
    chance ``share`` unless `_Budget.spares` it."""
    now = time.monotonic()
    low, high = budget.delays
    planned_kinds = {victim.kind for victim, _ in watch.targets.values()}
    for victim in victims:
        if victim.pid in watch.seen:
            continue
        watch.seen[victim.pid] = now
        if len(watch.targets) >= budget.kills_left:
            trace(f"seen {victim.label} (pid {victim.pid}): spared, every kill left is planned")
            continue
        if victim.kind not in hit_kinds and victim.kind not in planned_kinds:
            delay = rng.uniform(low, low + (high - low) / 3)
        else:
            reason = budget.spares(victim.kind, hit_kinds | planned_kinds, len(watch.targets))
            if reason is None and rng.random() >= budget.share:
                reason = "not drawn"
            if reason is not None:
                trace(f"seen {victim.label} (pid {victim.pid}): spared, {reason}")
                continue
            delay = rng.uniform(low, high)
        watch.targets[victim.pid] = (victim, now + delay)
        planned_kinds.add(victim.kind)
        trace(f"seen {victim.label} (pid {victim.pid}): SIGKILL planned in {delay:.1f} s")


def _kill_due(watch: _Watch, live: set[int], attempt: int, trace: Callable[[str], None]) -> Kill | None:
    """Send the SIGKILL whose moment has come (the earliest, one per call); forget planned victims already gone."""
    import os
    import signal

    for pid in [pid for pid in watch.targets if pid not in live]:
        victim, _ = watch.targets.pop(pid)
        trace(f"{victim.label} (pid {pid}) ended before its SIGKILL")
    due = [(moment, pid) for pid, (_, moment) in watch.targets.items() if moment <= time.monotonic()]
    if not due:
        return None
    _, pid = min(due)
    victim, _ = watch.targets.pop(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        trace(f"{victim.label} (pid {pid}) ended before its SIGKILL")
        return None
    return Kill(victim.kind, victim.label, attempt, round(time.monotonic() - watch.seen[pid], 2))


def run_with_kills(
    command: Sequence[str],
    cwd: Path,
    *,
    kills: int,
    seed: int,
    commands: Iterable[str],
    expected_kinds: Iterable[str] = (),
    delays: tuple[float, float] = (0.5, 6.0),
    kill_share: float = 0.5,
    max_attempts: int | None = None,
    on_kill: Callable[[Kill], None] | None = None,
    trace: Callable[[str], None] | None = None,
) -> ChaosOutcome:
    """Run ``command`` (an ``effbert run`` line) in ``cwd`` until it exits 0, killing up to ``kills`` stage
    processes on the way (see the module doc); a run that fails without a kill ends the chaos run (a real failure).

    Args:
        command: the pipeline command line.
        cwd: the workspace.
        kills: how many SIGKILLs to send in all.
        seed: seeds the choice of victims and moments.
        commands: the stage commands whose processes are targets (``effbert.dag``'s stages' commands).
        expected_kinds: the kinds the run will start (stage commands, ``<command> worker``): kills are kept for
            those not hit yet.
        delays: seconds after a process is first seen before it is killed, drawn uniformly.
        kill_share: the chance a process of an already hit kind is a target.
        max_attempts: pipeline runs allowed (default ``kills + 2``).
        on_kill: called after every kill (progress).
        trace: called with a line for every process seen and every decision (the chaos log).
    """
    rng = random.Random(seed)
    commands = list(commands)
    budget = _Budget(kills, set(expected_kinds), kill_share, delays)
    outcome = ChaosOutcome()
    started = time.monotonic()
    limit = max_attempts if max_attempts is not None else kills + 2
    while outcome.attempts < limit:
        outcome.attempts += 1
        process = subprocess.Popen(list(command), cwd=cwd, start_new_session=True)
        log = _stamped(trace, started, outcome.attempts)
        log(f"pipeline run {outcome.attempts} started (pid {process.pid})")
        watch, killed_now = _Watch(), 0
        while process.poll() is None:
            if budget.kills_left > 0:
                victims = _victims(process.pid, commands)
                _choose(watch, victims, set(outcome.kinds()), budget, rng, log)
                kill = _kill_due(watch, {v.pid for v in victims}, outcome.attempts, log)
                if kill is not None:
                    outcome.kills.append(kill)
                    budget.kills_left -= 1
                    killed_now += 1
                    log(f"SIGKILL {kill.label} {kill.after_seconds:.1f} s after it appeared")
                    if on_kill is not None:
                        on_kill(kill)
            time.sleep(0.1)
        outcome.returncode = process.returncode
        log(f"pipeline run {outcome.attempts} exited {process.returncode}")
        if process.returncode == 0 or killed_now == 0:
            break
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _stamped(trace: Callable[[str], None] | None, started: float, attempt: int) -> Callable[[str], None]:
    """``trace`` with each line prefixed by the seconds since the chaos run started and the pipeline run's number."""

    def log(line: str) -> None:
        if trace is not None:
            trace(f"{time.monotonic() - started:8.1f} s  run {attempt:2d}  {line}")

    return log


KEPT_STATE = "search_stage*/search/*"
"""The search stages' records stay under ``.effbert/checkpoints`` after success, by design (a larger budget
continues a finished search): not a leftover."""


def leftovers(root: Path) -> list[str]:
    """What an interrupted run may have left: ``.partial-*`` output folders under ``results/`` and resumable state
    under ``.effbert/checkpoints`` (removed once the stages that own them succeed; the searches' records, kept by
    design, excepted: `KEPT_STATE`)."""
    found = [str(p.relative_to(root)) for p in (root / "results").rglob(".*.partial-*")]
    checkpoints = root / ".effbert" / "checkpoints"
    if checkpoints.is_dir():
        kept = {f for d in checkpoints.glob(KEPT_STATE) for f in d.rglob("*")}
        found += [str(p.relative_to(root)) for p in checkpoints.rglob("*") if p.is_file() and p not in kept]
    return sorted(found)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hall_of_fame(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in HALL_OF_FAME_TIMING} for row in csv.DictReader(handle)]


def _metrics(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")).get("metrics")


def compare_results(results: Path, reference: Path) -> list[str]:
    """The differences between two ``results/`` folders the same params produced: evaluation dev metrics
    (``eval/*/*/metrics.json``), search halls of fame (``search_stage*/hall_of_fame.csv``, timing columns excluded),
    model weights (``models/**/*.safetensors``, bit for bit) and ``eval_summary/summary.json``. Empty when equal."""
    checks: list[tuple[str, Callable[[Path], Any]]] = [
        ("eval/*/*/metrics.json", _metrics),
        ("search_stage*/hall_of_fame.csv", _hall_of_fame),
        ("models/**/*.safetensors", _sha256),
        ("eval_summary/summary.json", lambda p: json.loads(p.read_text(encoding="utf-8"))),
    ]
    differences: list[str] = []
    for pattern, read in checks:
        mine = {p.relative_to(results) for p in results.glob(pattern)}
        theirs = {p.relative_to(reference) for p in reference.glob(pattern)}
        differences += [f"{path}: only in the reference" for path in sorted(theirs - mine)]
        differences += [f"{path}: not in the reference" for path in sorted(mine - theirs)]
        differences += [
            f"{path}: differs from the reference"
            for path in sorted(mine & theirs)
            if read(results / path) != read(reference / path)
        ]
    return differences


def summary(outcome: ChaosOutcome, problems: Sequence[str]) -> str:
    """The chaos run in a few lines: kills survived per stage kind, pipeline runs, the verdict and any problem."""
    by_kind: dict[str, int] = {}
    for kill in outcome.kills:
        by_kind[kill.kind] = by_kind.get(kill.kind, 0) + 1
    lines = [
        f"effbert chaos: {len(outcome.kills)} kills in {outcome.attempts} pipeline runs, {outcome.seconds:.0f} s; "
        f"last run exit code {outcome.returncode}",
        *(f"  {kind}: {count}" for kind, count in by_kind.items()),
    ]
    verdict = "nothing lost" if outcome.returncode == 0 and not problems else f"{len(problems)} problem(s)"
    return "\n".join([*lines, f"effbert chaos: {verdict}", *(f"  {problem}" for problem in problems)])
