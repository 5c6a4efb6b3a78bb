"""Materialise datasets-hub data as files in the official GLUE, SQuAD and raw-text layouts.

When ``data.glue_dir``, ``data.squad_dir`` or ``data.corpus`` is null, :func:`fetch` loads the hub data once and
writes it where the readers of :mod:`effbert.data.glue`, :mod:`effbert.data.squad` and :mod:`effbert.data.corpus`
expect a local download, so the pipeline keeps a single code path and DVC can hash the files::

    <out_root>/glue/<Folder>/train.tsv, dev.tsv, test.tsv  (MNLI: dev_matched.tsv, dev_mismatched.tsv,
                                                            test_matched.tsv, test_mismatched.tsv)
    <out_root>/glue/diagnostic/diagnostic.tsv               (AX, fetched with MNLI)
    <out_root>/squad/train-v1.1.json, dev-v1.1.json, train-v2.0.json, dev-v2.0.json
    <out_root>/corpus/<n>-<name>.raw                        (one file per data.corpus_hub source)
    <out_root>/SOURCE.json                                  (hub ids, versions, fingerprints, data files)
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from effbert.data.glue import glue_split_path
from effbert.data.tasks import TASKS, get_task
from effbert.errors import DataFormatError

logger = logging.getLogger(__name__)

_BATCH = 10_000
# Characters that would break a TSV row: tab, and everything str.splitlines() treats as a line end.
_BREAKS = re.compile("[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@dataclass(frozen=True)
class _Format:
    """Hub text fields, the header names they go to, and the official train/dev and test headers."""

    fields: tuple[str, str | None]
    texts: tuple[str, str | None]
    train: tuple[str, ...]
    test: tuple[str, ...]


_PAIR = ("sentence1", "sentence2")
_QQP = ("question1", "question2")
_QNLI = ("question", "sentence")
_MRPC = ("#1 String", "#2 String")
_NLI = ("premise", "hypothesis")
_STSB = ("index", "genre", "filename", "year", "old_index", "source1", "source2", *_PAIR)
_MNLI = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse")
_MNLI_ALL = (*_MNLI, "sentence1_parse", "sentence2_parse", *_PAIR)
_ONE: tuple[str, None] = ("sentence", None)
_FORMATS: dict[str, _Format] = {
    "cola": _Format(_ONE, _ONE, ("source", "label", "mark", "sentence"), ("index", "sentence")),
    "sst2": _Format(_ONE, _ONE, ("sentence", "label"), ("index", "sentence")),
    "mrpc": _Format(_PAIR, _MRPC, ("Quality", "#1 ID", "#2 ID", *_MRPC), ("index", "#1 ID", "#2 ID", *_MRPC)),
    "stsb": _Format(_PAIR, _PAIR, (*_STSB, "score"), _STSB),
    "qqp": _Format(_QQP, _QQP, ("id", "qid1", "qid2", *_QQP, "is_duplicate"), ("id", *_QQP)),
    "mnli": _Format(_NLI, _PAIR, (*_MNLI_ALL, "label1", "gold_label"), _MNLI_ALL),
    "qnli": _Format(_QNLI, _QNLI, ("index", *_QNLI, "label"), ("index", *_QNLI)),
    "rte": _Format(_PAIR, _PAIR, ("index", *_PAIR, "label"), ("index", *_PAIR)),
    "wnli": _Format(_PAIR, _PAIR, ("index", *_PAIR, "label"), ("index", *_PAIR)),
    "ax": _Format(_NLI, _PAIR, (), ("index", *_PAIR)),
}
_LABEL_COLUMNS = frozenset({"label", "Quality", "score", "is_duplicate", "label1", "gold_label"})
# Hub ClassLabel names -> official label strings (names not listed must already be official).
_ALIASES: dict[str, dict[str, str]] = {
    "cola": {"unacceptable": "0", "acceptable": "1"},
    "sst2": {"negative": "0", "positive": "1"},
    "mrpc": {"not_equivalent": "0", "equivalent": "1"},
    "qqp": {"not_duplicate": "0", "duplicate": "1"},
    "wnli": {"not_entailment": "0", "entailment": "1"},
}
# Hub split name -> split name of effbert.data.glue.glue_split_path.
_SPLITS = {"train": "train", "validation": "dev", "test": "test"}
_MNLI_SPLITS = {"train": "train", "validation_matched": "dev", "validation_mismatched": "dev_mm"}
_MNLI_SPLITS |= {"test_matched": "test", "test_mismatched": "test_mm"}


@contextmanager
def _atomic(path: Path) -> Iterator[TextIO]:
    """Open a temp file next to ``path`` for writing; rename it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rows(split: Any) -> Iterator[Mapping[str, Any]]:
    """Rows of a ``datasets.Dataset`` (read in batches) or of any iterable of dicts."""
    if hasattr(split, "iter") and hasattr(split, "column_names"):
        for batch in split.iter(batch_size=_BATCH):
            columns = list(batch)
            for i in range(len(batch[columns[0]]) if columns else 0):
                yield {c: batch[c][i] for c in columns}
    else:
        yield from split


