"""Readers for GLUE TSV files in the layout the official GLUE download script writes.

Every file is split on ``"\\n"`` and every line on ``"\\t"`` only: no csv quote handling, because SST-2, MRPC and
RTE contain unbalanced ``"`` characters that belong to the text. Text fields are returned verbatim (SST-2 sentences
keep their trailing space). Labels are checked against the fixed label list of :mod:`effbert.data.tasks`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert.data.tasks import AX_FOLDER, TaskSpec, get_task
from effbert.data.textio import read_utf8
from effbert.errors import DataFormatError, ParamsError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Layout:
    """Header names of the text and label columns of one task (test files use the same text columns)."""

    text_a: str
    text_b: str | None
    label: str | None


_LAYOUTS: dict[str, _Layout] = {
    "cola": _Layout("sentence", None, "label"),  # train/dev have no header: see _COLA_COLUMNS
    "sst2": _Layout("sentence", None, "label"),
    "mrpc": _Layout("#1 String", "#2 String", "Quality"),
    "stsb": _Layout("sentence1", "sentence2", "score"),
    "qqp": _Layout("question1", "question2", "is_duplicate"),
    "mnli": _Layout("sentence1", "sentence2", "gold_label"),
    "qnli": _Layout("question", "sentence", "label"),
    "rte": _Layout("sentence1", "sentence2", "label"),
    "wnli": _Layout("sentence1", "sentence2", "label"),
    "ax": _Layout("sentence1", "sentence2", None),
}

# CoLA train/dev.tsv: no header, columns source, label, original mark, sentence.
_COLA_COLUMNS = ("source", "label", "mark", "sentence")
# Test files carry the GLUE server's row id in ``index`` (QQP's test.tsv calls it ``id``).
_INDEX_COLUMNS = ("index", "id")


def _resolve_task(task: str) -> tuple[str, TaskSpec]:
    name = task.lower()
    spec = get_task("mnli" if name == "ax" else name)
    if spec.folder is None:
        raise ParamsError(f"task {task!r} is not a GLUE task; read SQuAD files with effbert.data.squad.read_squad")
    return name, spec


def glue_split_path(glue_dir: str | Path, task: str, split: str) -> Path:
    """Path of one split in a GLUE download (``glue_dir/SST-2/dev.tsv``).

    Args:
        glue_dir: the folder the GLUE download script wrote (holding ``SST-2/``, ``MNLI/``, ``diagnostic/``...).
        task: task id (``sst2``); ``ax`` is the diagnostic set, whose only split is ``test``.
        split: ``train``, a key of ``spec.dev_splits`` or a key of ``spec.test_splits``.

    Returns:
        The normalised path (MNLI's ``test_ax`` resolves to ``glue_dir/diagnostic/diagnostic.tsv``).

    Raises:
        ParamsError: unknown task or split.
    """
    if task.lower() == "ax":
        if split != "test":
            raise ParamsError(f"task 'ax' has only the split 'test', not {split!r}")
        return Path(glue_dir) / AX_FOLDER / "diagnostic.tsv"
    spec = get_task(task.lower())
    files = {"train": spec.train_file, **spec.dev_splits, **spec.test_splits}
    if split not in files:
        raise ParamsError(f"task {task!r} has no split {split!r}; known splits: {' '.join(files)}")
    folder = Path(glue_dir) / spec.folder if spec.folder is not None else Path(glue_dir)
    return Path(os.path.normpath(folder / files[split]))


def _read_lines(path: Path, task: str) -> list[str]:
    """Decode ``path`` as UTF-8 and return its lines without BOM, ``\\r`` or trailing blank lines."""
    if not path.is_file():
        raise DataFormatError(path, None, f"{task} data file not found (expected {path})")
    text = read_utf8(path)
    lines = [ln.removesuffix("\r") for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataFormatError(path, 1, f"empty file, expected {task} data")
    return lines


def _column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise DataFormatError(path, 1, f"missing column {names[0]!r} in header (found: {', '.join(header)})")


def _parse_label(value: str, spec: TaskSpec, path: Path, lineno: int) -> int | float:
    if spec.kind == "regression":
        try:
            score = float(value)
        except ValueError:
            raise DataFormatError(path, lineno, f"score {value!r} is not a float") from None
        if not math.isfinite(score):
            raise DataFormatError(path, lineno, f"score {value!r} is not a finite number")
        return score
    if value not in spec.labels:
        allowed = ", ".join(repr(lab) for lab in spec.labels)
        raise DataFormatError(path, lineno, f"unknown label {value!r}; allowed labels: {allowed}")
    return spec.labels.index(value)


def read_glue_split(task: str, path: str | Path, labelled: bool = True) -> list[dict[str, Any]]:
    """Read one GLUE split file in the official layout.

    Args:
        task: task id (``cola``, ``sst2``, ``mrpc``, ``stsb``, ``qqp``, ``mnli``, ``qnli``, ``rte``, ``wnli``)
            or ``ax`` for the diagnostic set (MNLI label list, never labelled).
        path: the TSV file.
        labelled: True for train/dev files; False for test files, which must carry an ``index`` column.

    Returns:
        One dict per data row in file order: ``idx`` (0-based row order, or the ``index`` value of a test file),
        ``text_a``, ``text_b`` (None for single-sentence tasks), ``label`` (class id, float score for STS-B, or
        None when ``labelled`` is False) and ``label_text`` (the label as the file spells it, e.g. ``5.000``; None
        when unlabelled), which dev predictions files repeat verbatim.

    Raises:
        ParamsError: unknown task, a SQuAD task, or ``labelled=True`` for AX.
        DataFormatError: the file is missing, empty, not UTF-8, lacks a column, has a short row, an unknown label
            or a score that is not a float; the message starts with ``path:line:``.
    """
    name, spec = _resolve_task(task)
    if name == "ax" and labelled:
        raise ParamsError("the AX diagnostic set has no labels; read it with labelled=False")
    layout = _LAYOUTS[name]
    path = Path(path)
    lines = _read_lines(path, task)

    if name == "cola" and labelled:
        header, first = list(_COLA_COLUMNS), 0  # official CoLA train/dev files have no header row
    else:
        header, first = lines[0].split("\t"), 1
    a_col = _column(header, (layout.text_a,), path)
    b_col = _column(header, (layout.text_b,), path) if layout.text_b is not None else None
    label_col = _column(header, (layout.label,), path) if labelled and layout.label is not None else None
    index_col = None if labelled else _column(header, _INDEX_COLUMNS, path)

    rows: list[dict[str, Any]] = []
    n_long = 0
    for offset, line in enumerate(lines[first:]):
        lineno = first + offset + 1
        fields = line.split("\t")
        if len(fields) < len(header):
            raise DataFormatError(
                path, lineno, f"expected {len(header)} tab-separated fields ({', '.join(header)}), found {len(fields)}"
            )
        n_long += len(fields) > len(header)
        if index_col is None:
            idx = len(rows)
        else:
            try:
                idx = int(fields[index_col])
            except ValueError:
                raise DataFormatError(path, lineno, f"index {fields[index_col]!r} is not an integer") from None
        label = _parse_label(fields[label_col], spec, path, lineno) if label_col is not None else None
        rows.append(
            {
                "idx": idx,
                "text_a": fields[a_col],
                "text_b": fields[b_col] if b_col is not None else None,
                "label": label,
                "label_text": fields[label_col] if label_col is not None else None,
            }
        )
    if n_long:
        logger.warning("%s: %d rows have more fields than the header; extra fields ignored", path, n_long)
    if not rows:
        raise DataFormatError(path, len(lines), f"no data rows after the header in {task} file")
    logger.debug("read %d %s rows from %s", len(rows), task, path)
    return rows
