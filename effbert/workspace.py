"""The workspace's own state around ``effbert run``: a broken ``dvc.lock`` is repaired before an engine reads it.

DVC rewrites ``dvc.lock`` in place after every stage; a run killed at that moment can leave it empty or cut in the
middle, and every later ``dvc`` call then fails with ``'./dvc.lock' validation failed``. :func:`repair_lockfile`
checks the file as DVC reads it (its YAML parser and its lock file schema) and, when it is unusable, restores the
last good copy kept in ``.effbert/`` (refreshed by :func:`keep_good_lockfile` whenever the file is valid), or, with
no good copy, moves it aside so that DVC rebuilds it from its run cache and the outputs present.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

LOCKFILE = "dvc.lock"
GOOD_LOCKFILE = ".effbert/dvc.lock.good"
"""The last copy of ``dvc.lock`` that DVC could read, relative to the workspace root."""


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
