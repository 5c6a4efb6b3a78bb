"""Reader for SQuAD v1.1 / v2.0 JSON files, with answer offsets checked against the context."""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path
from typing import Any

from effbert.data.textio import read_utf8
from effbert.errors import DataFormatError

logger = logging.getLogger(__name__)


class _Checker:
    """Builds DataFormatErrors that point at the line of the raw file where a question's id appears."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def line_of(self, qid: str | None) -> int | None:
        if qid is None:
            return None
        for quoted in (json.dumps(qid, ensure_ascii=False), json.dumps(qid)):
            found = re.search(r'"id"\s*:\s*' + re.escape(quoted), self.text)
            if found:
                return self.text.count("\n", 0, found.start()) + 1
        return None

    def error(self, qid: str | None, message: str) -> DataFormatError:
        return DataFormatError(self.path, self.line_of(qid), message)

    def get(self, obj: Any, key: str, kind: type | tuple[type, ...], where: str, qid: str | None = None) -> Any:
        """Return ``obj[key]`` after checking that it exists and has type ``kind``."""
        if not isinstance(obj, dict):
            raise self.error(qid, f"expected a JSON object at {where}")
        if key not in obj:
            raise self.error(qid, f"missing key {key!r} in {where}")
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise self.error(qid, f"key {key!r} in {where} has type {type(value).__name__}")
        return value


def _load_json(path: Path) -> tuple[str, Any]:
    if not path.is_file():
        raise DataFormatError(path, None, f"SQuAD file not found (expected {path})")
    text = read_utf8(path)
    if not text.strip():
        raise DataFormatError(path, 1, "empty file, expected SQuAD JSON")
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None


def _read_question(
    ck: _Checker, qa: Any, context: str, title: str, where: str, version_2: bool, labelled: bool
) -> dict[str, Any]:
    qid = ck.get(qa, "id", str, where)
    where = f"question {qid!r}"
    question = ck.get(qa, "question", str, where, qid)
    if not labelled:  # a test file: answers, when present, are not read
        return {
            "id": qid,
            "title": title,
            "context": context,
            "question": question,
            "answers": {"text": [], "answer_start": []},
            "is_impossible": False,
        }
    answers = ck.get(qa, "answers", list, where, qid)
    impossible = bool(ck.get(qa, "is_impossible", bool, where, qid)) if version_2 else False
    texts: list[str] = []
    starts: list[int] = []
    for k, ans in enumerate(answers):
        text = ck.get(ans, "text", str, f"answer {k} of {where}", qid)
        start = ck.get(ans, "answer_start", int, f"answer {k} of {where}", qid)
        if start < 0 or context[start : start + len(text)] != text:
            found = context[max(start, 0) : max(start, 0) + len(text)]
            raise ck.error(qid, f"answer {k} of {where}: answer_start {start} gives {found!r}, not {text!r}")
        texts.append(text)
        starts.append(start)
    if impossible and texts:
        raise ck.error(qid, f"{where} is marked is_impossible but has {len(texts)} answers")
    if not impossible and not texts:
        raise ck.error(qid, f"{where} has no answers" + ("" if version_2 else " (SQuAD v1.1 needs at least one)"))
    return {
        "id": qid,
        "title": title,
        "context": context,
        "question": question,
        "answers": {"text": texts, "answer_start": starts},
        "is_impossible": impossible,
    }


def read_squad(path: str | Path, version_2: bool, labelled: bool = True) -> list[dict[str, Any]]:
    """Read a SQuAD JSON file into one dict per question, in file order.

    Args:
        path: ``train-v1.1.json``, ``dev-v2.0.json``, ... in the official layout.
        version_2: True for SQuAD v2.0 (every question must carry ``is_impossible``).
        labelled: False for a test file (the hidden test set's format): ``answers`` and ``is_impossible`` are
            neither required nor read, and every question comes back with empty answers.

    Returns:
        Dicts with ``id``, ``title``, ``context``, ``question``, ``answers`` (``{"text": [...],
        "answer_start": [...]}``, empty for unanswerable questions) and ``is_impossible``.

    Raises:
        DataFormatError: file missing, not UTF-8, invalid JSON, a missing key, no questions, an answerable question
            without answers, or an ``answer_start`` that does not point at the answer text in the context.
            Question-level errors name the line where the question's id appears in the raw file.
    """
    path = Path(path)
    text, doc = _load_json(path)
    ck = _Checker(path, text)
    articles = ck.get(doc, "data", list, "the top-level object")
    examples: list[dict[str, Any]] = []
    seen: set[str] = set()
    for a, article in enumerate(articles):
        title = ck.get(article, "title", str, f"article {a}")
        paragraphs = ck.get(article, "paragraphs", list, f"article {a} ({title!r})")
        for p, para in enumerate(paragraphs):
            where = f"paragraph {p} of article {title!r}"
            context = ck.get(para, "context", str, where)
            for q, qa in enumerate(ck.get(para, "qas", list, where)):
                ex = _read_question(ck, qa, context, title, f"question {q} of {where}", version_2, labelled)
                if ex["id"] in seen:
                    raise ck.error(ex["id"], f"duplicate question id {ex['id']!r}")
                seen.add(ex["id"])
                examples.append(ex)
    if not examples:
        raise DataFormatError(path, None, "no questions found ('data' is empty)")
    logger.debug("read %d questions from %d articles in %s", len(examples), len(articles), path)
    return examples


def split_squad_by_article(
    examples: list[dict[str, Any]], dev_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split questions into train and dev by whole article (title), deterministically.

    Used to carve a training set out of dev-v1.1 for the offline demo: no article's context appears in both parts.

    Args:
        examples: questions as returned by :func:`read_squad`.
        dev_fraction: share of the articles that go to dev, in (0, 1); at least one article goes to each side.
        seed: seed of the shuffle of the sorted article titles.

    Returns:
        ``(train, dev)``, each in the original question order.

    Raises:
        ValueError: ``dev_fraction`` outside (0, 1), or fewer than two articles.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    titles = sorted({ex["title"] for ex in examples})
    if len(titles) < 2:
        raise ValueError(f"need at least two articles to split, got {len(titles)}")
    random.Random(seed).shuffle(titles)
    n_dev = min(max(1, round(dev_fraction * len(titles))), len(titles) - 1)
    dev_titles = set(titles[:n_dev])
    train = [ex for ex in examples if ex["title"] not in dev_titles]
    dev = [ex for ex in examples if ex["title"] in dev_titles]
    return train, dev
