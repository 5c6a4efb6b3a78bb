"""Raw-text corpus reader for task-agnostic distillation: documents as lists of sentences.

Two formats are recognised per file:

* WikiText raw: an article starts at a line `` = Title = `` (one ``=`` on each side); subheadings
  (`` = = Section = = ``) are dropped, blank lines are ignored, every other line is a paragraph.
* Plain text: documents are separated by one or more blank lines; a line holds one or more sentences.

A file is WikiText if it has at least one article heading line.
"""

from __future__ import annotations

import logging
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


def pack_sentences(token_lists: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Greedily pack the consecutive sentences of one document into chunks of at most ``max_tokens`` ids.

    Sentences are never reordered; a sentence longer than ``max_tokens`` is cut into pieces of ``max_tokens``
    (its last piece may share a chunk with the next sentence). Call once per document so documents never mix.

    Args:
        token_lists: token ids of each sentence, in document order (empty sentences are skipped).
        max_tokens: chunk capacity, at least 1.

    Returns:
        Chunks, each a non-empty list of at most ``max_tokens`` ids; their concatenation is the input's.

    Raises:
        ValueError: ``max_tokens`` < 1.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    chunks: list[list[int]] = []
    current: list[int] = []
    for tokens in token_lists:
        if not tokens:
            continue
        if len(current) + len(tokens) <= max_tokens:
            current.extend(tokens)
            continue
        if current:
            chunks.append(current)
        pieces = [list(tokens[i : i + max_tokens]) for i in range(0, len(tokens), max_tokens)]
        chunks.extend(pieces[:-1])
        current = pieces[-1]
    if current:
        chunks.append(current)
    return chunks


def pack_corpus(documents: list[list[str]], tokenizer: Any, max_seq_length: int, fp: str) -> tuple[Any, dict[str, Any]]:
    """Tokenise the documents and pack each one's sentences into ``[CLS] sentences... [SEP]`` rows.

    Args:
        documents: from :func:`read_documents`.
        tokenizer: the teacher's tokenizer.
        max_seq_length: the longest row, special tokens included.
        fp: the dataset's fingerprint (keeps the saved Arrow bytes stable).

    Returns:
        (a ``datasets.Dataset`` with ``doc``, ``input_ids``, ``attention_mask``; counts: documents, sequences,
        tokens, mean length).

    Raises:
        ValueError: no row came out of the documents.
    """
    import datasets

    budget = max_seq_length - 2  # room for [CLS] and [SEP]
    rows: list[dict[str, Any]] = []
    for doc_id, sentences in enumerate(documents):
        ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
        for chunk in pack_sentences(ids, budget):
            input_ids = [tokenizer.cls_token_id, *chunk, tokenizer.sep_token_id]
            rows.append({"doc": doc_id, "input_ids": input_ids, "attention_mask": [1] * len(input_ids)})
    if not rows:
        raise ValueError("the corpus produced no sequences")
    dataset = datasets.Dataset.from_list(rows).flatten_indices(new_fingerprint=fp)
    lengths = [len(r["input_ids"]) for r in rows]
    counts = {
        "documents": len(documents),
        "sequences": len(rows),
        "tokens": sum(lengths),
        "mean_length": sum(lengths) / len(lengths),
    }
    return dataset, counts
