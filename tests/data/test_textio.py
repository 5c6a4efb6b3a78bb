"""Strict UTF-8 input at any size: `effbert.data.textio.check_utf8` streams a file in blocks and names the line of
the first bad byte, a character cut by a block boundary included; a 1 GB corpus with one bad byte at its very end
stops `effbert prepare-corpus` in one line, before any work and with no output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from effbert.data.textio import check_utf8
from effbert.errors import DataFormatError
from tests.conftest import copy_project, run_cli


def test_a_character_cut_by_the_block_boundary_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text("ab\ncafé über\n" * 50, encoding="utf-8")
    for size in (1, 2, 3, 5, 7, 64):  # every way the two-byte characters can be cut
        check_utf8(path, chunk_size=size)


@pytest.mark.parametrize("size", [1, 4, 16, 1 << 20])
def test_the_first_bad_byte_is_named_by_line_and_offset(tmp_path: Path, size: int) -> None:
    path = tmp_path / "text.txt"
    path.write_bytes("é\n".encode() * 10 + b"ok\nbad \xff here\n")
    with pytest.raises(DataFormatError) as err:
        check_utf8(path, chunk_size=size)
    assert str(err.value) == f"{path}:12: not valid UTF-8 (invalid start byte at byte 37)"
    path.write_bytes(b"fine\nends in a cut character \xc3")
    with pytest.raises(DataFormatError, match=r":2: not valid UTF-8 \(unexpected end of data"):
        check_utf8(path, chunk_size=size)


@pytest.mark.slow
def test_a_one_gigabyte_corpus_with_a_bad_last_byte_stops_preparation_at_once(tmp_path: Path) -> None:
    """A WikiText corpus of small articles (its format is known from its first line, so nothing else reads the
    whole file first): without the streamed check the smoke profile's document limit would end the preparation
    long before the bad byte, and without the limit it would tokenise a gigabyte first."""
    project = copy_project(tmp_path / "project")
    corpus = tmp_path / "big.txt"
    paragraph = (" = An article = \n" + "A sentence of plain English text for the corpus. " * 20 + "\n").encode()
    per_block = (64 << 20) // len(paragraph)
    blocks = 0
    with corpus.open("wb") as handle:
        while handle.tell() < 1 << 30:
            handle.write(paragraph * per_block)
            blocks += 1
        handle.write(b"the last line \xff\n")
    line = blocks * per_block * 2 + 1  # two lines an article (heading, text), then the bad line
    settings = run_cli(
        ["effbert", "run", "--params", "params/smoke.yaml", "--set", f"data.corpus={corpus}", "--dry-run"], project
    )
    assert settings.returncode == 0, settings.stderr[-2000:]
    started = time.perf_counter()
    result = run_cli(["effbert", "prepare-corpus", "--out", "results/prepare_corpus"], project, 600)
    seconds = time.perf_counter() - started
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"effbert: error: {corpus}:{line}: not valid UTF-8 (invalid start byte at byte "), last
    assert seconds < 180, seconds  # one streamed pass, not a tokenisation of the gigabyte
    assert not (project / "results/prepare_corpus").exists()
    assert not list((project / "results").glob(".prepare_corpus.partial-*"))
