"""Digests that tell a file written to the end from one cut short or changed since (issue 15: corruption is
detected, never loaded).

- Sealed folders: :func:`seal` writes ``digests.json`` (every file's size and sha256) as a folder's last file, once
  the folder is complete (a Trainer checkpoint, a prepared dataset); :func:`damage` checks a folder, or one subfolder
  of it, against its digests and names the first file that is missing, cut short or changed (a folder without the
  file was never finished).
- Sealed JSON records: :func:`sealed` adds ``sha256`` (of the record's canonical JSON) to a record, :func:`unsealed`
  returns the record only when it still matches (a search record line); :func:`write_sealed_json` and
  :func:`read_sealed_json` keep one such record as a file (the latency cache, the stage-3 state), a damaged one
  discarded with one warning line.
- :func:`replace_text`: a text file replaced atomically and flushed to disk.

Hashing streams files in 1 MiB chunks, so a large corpus costs time (about a second per GB), never memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "CHECKSUM",
    "DIGESTS",
    "Damage",
    "damage",
    "file_sha256",
    "read_digests",
    "read_sealed_json",
    "replace_text",
    "seal",
    "sealed",
    "unsealed",
    "write_sealed_json",
]

DIGESTS = "digests.json"
"""The digest file of a sealed folder (its last file)."""
CHECKSUM = "sha256"
"""The key of a sealed record's checksum."""
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Damage:
    """What is wrong with a sealed folder: the file and why (``missing``, ``cut short ...``, ``changed ...``)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling that is flushed to disk, then renamed into place (a
    reader sees the old file or the new one, never a part)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def seal(directory: Path, *, stage: str | None = None) -> Path:
    """Write ``directory/digests.json``: the size and sha256 of every file below it (call it once the folder is
    complete; its presence says so). ``stage`` names the stage that wrote it (for the message of a damaged one)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).as_posix() != DIGESTS)
    record: dict[str, Any] = {
        "algorithm": "sha256",
        **({"stage": stage} if stage else {}),
        "files": {
            p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        },
    }
    replace_text(directory / DIGESTS, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return directory / DIGESTS


def read_digests(directory: Path) -> tuple[dict[str, Any] | None, Damage | None]:
    """The parsed ``digests.json`` of a sealed folder, or why there is none to trust."""
    path = directory / DIGESTS
    if not path.is_file():
        return None, Damage(path, "missing (the folder was not written to the end)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        files = record["files"]
        if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
            raise TypeError("files")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None, Damage(path, "unreadable (not the digest file effbert writes)")
    return record, None


def damage(directory: Path, part: str | None = None) -> Damage | None:
    """The first damaged file of the sealed folder ``directory`` (only below its subfolder ``part`` when given), or
    None when every file matches ``digests.json``. A folder or part with no digests is damaged too."""
    record, problem = read_digests(directory)
    if record is None:
        return problem
    files: dict[str, dict[str, Any]] = record["files"]
    names = sorted(n for n in files if part is None or n.startswith(f"{part}/"))
    if part is not None and not names:
        return Damage(directory / part, f"not listed in {DIGESTS}")
    for name in names:
        path, expected = directory / name, files[name]
        if not path.is_file():
            return Damage(path, "missing")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            return Damage(path, f"cut short or grown ({size} bytes, {expected.get('bytes')} written)")
        if file_sha256(path) != expected.get("sha256"):
            return Damage(path, f"changed since it was written (its sha256 differs from {DIGESTS})")
    return None


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sealed(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with ``sha256``: the digest of its canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in record.items() if k != CHECKSUM}
    return {**body, CHECKSUM: hashlib.sha256(_canonical(body)).hexdigest()}


def write_sealed_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as one sealed JSON file (:func:`sealed`), atomically and flushed to disk."""
    replace_text(path, json.dumps(sealed(record), indent=0, sort_keys=True) + "\n")


def read_sealed_json(path: Path, what: str, then: str) -> dict[str, Any] | None:
    """The record of a file :func:`write_sealed_json` wrote; None when there is none. A file cut short or changed
    since (it fails to parse or to match its checksum) is removed with one warning line naming it, ``what`` it is
    and what happens ``then``, and None returned."""
    if not path.is_file():
        return None
    try:
        record = unsealed(json.loads(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, ValueError):
        record = None
    if record is None:
        log.warning("%s: damaged %s (cut short or changed since written): discarded, %s", path, what, then)
        path.unlink()
    return record


def unsealed(value: Any) -> dict[str, Any] | None:
    """The record a :func:`sealed` record carries, without its checksum; None when ``value`` is not a sealed
    record or no longer matches its checksum."""
    if not isinstance(value, dict) or not isinstance(value.get(CHECKSUM), str):
        return None
    body = {k: v for k, v in value.items() if k != CHECKSUM}
    return body if hashlib.sha256(_canonical(body)).hexdigest() == value[CHECKSUM] else None