def _label_names(splits: Mapping[str, Any]) -> list[str] | None:
    """ClassLabel names of the ``label`` feature of the first split that has one, if any."""
    for split in splits.values():
        feature = (getattr(split, "features", None) or {}).get("label")
        if feature is not None and hasattr(feature, "names"):
            return list(feature.names)
    return None


def _official_labels(task: str, label_names: Sequence[str] | None) -> tuple[str, ...]:
    """Official label string of each hub class index, after checking that the names cover the task's labels."""
    if task == "ax" or not get_task(task).labels:
        return ()
    spec = get_task(task)
    official = tuple(_ALIASES.get(task, {}).get(name, name) for name in label_names or ())
    if label_names is None or sorted(official) != sorted(spec.labels):  # also rejects duplicates
        names = list(label_names) if label_names is not None else "missing"
        raise DataFormatError(
            f"{spec.hub[0]}:{spec.hub[1]}", None, f"hub label names {names} do not map onto {spec.labels}"
        )
    return official


def _score(value: Any) -> str:
    """STS-B score as text: the shortest float32 repr, padded to the official three decimals when exact."""
    short = str(np.float32(value))
    return f"{float(short):.3f}" if round(float(short), 3) == float(short) else short


def _cell(column: str, row: Mapping[str, Any], fmt: _Format, label: str) -> str:
    if column in ("index", "id"):
        return str(row["idx"])
    for text_column, field in zip(fmt.texts, fmt.fields, strict=True):
        if column == text_column and field is not None:
            return _BREAKS.sub(" ", str(row[field]))
    if column in _LABEL_COLUMNS:
        return label
    return "hub" if column == "source" else ""


def _write_split(task: str, rows: Iterable[Mapping[str, Any]], path: Path, labels: tuple[str, ...], test: bool) -> int:
    fmt = _FORMATS[task]
    columns = fmt.test if test else fmt.train
    n = 0
    with _atomic(path) as fh:
        if test or task != "cola":  # official CoLA train/dev files have no header
            fh.write("\t".join(columns) + "\n")
        for n, row in enumerate(rows, 1):
            label = ""
            if not test and task == "stsb":
                label = _score(row["label"])
            elif not test:
                if not 0 <= int(row["label"]) < len(labels):
                    raise DataFormatError(path, n, f"hub label {row['label']!r} outside 0..{len(labels) - 1}")
                label = labels[int(row["label"])]
            fh.write("\t".join(_cell(c, row, fmt, label) for c in columns) + "\n")
    return n


