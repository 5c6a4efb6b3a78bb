"""Raw-text corpus reader for task-agnostic distillation: documents as lists of sentences.

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
from pathlib import Path
from typing import Any

from effbert.data.textio import read_utf8
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


def _read_text(path: Path) -> list[str]:
    text = read_utf8(path)
    return [ln.removesuffix("\r") for ln in text.split("\n")]


def _wikitext_documents(lines: list[str]) -> list[list[str]]:
    docs: list[list[str]] = [[]]
    for line in lines:
        if _ARTICLE.match(line):
            docs.append([])
        elif line.strip() and not _SUBHEADING.match(line):
            docs[-1].extend(split_sentences(line))
    return docs


def _plain_documents(lines: list[str]) -> list[list[str]]:
    docs: list[list[str]] = [[]]
    for line in lines:
        if not line.strip():
            if docs[-1]:
                docs.append([])
        else:
            docs[-1].extend(split_sentences(line))
    return docs


def _corpus_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".txt", ".raw"))
    raise DataFormatError(path, None, "corpus path not found (expected a text file or a folder of *.txt/*.raw)")


def read_documents(path: str | Path) -> list[list[str]]:
    """Read a corpus file, or every ``*.txt``/``*.raw`` file of a folder in sorted order, into documents.

    Args:
        path: a text file or a folder of text files (WikiText raw or plain text, detected per file).

    Returns:
        Documents, each a non-empty list of sentences; empty documents are dropped.

    Raises:
        DataFormatError: the path does not exist, a file is not UTF-8 (with the line), or no document was found.
    """
    path = Path(path)
    documents: list[list[str]] = []
    for file in _corpus_files(path):
        lines = _read_text(file)
        is_wikitext = any(_ARTICLE.match(line) for line in lines)
        docs = _wikitext_documents(lines) if is_wikitext else _plain_documents(lines)
        docs = [d for d in docs if d]
        logger.debug("%s: %d documents (%s)", file, len(docs), "wikitext" if is_wikitext else "plain text")
        documents.extend(docs)
    if not documents:
        raise DataFormatError(path, None, "no documents found (files are empty or there are no *.txt/*.raw files)")
    return documents


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


def pack_corpus(
    documents: list[list[str]], tokenizer: Any, max_seq_length: int, fp: str, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Tokenise the documents and pack each one's sentences into ``[CLS] A [SEP] B [SEP]`` sentence-pair rows.

    Consecutive sentences of one document fill a chunk of at most ``max_seq_length - 3`` tokens
    (:func:`pack_units`); the chunk is split at a random sentence boundary into segment A (``token_type_ids`` 0,
    with ``[CLS]`` and the first ``[SEP]``) and segment B (``token_type_ids`` 1, with the last ``[SEP]``), as the
    official code's ``[CLS] A [SEP] B [SEP]`` instances, so task-agnostic KD trains the segment-1 embedding that
    every pair task and SQuAD use. A chunk of a single unit becomes ``[CLS] A [SEP]`` with segment 0. Every token of
    every document lands in exactly one row, in order.

    Args:
        documents: from :func:`read_documents`.
        tokenizer: the teacher's tokenizer.
        max_seq_length: the longest row, special tokens included (at least 4).
        fp: the dataset's fingerprint (keeps the saved Arrow bytes stable).
        seed: seeds the choice of each split point.

    Returns:
        (a ``datasets.Dataset`` with ``doc``, ``input_ids``, ``token_type_ids``, ``attention_mask``; counts:
        documents, sequences, pair_sequences, tokens, mean length).

    Raises:
        ValueError: ``max_seq_length`` < 4, or no row came out of the documents.
    """
    import datasets

    if max_seq_length < 4:
        raise ValueError(f"max_seq_length must be >= 4 for [CLS] A [SEP] B [SEP] rows, got {max_seq_length}")
    rng = random.Random(seed)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows: list[dict[str, Any]] = []
    for doc_id, sentences in enumerate(documents):
        ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
        for units in pack_units(ids, max_seq_length - 3):
            first, second = split_pair(units, rng)
            segment_a = [cls_id, *first, sep_id]
            segment_b = [*second, sep_id] if second else []
            input_ids = segment_a + segment_b
            token_type_ids = [0] * len(segment_a) + [1] * len(segment_b)
            rows.append(
                {
                    "doc": doc_id,
                    "input_ids": input_ids,
                    "token_type_ids": token_type_ids,
                    "attention_mask": [1] * len(input_ids),
                }
            )
    if not rows:
        raise ValueError("the corpus produced no sequences")
    dataset = datasets.Dataset.from_list(rows).flatten_indices(new_fingerprint=fp)
    lengths = [len(r["input_ids"]) for r in rows]
    counts = {
        "documents": len(documents),
        "sequences": len(rows),
        "pair_sequences": sum(1 for r in rows if r["token_type_ids"][-1] == 1),
        "tokens": sum(lengths),
        "mean_length": sum(lengths) / len(lengths),
    }
    return dataset, counts
