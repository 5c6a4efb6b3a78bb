"""The workspace's own state around ``effbert run``: one run at a time, and a broken ``dvc.lock`` repaired first.

:func:`run_lock` holds an OS lock (``flock``) on ``.effbert/run.lock`` for the whole run; the file records the
holder (host, pid, start time) so that a second run is refused with one line naming it. The kernel releases the
lock when its process dies, so a file left by a killed run no longer locks anything and is taken over.

DVC rewrites ``dvc.lock`` in place after every stage; a run killed at that moment can leave it empty or cut in the
middle, and every later ``dvc`` call then fails with ``'./dvc.lock' validation failed``. :func:`repair_lockfile`
checks the file as DVC reads it (its YAML parser and its lock file schema) and, when it is unusable, restores the
last good copy kept in ``.effbert/`` (refreshed by :func:`keep_good_lockfile` whenever the file is valid), or, with
no good copy, moves it aside so that DVC rebuilds it from its run cache and the outputs present.

:func:`recommit_outputs` records in ``dvc.lock`` outputs whose ``lineage.json`` alone was rewritten (a run recorded
into the tracking store after the fact), so that DVC does not run their stages again.
:func:`remove_damaged_outputs` checks the sealed stage outputs (the prepared data and corpus: ``digests.json``)
and removes one whose files changed since its stage wrote them, so that the engine runs that stage again.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from effbert.errors import WorkspaceBusyError
from effbert.integrity import DIGESTS, damage, read_digests

LOCKFILE = "dvc.lock"
GOOD_LOCKFILE = ".effbert/dvc.lock.good"
"""The last copy of ``dvc.lock`` that DVC could read, relative to the workspace root."""
RUN_LOCK = ".effbert/run.lock"
"""The file ``effbert run`` locks (``flock``) while it runs; it records the holder as JSON."""


def lockfile_problem(path: Path) -> str | None:
    """Why DVC cannot read the lock file ``path`` (empty, not YAML, not its schema), or None when it can."""
    from dvc.exceptions import DvcException
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils import strictyaml

    if not path.read_bytes().strip():
        return "empty"
    try:
        strictyaml.load(str(path), COMPILED_LOCKFILE_SCHEMA)
    except strictyaml.YAMLValidationError:
        return "not a DVC lock file (its schema check failed)"
    except DvcException:  # YAML syntax, or not UTF-8 text
        return "unreadable (not valid YAML)"
    return None


def _copy_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)


def keep_good_lockfile(root: Path) -> None:
    """Copy ``root/dvc.lock`` to the last-good copy when DVC can read it."""
    lock = root / LOCKFILE
    if lock.is_file() and lockfile_problem(lock) is None:
        _copy_atomic(lock, root / GOOD_LOCKFILE)


def repair_lockfile(root: Path) -> str | None:
    """Make ``root/dvc.lock`` readable by DVC before an engine runs; returns the warning line when it was not.

    A valid lock file refreshes the last-good copy; a missing one is left missing (DVC starts a new one). An
    unusable one is replaced by the last-good copy, or, without one, renamed to ``dvc.lock.corrupt-<time>`` beside
    it: DVC then restores from its run cache the stages whose deps, params and outputs are unchanged.
    """
    lock = root / LOCKFILE
    if not lock.is_file():
        return None
    problem = lockfile_problem(lock)
    if problem is None:
        _copy_atomic(lock, root / GOOD_LOCKFILE)
        return None
    good = root / GOOD_LOCKFILE
    if good.is_file() and lockfile_problem(good) is None:
        _copy_atomic(good, lock)
        return f"{lock} was {problem}: restored the last good copy ({GOOD_LOCKFILE})"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = lock.with_name(f"{LOCKFILE}.corrupt-{stamp}")
    for number in range(1, 1000):  # never overwrite an earlier broken copy
        if not aside.exists():
            break
        aside = lock.with_name(f"{LOCKFILE}.corrupt-{stamp}-{number}")
    lock.replace(aside)
    return (
        f"{lock} was {problem} and no good copy was kept: moved it to {aside.name}; DVC rebuilds it from its run "
        "cache and the outputs present"
    )


def recommit_outputs(root: Path, env: dict[str, str], stages: list[str], dvc: str = "dvc") -> list[str]:
    """Record in ``dvc.lock`` the outputs of those ``stages`` (DVC addresses) whose outputs alone changed since DVC
    ran them (their ``lineage.json``, marked reconciled by `effbert.tracking.reconcile_pending`), so that DVC does
    not run them again; a stage whose dependencies or params changed, or that DVC never ran, is left alone.

    Returns:
        the stages committed.
    """
    if not stages or not (root / LOCKFILE).is_file():
        return []
    status = subprocess.run(
        [dvc, "status", "--json", *stages], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    try:
        changes = json.loads(status.stdout or "{}") if status.returncode == 0 else {}
    except ValueError:
        changes = {}
    committed = [
        stage
        for stage in stages
        if changes.get(stage)
        and all(isinstance(c, dict) and set(c) == {"changed outs"} for c in changes[stage])
        and all(state == "modified" for c in changes[stage] for state in c["changed outs"].values())
    ]
    if committed and subprocess.run([dvc, "commit", "-f", "-q", *committed], cwd=root, env=env).returncode != 0:
        return []
    return committed


def sealed_outputs(root: Path) -> list[Path]:
    """The sealed stage outputs under ``root/results`` (folders with a ``digests.json`` naming their stage), hidden
    folders (a stage's temporary output) left out."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root / "results"):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if DIGESTS in files and (read_digests(Path(folder))[0] or {}).get("stage"):
            found.append(Path(folder))
            dirs[:] = []
    return found


def remove_damaged_outputs(root: Path) -> list[str]:
    """Remove every sealed stage output whose files no longer match their digests, before an engine runs, so that it
    recomputes them; returns one warning line per output removed (the damaged file, the output, its stage).

    DVC re-runs a stage whose output it sees modified, but it trusts an output whose size and mtime are unchanged (a
    flipped bit on disk, a restore that keeps times), and Snakemake never looks inside an output; a missing output
    makes either engine run the stage again.
    """
    lines = []
    for output in sealed_outputs(root):
        problem = damage(output)
        if problem is not None:
            stage = (read_digests(output)[0] or {}).get("stage")
            shutil.rmtree(output)
            shown = problem.path.relative_to(root)
            lines.append(f"{shown}: {problem.reason}: removed {output.relative_to(root)} so that {stage} runs again")
    return lines


def _holder(fd: int) -> str:
    """The holder recorded in the run lock file: ``host H, pid P, started T``."""
    text = os.pread(fd, 65536, 0).decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
        return f"host {record['host']}, pid {record['pid']}, started {record['started']}"
    except (ValueError, KeyError, TypeError):
        return "its host, pid and start time not recorded yet" if not text.strip() else f"unreadable record {text!r}"


@contextmanager
def run_lock(root: Path) -> Iterator[str | None]:
    """Hold the run lock of the workspace ``root`` for the duration of the block.

    Yields the info line to show when the file was left by a run that died (its record names it), else None.

    Raises:
        WorkspaceBusyError: another live process holds the lock; the message names its host, pid and start time.
    """
    path = root / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the engine (O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceBusyError(
                f"{root}: another effbert run is using this workspace ({_holder(fd)}); "
                f"wait for it to end or stop it (lock: {RUN_LOCK})"
            ) from None
        stale = _holder(fd) if os.fstat(fd).st_size else None  # a record left by a run that died
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield f"taking over {RUN_LOCK}, left by a run that is no longer running ({stale})" if stale else None
        finally:
            os.ftruncate(fd, 0)  # released cleanly: nothing left to take over
    finally:
        os.close(fd)  # releases the lock