def write_glue_task(
    task: str, splits: Mapping[str, Any], out_dir: Path, label_names: Sequence[str] | None = None
) -> list[Path]:
    """Write the hub splits of one GLUE task as official TSV files under the GLUE root ``out_dir``.

    Args:
        task: task id (``sst2``...), or ``ax`` for the diagnostic set (hub config ``ax``, split ``test``).
        splits: hub split name -> rows (a ``DatasetDict`` or dicts of iterables of row dicts).
        out_dir: GLUE root; files go to ``out_dir/<Folder>/`` (AX: ``out_dir/diagnostic/diagnostic.tsv``).
        label_names: the hub ClassLabel names (index -> name); read from the splits' features when None.

    Returns:
        The paths written, in split order.

    Raises:
        DataFormatError: label names that do not map onto the task's fixed labels, or a label out of range.
    """
    task = task.lower()
    if task not in _FORMATS:
        raise DataFormatError(task, None, f"not a GLUE task; known: {' '.join(_FORMATS)}")
    labels = _official_labels(task, label_names if label_names is not None else _label_names(splits))
    names = {"test": "test"} if task == "ax" else _MNLI_SPLITS if task == "mnli" else _SPLITS
    written: list[Path] = []
    for hub_split, rows in splits.items():
        if hub_split not in names:
            logger.warning("%s: hub split %r has no official file; skipped", task, hub_split)
            continue
        split = names[hub_split]
        path = glue_split_path(out_dir, task, split)
        n = _write_split(task, _rows(rows), path, labels, test=split.startswith("test"))
        logger.info("%s %s: wrote %d rows to %s", task, hub_split, n, path)
        written.append(path)
    return written


def write_squad(examples: Iterable[Mapping[str, Any]], path: Path, version_2: bool) -> None:
    """Write hub SQuAD rows as an official JSON file, grouped by title then context in order of first appearance."""
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for ex in _rows(examples):
        texts, starts = list(ex["answers"]["text"]), list(ex["answers"]["answer_start"])
        if len(texts) != len(starts) or not (texts or version_2):
            problem = "answers and starts differ in number" if texts or starts else "no answer (v1.1 needs one)"
            raise DataFormatError(path, None, f"hub question {ex['id']!r}: {problem}")
        qa: dict[str, Any] = {
            "id": ex["id"],
            "question": ex["question"],
            "answers": [{"text": t, "answer_start": int(s)} for t, s in zip(texts, starts, strict=True)],
        }
        if version_2:
            qa["is_impossible"] = not texts
        articles.setdefault(ex["title"], {}).setdefault(ex["context"], []).append(qa)
    data = [
        {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs.items()]}
        for title, paragraphs in articles.items()
    ]
    with _atomic(path) as fh:
        json.dump({"version": "v2.0" if version_2 else "1.1", "data": data}, fh, ensure_ascii=False)
    n = sum(len(qas) for paragraphs in articles.values() for qas in paragraphs.values())
    logger.info("wrote %d questions in %d articles to %s", n, len(data), path)


def corpus_lines(rows: Iterable[Mapping[str, Any]], source: Mapping[str, Any]) -> Iterator[str]:
    """The raw-text lines of one hub corpus source (``data.corpus_hub`` entry), streamed row by row.

    ``rows: lines`` (WikiText): each row is a line of the raw file (blank rows included). ``documents``
    (Wikipedia): each row is an article; its non-blank lines are written, then a blank line ends the document.
    ``sentences`` (BookCorpus, which has no book boundaries): each row is a line; a blank line after every
    ``lines_per_document`` rows makes a document, as the official code joins 20 lines.
    """
    field, kind, per_document = source.get("text_field", "text"), source.get("rows", "lines"), 0
    for row in rows:
        text = str(row[field])
        if kind == "lines":
            yield text
        elif kind == "documents":
            yield from (line for line in text.split("\n") if line.strip())
            yield ""
        else:
            yield text.replace("\n", " ")
            per_document += 1
            if per_document == int(source.get("lines_per_document", 20)):
                yield ""
                per_document = 0


def write_corpus(texts: Iterable[str], path: Path) -> None:
    """Join WikiText-style hub rows (one line each, ``""`` for blank lines) back into one raw text file."""
    n = 0
    with _atomic(path) as fh:
        for text in texts:
            fh.write(text if text.endswith("\n") else text + "\n")
            n += 1
    logger.info("wrote %d corpus lines to %s", n, path)


