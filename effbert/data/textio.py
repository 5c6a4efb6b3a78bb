"""Reading input text files: strict UTF-8, with the line of the first bad byte in the error, whole or streamed
line by line, and a streamed check of a whole file of any size."""

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


CHECK_CHUNK = 16 << 20
"""Bytes read at a time by :func:`check_utf8`."""


def check_utf8(path: Path, chunk_size: int = CHECK_CHUNK) -> None:
    """Check that a file of any size is UTF-8 in one streamed pass (about a second per GB, constant memory), so that
    a bad byte at the end of a large corpus is reported before any work on it starts.

    Raises:
        DataFormatError: the first bad byte's line and offset.
    """
    lines_before, offset, carry = 0, 0, b""
    with path.open("rb") as fh:
        while True:
            block = fh.read(chunk_size)
            data, last = carry + block, not block
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as exc:
                if not last and exc.reason == "unexpected end of data" and len(data) - exc.start < 4:
                    carry = data[exc.start :]  # a character cut by the block boundary: finish it with the next block
                    data = data[: exc.start]
                else:
                    line = lines_before + data.count(b"\n", 0, exc.start) + 1
                    message = f"not valid UTF-8 ({exc.reason} at byte {offset + exc.start})"
                    raise DataFormatError(path, line, message) from None
            if last:
                return
            lines_before += data.count(b"\n")
            offset += len(data)


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
