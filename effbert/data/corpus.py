"""Raw-text corpus reader for task-agnostic distillation: documents as lists of sentences, streamed.

Nothing here holds the corpus in memory: files are read line by line (:func:`iter_documents` yields one document
at a time), and :func:`pack_corpus` writes Arrow shards through ``datasets`` (documents, then their tokens from
``datasets.map`` with ``num_proc`` workers, then the packed rows), so a Wikipedia-sized corpus prepares in bounded
memory (``effbert corpus-memory`` measures it).

Two formats are recognised per file:

* WikiText raw: an article starts at a line `` = Title = `` (one ``=`` on each side); subheadings
  (`` = = Section = = ``) are dropped, blank lines are ignored, every other line is a paragraph.
* Plain text: documents are separated by one or more blank lines; a line holds one or more sentences.

A file is WikiText if it has at least one article heading line.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from effbert.data.textio import check_utf8, iter_lines
from effbert.errors import DataFormatError

logger = logging.getLogger(__name__)

_ARTICLE = re.compile(r"^\s*=\s+(?!=)(.*?\S)(?<!=)\s+=\s*$")
_SUBHEADING = re.compile(r"^\s*(=\s+){2,}.*?(\s+=){2,}\s*$")
# End of a sentence candidate: terminal punctuation, optional closing quotes/brackets, then white space.
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s+")
_OPENERS = "\"'“‘([ "
# Abbreviations whose period does not end a sentence (lower case, without the final period).
_ABBREVIATION_WORDS = (
    "mr mrs ms dr prof st jr sr vs gen col lt sgt capt rev fr mt ft inc ltd co corp dept est approx fig e.g i.e "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# Abbreviations that precede a number ("No. 5", "Vol. 2"): no sentence break before a digit.
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "vol", "pp", "p", "art", "ch"})
_INITIALS = re.compile(r"[A-Za-z](\.[A-Za-z])*")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences with a simple punctuation rule.

    A sentence ends at ``.``, ``!`` or ``?`` (plus closing quotes or brackets) followed by white space and a
    capital letter, a digit or an opening quote. Works for WikiText raw, where punctuation is space-separated
    (``" . "``), and for normal text, where a period after an initial (``J. Smith``, ``U.S.``) or a common
    abbreviation (``Mr.``) does not end a sentence.

    Args:
        text: one paragraph.

    Returns:
        Non-empty sentences, stripped.
    """
    sentences: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        rest = text[m.end() :].lstrip(_OPENERS)
        if not rest or not (rest[0].isupper() or rest[0].isdigit()):
            continue
        if text[m.start()] == ".":
            word = text[start : m.start()].rsplit(None, 1)[-1] if text[start : m.start()].strip() else ""
            if word and text[m.start() - 1] != " ":
                lower = word.lower()
                if lower in _ABBREVIATIONS or _INITIALS.fullmatch(word):
                    continue
                if lower in _NUMBER_ABBREVIATIONS and rest[0].isdigit():
                    continue
        sentence = text[start : m.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


DOCUMENT_BATCH = 32
"""Documents per tokenising batch and per Arrow write: what bounds the preparation's memory (a Wikipedia article is
a few thousand tokens; ``datasets`` would otherwise buffer 1,000 documents before writing)."""

ROW_BATCH = 1000
"""Packed rows (at most ``data.max_seq_length`` tokens each) per Arrow write."""


def _file_documents(path: Path) -> Iterator[list[str]]:
    """One file's non-empty documents in order (WikiText raw or plain text, detected by a first streamed pass); the
    whole file is checked to be UTF-8 first, so a bad byte anywhere stops the preparation before it starts."""
    check_utf8(path)
    is_wikitext = any(_ARTICLE.match(line) for line in iter_lines(path))
    current: list[str] = []
    for line in iter_lines(path):
        if is_wikitext:
            boundary = bool(_ARTICLE.match(line))
            text = "" if boundary or _SUBHEADING.match(line) else line
        else:
            boundary, text = not line.strip(), line
        if boundary:
            if current:
                yield current
            current = []
        elif text.strip():
            current.extend(split_sentences(text))
    if current:
        yield current


def corpus_files(path: Path) -> list[Path]:
    """The corpus file ``path``, or the ``*.txt``/``*.raw`` files of folder ``path`` in sorted order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".txt", ".raw"))
    raise DataFormatError(path, None, "corpus path not found (expected a text file or a folder of *.txt/*.raw)")


def corpus_size(path: Path) -> int:
    """Bytes of the corpus files of ``path`` (:func:`corpus_files`)."""
    return sum(f.stat().st_size for f in corpus_files(path))


def iter_documents(path: str | Path, max_documents: int | None = None) -> Iterator[list[str]]:
    """Stream the documents of a corpus file, or of every ``*.txt``/``*.raw`` file of a folder in sorted order.

    Args:
        path: a text file or a folder of text files (WikiText raw or plain text, detected per file).
        max_documents: stop after this many documents (None: all).

    Yields:
        Documents, each a non-empty list of sentences, one at a time (empty documents are dropped).

    Raises:
        DataFormatError: the path does not exist, a file is not UTF-8 (with the line), or no document was found.
    """
    path = Path(path)
    count = 0
    for file in corpus_files(path):
        for document in _file_documents(file):
            yield document
            count += 1
            if max_documents is not None and count >= max_documents:
                return
        logger.debug("%s: %d documents so far", file, count)
    if not count:
        raise DataFormatError(path, None, "no documents found (files are empty or there are no *.txt/*.raw files)")


def read_documents(path: str | Path) -> list[list[str]]:
    """Every document of :func:`iter_documents` in a list (small corpora and tests; the stage streams)."""
    return list(iter_documents(path))


def pack_units(token_lists: list[list[int]], max_tokens: int) -> list[list[list[int]]]:
    """Greedily pack the consecutive sentences of one document into chunks of at most ``max_tokens`` ids.

    Sentences are never reordered; a sentence longer than ``max_tokens`` is cut into pieces of ``max_tokens``
    (a full piece fills a chunk alone; its last piece may share a chunk with the next sentence), so every boundary
    between two units of one chunk is a sentence boundary. Call once per document so documents never mix.

    Args:
        token_lists: token ids of each sentence, in document order (empty sentences are skipped).
        max_tokens: chunk capacity, at least 1.

    Returns:
        Chunks, each a non-empty list of units (a whole sentence or the piece of one) holding at most
        ``max_tokens`` ids in all; the concatenation of every unit is the input's.

    Raises:
        ValueError: ``max_tokens`` < 1.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    chunks: list[list[list[int]]] = []
    current: list[list[int]] = []
    size = 0
    for tokens in token_lists:
        if not tokens:
            continue
        if size + len(tokens) <= max_tokens:
            current.append(list(tokens))
            size += len(tokens)
            continue
        if current:
            chunks.append(current)
        pieces = [list(tokens[i : i + max_tokens]) for i in range(0, len(tokens), max_tokens)]
        chunks.extend([piece] for piece in pieces[:-1])
        current, size = [pieces[-1]], len(pieces[-1])
    if current:
        chunks.append(current)
    return chunks


def pack_sentences(token_lists: list[list[int]], max_tokens: int) -> list[list[int]]:
    """:func:`pack_units` with each chunk's units joined: chunks of at most ``max_tokens`` ids, in order."""
    return [[t for unit in chunk for t in unit] for chunk in pack_units(token_lists, max_tokens)]


def split_pair(units: list[list[int]], rng: random.Random) -> tuple[list[int], list[int]]:
    """Split a chunk at a sentence boundary drawn uniformly from its ``len(units) - 1`` boundaries.

    Args:
        units: one chunk of :func:`pack_units`.
        rng: draws the boundary (seeded by the caller).

    Returns:
        (segment A, segment B): both non-empty when the chunk holds two units or more; B is empty for a chunk of
        one unit (a one-sentence document, or a piece of a sentence longer than the chunk).
    """
    cut = rng.randint(1, len(units) - 1) if len(units) > 1 else len(units)
    return [t for unit in units[:cut] for t in unit], [t for unit in units[cut:] for t in unit]


def document_rows(
    doc_id: int, sentence_ids: list[list[int]], cls_id: int, sep_id: int, max_seq_length: int, rng: random.Random
) -> Iterator[dict[str, Any]]:
    """One document's ``[CLS] A [SEP] B [SEP]`` rows (see :func:`pack_corpus`), split points drawn from ``rng``."""
    for units in pack_units(sentence_ids, max_seq_length - 3):
        first, second = split_pair(units, rng)
        segment_a = [cls_id, *first, sep_id]
        segment_b = [*second, sep_id] if second else []
        input_ids = segment_a + segment_b
        yield {
            "doc": doc_id,
            "input_ids": input_ids,
            "token_type_ids": [0] * len(segment_a) + [1] * len(segment_b),
            "attention_mask": [1] * len(input_ids),
        }


def pack_corpus(
    documents: Iterable[list[str]],
    tokenizer: Any,
    max_seq_length: int,
    fp: str,
    seed: int,
    *,
    work_dir: Path,
    num_proc: int = 1,
) -> tuple[Any, dict[str, Any]]:
    """Tokenise the documents and pack each one's sentences into ``[CLS] A [SEP] B [SEP]`` sentence-pair rows.

    Consecutive sentences of one document fill a chunk of at most ``max_seq_length - 3`` tokens
    (:func:`pack_units`); the chunk is split at a random sentence boundary into segment A (``token_type_ids`` 0,
    with ``[CLS]`` and the first ``[SEP]``) and segment B (``token_type_ids`` 1, with the last ``[SEP]``), as the
    official code's ``[CLS] A [SEP] B [SEP]`` instances, so task-agnostic KD trains the segment-1 embedding that
    every pair task and SQuAD use. A chunk of a single unit becomes ``[CLS] A [SEP]`` with segment 0. Every token of
    every document lands in exactly one row, in order.

    Memory stays bounded whatever the corpus size: the documents (an iterable, e.g. :func:`iter_documents`) are
    written to Arrow as they come, tokenised by ``datasets.map`` in ``num_proc`` processes, and packed in one
    ordered pass (one seeded generator, so the rows do not depend on ``num_proc``) into Arrow again.

    Args:
        documents: lists of sentences, e.g. from :func:`iter_documents`.
        tokenizer: the teacher's tokenizer.
        max_seq_length: the longest row, special tokens included (at least 4).
        fp: the dataset's fingerprint (keeps the saved Arrow bytes stable).
        seed: seeds the choice of each split point.
        work_dir: where the Arrow files live (the returned dataset is backed by them: save it before removing it).
        num_proc: tokenisation processes.

    Returns:
        (a ``datasets.Dataset`` with ``doc``, ``input_ids``, ``token_type_ids``, ``attention_mask``; counts:
        documents, sequences, pair_sequences, tokens, mean length).

    Raises:
        ValueError: ``max_seq_length`` < 4, or no row came out of the documents.
    """
    import datasets

    if max_seq_length < 4:
        raise ValueError(f"max_seq_length must be >= 4 for [CLS] A [SEP] B [SEP] rows, got {max_seq_length}")
    ids = datasets.Sequence(datasets.Value("int64"))
    text = _generate(
        lambda: ({"doc": i, "sentences": d} for i, d in enumerate(documents)),
        {"doc": datasets.Value("int64"), "sentences": datasets.Sequence(datasets.Value("string"))},
        work_dir / "documents",
        f"{fp}-documents",
        DOCUMENT_BATCH,
    )

    tokens = _tokenised(text, tokenizer, fp, num_proc)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id

    def packed() -> Iterator[dict[str, Any]]:
        rng = random.Random(seed)
        for batch in tokens.iter(batch_size=DOCUMENT_BATCH):
            for doc_id, sentence_ids in zip(batch["doc"], batch["sentence_ids"], strict=True):
                yield from document_rows(doc_id, sentence_ids, cls_id, sep_id, max_seq_length, rng)

    row_features = {"doc": datasets.Value("int64"), "input_ids": ids, "token_type_ids": ids, "attention_mask": ids}
    dataset = _generate(packed, row_features, work_dir / "rows", fp, ROW_BATCH)
    if not len(dataset):
        raise ValueError("the corpus produced no sequences")
    return dataset, _counts(dataset, documents=len(text))


def _tokenised(text: Any, tokenizer: Any, fp: str, num_proc: int) -> Any:
    """The documents' sentences as token ids (``doc``, ``sentence_ids``), ``num_proc`` processes, order kept."""
    import datasets

    def tokenise(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        sentences = batch["sentences"]
        return {"sentence_ids": [tokenizer(s, add_special_tokens=False)["input_ids"] if s else [] for s in sentences]}

    ids = datasets.Sequence(datasets.Value("int64"))
    return text.map(
        tokenise,
        batched=True,
        batch_size=DOCUMENT_BATCH,
        writer_batch_size=DOCUMENT_BATCH,
        num_proc=num_proc if num_proc > 1 else None,
        remove_columns=["sentences"],
        features=datasets.Features({"doc": datasets.Value("int64"), "sentence_ids": datasets.Sequence(ids)}),
        new_fingerprint=f"{fp}-tokens",
        desc="tokenising the corpus",
    )


def _counts(dataset: Any, documents: int) -> dict[str, Any]:
    """documents, sequences, pair_sequences, tokens and mean length of packed rows, read in Arrow batches."""
    counts: dict[str, Any] = {"documents": documents, "sequences": len(dataset), "pair_sequences": 0, "tokens": 0}
    for batch in dataset.with_format("arrow").iter(batch_size=ROW_BATCH):
        lengths = batch["input_ids"].combine_chunks().value_lengths().to_numpy()
        segments = batch["token_type_ids"].combine_chunks()
        last_segments = segments.values.to_numpy()[segments.offsets.to_numpy()[1:] - 1]  # a pair row ends in B
        counts["tokens"] += int(lengths.sum())
        counts["pair_sequences"] += int(last_segments.sum())
    counts["mean_length"] = counts["tokens"] / counts["sequences"]
    return counts


def _generate(rows: Any, features: dict[str, Any], cache_dir: Path, fp: str, writer_batch_size: int) -> Any:
    """``datasets.Dataset.from_generator`` into ``cache_dir`` with the fingerprint ``fp``, written every
    ``writer_batch_size`` rows; a reader's `DataFormatError` raised inside the generator comes out as itself (one
    line naming the file and line)."""
    import datasets

    try:
        return datasets.Dataset.from_generator(
            rows,
            features=datasets.Features(features),
            cache_dir=str(cache_dir),
            fingerprint=fp,
            writer_batch_size=writer_batch_size,
        )
    except datasets.exceptions.DatasetGenerationError as err:
        if isinstance(err.__cause__, DataFormatError):
            raise err.__cause__ from None
        raise