def _describe(key: str, hub: str, config: str | None, ds: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance of one loaded dataset: hub id, builder version, fingerprints and data files."""
    entry: dict[str, Any] = {"key": key, "hub": hub, "config": config, "splits": {}}
    for name, split in ds.items():
        rows, fingerprint = getattr(split, "num_rows", None), getattr(split, "_fingerprint", None)
        entry["splits"][name] = {"num_rows": rows, "fingerprint": fingerprint}
        info = getattr(split, "info", None)
        if info is not None and "version" not in entry:
            entry["version"] = str(info.version) if info.version is not None else None
            entry["builder_name"], entry["config_name"] = info.builder_name, info.config_name
            entry["data_files"] = sorted(str(f) for f in (info.download_checksums or {}))
    return entry


def fetch(
    params_data: Any, tasks: Sequence[str], out_root: Path, load_dataset: Callable[..., Any] | None = None
) -> dict[str, str]:
    """Materialise every null data source of ``params_data`` from the hub under ``out_root``.

    Args:
        params_data: the ``data`` params (model or mapping) with ``glue_dir``, ``squad_dir``, ``corpus``,
            ``corpus_hub`` (sources: ``name`` ``path:config``, ``rows`` layout).
        tasks: task ids of the run; only their GLUE/SQuAD data is fetched (AX comes with ``mnli``).
        out_root: output folder (``data/hub``).
        load_dataset: called as ``load_dataset(path, config)``; ``datasets.load_dataset`` when None.

    Returns:
        Param key -> new local path for each source fetched (``{"glue_dir": "data/hub/glue"}``).
    """
    if load_dataset is None:
        import datasets

        load_dataset = datasets.load_dataset
    loader = load_dataset

    data = dict(params_data)  # a mapping or the pydantic DataParams model
    sources: list[dict[str, Any]] = []

    def load(key: str, hub: str, config: str | None) -> Any:
        logger.info("loading %s (config %s) from the datasets hub", hub, config)
        ds = loader(hub, config)
        sources.append(_describe(key, hub, config, ds))
        return ds

    specs = [get_task(t) for t in tasks]
    out_root = Path(out_root)
    fetched: dict[str, str] = {}
    glue_tasks = [s.name for s in specs if s.folder is not None]
    if data["glue_dir"] is None and glue_tasks:
        for task in [*glue_tasks, "ax"] if "mnli" in glue_tasks else glue_tasks:
            hub, config = (TASKS["mnli"].hub[0], "ax") if task == "ax" else get_task(task).hub
            write_glue_task(task, load(task, hub, config), out_root / "glue")
        fetched["glue_dir"] = (out_root / "glue").as_posix()
    squad_specs = [s for s in specs if s.is_squad]
    if data["squad_dir"] is None and squad_specs:
        for spec in squad_specs:
            ds = load(spec.name, *spec.hub)
            v2 = spec.name == "squad_v2"
            write_squad(ds["train"], out_root / "squad" / spec.train_file, v2)
            write_squad(ds["validation"], out_root / "squad" / spec.dev_splits["dev"], v2)
        fetched["squad_dir"] = (out_root / "squad").as_posix()
    if data["corpus"] is None:
        sources_hub = data["corpus_hub"]
        for i, source in enumerate([{"name": sources_hub}] if isinstance(sources_hub, str) else sources_hub):
            source = dict(source)  # a mapping or the pydantic HubCorpus model
            hub, _, config = str(source["name"]).partition(":")
            ds = load("corpus", hub, config or None)
            path = out_root / "corpus" / f"{i:02d}-{re.sub(r'[^A-Za-z0-9.-]+', '_', hub)}.raw"
            write_corpus(corpus_lines(_rows(ds["train"]), source), path)
        fetched["corpus"] = (out_root / "corpus").as_posix()
    record = {"datasets_version": metadata.version("datasets"), "fetched": fetched, "sources": sources}
    with _atomic(out_root / "SOURCE.json") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return fetched
