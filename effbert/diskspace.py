"""A full disk (or quota) as one line naming the path, instead of a traceback (issue 15).

A write that runs out of space surfaces in several shapes: ``OSError`` with ``errno`` ENOSPC or EDQUOT (Python's
own files, Arrow), an error whose text says so (safetensors: ``No space left on device (os error 28)``), or a
``RuntimeError`` that says nothing of the cause (``torch.save``: ``unexpected pos ...``). :func:`disk_full_errors`
turns each into :class:`~effbert.errors.DiskFullError`: the path from the exception when it names one, else the
watched place whose filesystem is (nearly) full; a file inside a stage's temporary output is named by where it
would have gone (``results/models/...``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from effbert.errors import DiskFullError

__all__ = ["disk_full", "disk_full_errors"]

_MESSAGES = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_TEXTS = {
    "No space left on device": errno.ENOSPC,
    "os error 28": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "os error 122": errno.EDQUOT,
}
_NEARLY_FULL_BYTES = 16 << 20
"""A filesystem with less free space than this (or than 0.1% of its size) counts as full."""


def _cause(err: BaseException) -> tuple[int | None, str | None]:
    """The disk-full errno somewhere in ``err``'s chain (and the file it names), else ``(None, None)``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        filename = getattr(current, "filename", None)
        if isinstance(current, OSError) and current.errno in _MESSAGES:
            return current.errno, filename
        text = str(current)
        for needle, code in _TEXTS.items():
            if needle in text:
                return code, filename if isinstance(filename, str) else None
        current = current.__cause__ or current.__context__
    return None, None


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _fullest(places: Mapping[Path, Path]) -> tuple[Path, bool] | None:
    """The first watched place on the filesystem with the least free share, and whether that one is (nearly) full
    (places on one filesystem count as one: measured once, the first of them named)."""
    devices: dict[int, tuple[int, int]] = {}
    first: dict[int, Path] = {}
    for place in places:
        existing = _existing(place)
        device = os.stat(existing).st_dev
        if device not in devices:
            stat = os.statvfs(existing)
            devices[device] = (stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize)
            first[device] = place
    if not devices:
        return None
    device = min(devices, key=lambda d: devices[d][0] / max(devices[d][1], 1))
    free, size = devices[device]
    return first[device], free < max(_NEARLY_FULL_BYTES, size // 1000)


def _shown(filename: str, places: Mapping[Path, Path]) -> str:
    """``filename`` as the user knows it: inside a temporary output, where it would have gone; relative to the
    working directory when below it."""
    path = Path(os.path.abspath(filename))
    for place, shown in places.items():
        if path.is_relative_to(place.absolute()):
            path = shown / path.relative_to(place.absolute())
            break
    cwd = Path.cwd()
    return str(path.relative_to(cwd)) if path.is_absolute() and path.is_relative_to(cwd) else str(path)


def disk_full(err: BaseException, places: Mapping[Path, Path]) -> DiskFullError | None:
    """``err`` as a :class:`DiskFullError` when it comes from a full disk, else None.

    Args:
        err: what a stage raised.
        places: the folders the stage writes (a temporary output -> the output it becomes; a checkpoint folder ->
            itself), watched for a full filesystem when ``err`` names no file.
    """
    code, filename = _cause(err)
    fullest = _fullest(places)
    if code is None:  # no errno: only a RuntimeError/OSError raised while a watched filesystem is full
        if not isinstance(err, RuntimeError | OSError) or fullest is None or not fullest[1]:
            return None
        code = errno.ENOSPC
    if filename:
        where = _shown(str(filename), places)
    elif fullest is not None:
        where = _shown(str(fullest[0]), places)
    else:
        where = "the disk"
    return DiskFullError(f"{_MESSAGES[code]} writing {where}: free space and rerun")


@contextmanager
def disk_full_errors(places: Mapping[Path, Path]) -> Iterator[None]:
    """Turn an error from a full disk inside the block into :class:`DiskFullError` (see :func:`disk_full`); checked
    before the caller's temporary outputs are removed, while the full filesystem is still full."""
    try:
        yield
    except Exception as err:
        full = disk_full(err, places)
        if full is None:
            raise
        raise full from err
