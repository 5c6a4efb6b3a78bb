"""Errors that carry a one-line, user-facing message.

The CLI turns every :class:`EffbertError` into one line on stderr and exit code 2, so a bad input file,
a bad parameter or a missing model never ends in a traceback.
"""

from __future__ import annotations

import signal


class EffbertError(Exception):
    """Base class of the errors a user can fix (bad params, bad data, missing files)."""

    exit_code = 2


class ParamsError(EffbertError):
    """A parameter file or override is invalid; the message names the file and the key."""


class DataFormatError(EffbertError):
    """An input data file is malformed; the message starts with ``path:line:``."""

    def __init__(self, path: object, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class WorkspaceBusyError(EffbertError):
    """Another ``effbert run`` holds the workspace's run lock; the message names its host, pid and start time."""


class StageInterrupted(BaseException):
    """The process stopped on SIGTERM (SLURM's preemption and time limit) or SIGINT (Ctrl-C) at a safe point
    (`effbert.interrupt`): its outputs were not written, its run is marked KILLED, and the next run resumes.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` (a candidate's failure recorded
    as its result, a retried tracking call) swallows it. The CLI prints its message in one line and exits with the
    shell's code for the signal: 128 + its number (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, signum: int, detail: str = "") -> None:
        self.signum = signum
        self.detail = detail
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}" + (f": {detail}" if detail else ""))

    def __reduce__(self) -> tuple[type, tuple[int, str]]:  # crosses process pools intact
        return type(self), (self.signum, self.detail)


class DiskFullError(EffbertError):
    """A write ran out of space (ENOSPC) or quota (EDQUOT); the message names the path: free space and rerun."""
