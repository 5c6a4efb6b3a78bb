"""Reading input text files: strict UTF-8, with the line of the first bad byte in the error, whole or streamed
line by line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from effbert.errors import DataFormatError


def read_utf8(path: Path) -> str:
    """The text of ``path`` without a leading BOM.

    Raises:
        DataFormatError: the bytes are not UTF-8 (the message names the line of the first bad byte).
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(path, line, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return text.removeprefix("\ufeff")


def iter_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 file, streamed: no line end (``\\n``, a trailing ``\\r``), a leading BOM dropped.

    Raises:
        DataFormatError: a line is not UTF-8 (the message names its line and the byte offset in the file).
    """
    offset = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                message = f"not valid UTF-8 ({exc.reason} at byte {offset + exc.start})"
                raise DataFormatError(path, number, message) from None
            offset += len(raw)
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield line.removesuffix("\n").removesuffix("\r")
