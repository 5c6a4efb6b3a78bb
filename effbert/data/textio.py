"""Reading input text files: strict UTF-8, with the line of the first bad byte in the error."""

from __future__ import annotations

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
