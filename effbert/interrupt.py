"""Stopping cleanly on SIGTERM (what SLURM sends on preemption and at the time limit) and SIGINT (Ctrl-C).

A stage handles both signals for its duration (:func:`handled`, entered by `effbert.runtime.stage_context`). The
handler does no work. Outside a :func:`deferred` block it raises `effbert.errors.StageInterrupted` at once, like
``KeyboardInterrupt``: nothing half-done is kept (the stage's temporary outputs are removed, its MLflow run is marked
KILLED, the CLI exits 143 or 130). Inside one it only records the signal, and the code stops at its next safe point
by polling :func:`requested` or :func:`check`: the Trainer after each optimizer step (`effbert.training.train`
saves a checkpoint there, and the next run resumes from it), the search loop after each recorded candidate (the next
run resumes from ``records.jsonl``). Once a signal has been received, more signals are only recorded: SLURM may
signal every process of a job step while ``effbert run`` forwards its own, and the first stop must be allowed to
finish; SIGKILL still stops a process at once.

``effbert run`` (`effbert.pipeline`) does not stop its engine's processes itself: :func:`run_forwarding` runs the
engine in a process group of its own, forwards a signal to the whole group (the engine and the stage it runs, which
stops as above), waits until every process of the group has exited, and raises `StageInterrupted`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

from effbert.errors import StageInterrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals a stage stops on."""

GROUP_EXIT_SECONDS = 120.0
"""How long ``effbert run`` waits for its engine's processes to stop after forwarding a signal (a training stage
saves a checkpoint first) before it kills what is left."""


class _State:
    """The signal seen by this process (None: none yet), how deep the :func:`handled` and :func:`deferred` blocks
    are nested, and the handlers :func:`handled` replaced."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.depth = 0
        self.deferred = 0
        self.previous: dict[int, Any] = {}


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.signum is not None:  # already stopping: let that finish
        return
    _state.signum = signum
    if not _state.deferred:
        raise StageInterrupted(signum)


def requested() -> int | None:
    """The signal received since :func:`handled` began (None when none was)."""
    return _state.signum


def check(detail: str = "") -> None:
    """Raise `StageInterrupted` when a signal was received (the safe point of a :func:`deferred` block)."""
    if _state.signum is not None:
        raise StageInterrupted(_state.signum, detail)


@contextmanager
def handled() -> Iterator[None]:
    """Handle SIGTERM and SIGINT in the block (nested blocks share the outer one; in a thread other than the main
    one, where Python cannot install handlers, nothing changes). The previous handlers are restored after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.depth == 0:
        _state.signum, _state.deferred = None, 0
        _state.previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0:
            for signum, previous in _state.previous.items():
                signal.signal(signum, previous)
            _state.signum, _state.deferred = None, 0


@contextmanager
def deferred() -> Iterator[None]:
    """In the block a signal is only recorded; the code polls :func:`requested` or :func:`check` at safe points."""
    _state.deferred += 1
    try:
        yield
    finally:
        _state.deferred -= 1


def hold() -> None:
    """From here to the end of the :func:`handled` block, a signal is only recorded (a stage committing its
    finished outputs completes)."""
    _state.deferred += 1


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, exited but not yet reaped, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def run_forwarding(cmd: Sequence[str], *, cwd: Path, env: dict[str, str]) -> int:
    """Run ``cmd`` in a new process group and return its exit code; a SIGTERM or SIGINT this process receives
    meanwhile is forwarded to the whole group (a second one kills the group).

    Raises:
        StageInterrupted: a signal was received: raised once every process of the group has exited (after
            :data:`GROUP_EXIT_SECONDS` the rest is killed).
    """
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        _signal_group(proc.pid, signum if len(received) == 1 else signal.SIGKILL)

    main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, forward) for signum in SIGNALS} if main else {}
    try:
        code = proc.wait()
        deadline = time.monotonic() + GROUP_EXIT_SECONDS
        while received and _group_alive(proc.pid):
            if time.monotonic() > deadline:
                _signal_group(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise StageInterrupted(received[0], f"{Path(cmd[0]).name} and its stages stopped (exit code {code})")
    return code
