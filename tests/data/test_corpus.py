"""Raw-text corpus reader: real WikiText-2 raw files, plain text, sentence splitting, errors, packing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effbert.data.corpus import pack_sentences, read_documents, split_sentences
from effbert.errors import DataFormatError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
WIKI = DATA / "corpus" / "wikitext-2-raw"
needs_data = pytest.mark.skipif(not WIKI.is_dir(), reason="shared benchmark data not available")


@needs_data
def test_wikitext_valid() -> None:
    docs = read_documents(WIKI / "wiki.valid.raw")
    assert len(docs) == 60  # one per ` = Title = ` line
    assert docs[0][0].startswith("Homarus gammarus , known as the European lobster or common lobster , is a species")
    assert docs[0][0].endswith(" .")
    sentences = [s for doc in docs for s in doc]
    assert not any(s.startswith("=") or " = = " in s for s in sentences)  # headings dropped
    assert all(s == s.strip() and s for s in sentences)
    assert "H. gammarus is a large crustacean" not in sentences[0]
    assert 7000 < len(sentences) < 10000


@needs_data
def test_wikitext_directory_sorted() -> None:
    docs = read_documents(WIKI)
    assert len(docs) == 62 + 60  # wiki.test.raw first, then wiki.valid.raw
    assert docs[0][0].startswith("Robert Boulter is an English film , television and theatre actor .")
    assert docs[62][0].startswith("Homarus gammarus")


def test_wikitext_format(tmp_path: Path) -> None:
    path = tmp_path / "w.raw"
    path.write_text(
        " \n = First Article = \n \n The cat sat . It was 3 @.@ 5 m long .\n \n = = History = = \n \n"
        " Then it left ! Why ?\n = = = Sub sub = = = \n Last line\n \n = Second = \n \n Only one .\n"
        " = Empty = \n \n"
    )
    assert read_documents(path) == [
        ["The cat sat .", "It was 3 @.@ 5 m long .", "Then it left !", "Why ?", "Last line"],
        ["Only one ."],
    ]


def test_plain_text(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Second file. Two sentences.\n")
    (tmp_path / "a.txt").write_text(
        "\ufeffDr. Smith went to Washington. He arrived at 5 p.m. on Monday.\r\nA new line is a new sentence\n"
        '\n\n\nSecond document!\n  \nThird, with a "quote." And more.\n'
    )
    (tmp_path / "ignored.md").write_text("Not a corpus file.\n")
    assert read_documents(tmp_path) == [
        ["Dr. Smith went to Washington.", "He arrived at 5 p.m. on Monday.", "A new line is a new sentence"],
        ["Second document!"],
        ['Third, with a "quote."', "And more."],
        ["Second file.", "Two sentences."],
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One . Two . three", ["One .", "Two . three"]),
        (
            "He met J. R. R. Tolkien in the U.S. in 1950. Then left.",
            ["He met J. R. R. Tolkien in the U.S. in 1950.", "Then left."],
        ),
        ("See No. 5 Squadron. It flew.", ["See No. 5 Squadron.", "It flew."]),
        ('He said " stop . " Then he left .', ['He said " stop .', '" Then he left .']),
        ("Wait... What? Yes!", ["Wait...", "What?", "Yes!"]),
        ("  ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not found") as info:
        read_documents(tmp_path / "missing")
    assert info.value.line is None
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line.\n\nsecond \xc3( line.\n")
    with pytest.raises(DataFormatError) as info:
        read_documents(bad)
    assert str(info.value).startswith(f"{bad}:3: not valid UTF-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("\n  \n\n")
    with pytest.raises(DataFormatError, match="no documents found"):
        read_documents(empty)
    shutil.rmtree(empty)
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no documents found"):
        read_documents(empty)


def test_pack_sentences() -> None:
    assert pack_sentences([[1, 2], [3], [4, 5, 6], [7]], 4) == [[1, 2, 3], [4, 5, 6, 7]]
    assert pack_sentences([[1], [2, 3, 4, 5, 6, 7, 8], [9]], 3) == [[1], [2, 3, 4], [5, 6, 7], [8, 9]]
    assert pack_sentences([[], [1], []], 1) == [[1]]
    assert pack_sentences([], 8) == []
    with pytest.raises(ValueError, match="max_tokens"):
        pack_sentences([[1]], 0)


@given(st.lists(st.lists(st.integers(0, 9), max_size=12), max_size=12), st.integers(1, 10))
def test_pack_sentences_properties(sentences: list[list[int]], max_tokens: int) -> None:
    chunks = pack_sentences(sentences, max_tokens)
    assert [t for c in chunks for t in c] == [t for s in sentences for t in s]
    assert all(0 < len(c) <= max_tokens for c in chunks)
    # when every sentence fits, chunks hold whole sentences, and a chunk is closed only if the next one did not fit
    fitting = [s[:max_tokens] for s in sentences if s]
    remaining = list(fitting)
    packed = pack_sentences(fitting, max_tokens)
    for i, chunk in enumerate(packed):
        taken: list[int] = []
        while remaining and len(taken) + len(remaining[0]) <= len(chunk):
            taken += remaining.pop(0)
        assert taken == chunk
        if i + 1 < len(packed):
            assert len(chunk) + len(remaining[0]) > max_tokens
    assert not remaining
