"""The published reference numbers (``paper_results.json``): loading, validation and the rows a report shows.

The JSON holds one entry per (model, source table): EfficientBERT and the baselines it is compared with
(TinyBERT-4, MobileBERT-TINY, BERT-base), each with the data split its numbers are on (``GLUE test``,
``SQuAD v1.1 dev``), its metrics per effbert task (x100, as published), and parameters, FLOPs, latency and speed-up
as published strings with their caveats. Values the references mark [n/a] are absent, never estimated.

Every text a report shows (``source``, ``source_short``, ``notes``, the caveats) cites the papers and their tables
or sections; ``provenance`` alone names the reference notes effbert's copy was taken from (the package's own
provenance check reads it), and no report shows it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from effbert.data.tasks import TASKS
from effbert.errors import EffbertError

PAPER_RESULTS_FILE = "paper_results.json"
"""The package-data file (in ``effbert/report/``) with the published numbers."""

PACKAGE_DATA = ("paper_results.json",)
"""The package data this module reads (a code dependency of the stages that import it: `effbert.code_deps`)."""

MODEL_ORDER: tuple[str, ...] = ("EfficientBERT", "TinyBERT-4", "MobileBERT-TINY", "BERT-base")
"""The reference models a report shows, in the order of its rows."""

_REQUIRED_KEYS = ("id", "model", "split", "source", "source_short", "metrics")
_TEXT_KEYS = (
    "params",
    "flops",
    "latency",
    "latency_caveat",
    "speedup",
    "speedup_caveat",
    "claims_caveat",
    "notes",
    "provenance",
)
_KNOWN_KEYS = frozenset((*_REQUIRED_KEYS, *_TEXT_KEYS, "average", "claims"))
_SHOWN_KEYS = tuple(key for key in (*_REQUIRED_KEYS[1:5], *_TEXT_KEYS) if key != "provenance")
"""The text keys a report shows: they cite papers, never a file."""
_FILE_REFERENCE = re.compile(r"\.md\b|shared/|\.\./")


@dataclass(frozen=True)
class PaperEntry:
    """The published numbers of one model in one source table.

    Attributes:
        id: unique name of the entry (``efficientbert-survey-glue-test``).
        model: one of `MODEL_ORDER`.
        split: the data the metrics are on, e.g. ``GLUE test`` or ``SQuAD v1.1 dev``.
        source: the paper and its table or section (``Jiao et al., TinyBERT, Findings of EMNLP 2020, Table 1``).
        source_short: a few words naming the paper and table, for table labels.
        metrics: task -> metric name -> value (x100, as published).
        params: parameter count as published (``"16M"``), or None.
        flops: FLOPs per sequence as published (``"1.2B"``), or None.
        latency: latency as published (``"103 ms"``), or None.
        latency_caveat: what the latency was measured on, or why it is not comparable.
        speedup: speed-up over BERT-base as published (``"9.4×"``), or None.
        speedup_caveat: what the speed-up was measured on.
        average_name: what the published average is over, or None.
        average: the published average, or None.
        claims: headline claims (``smaller_than_bert_base`` -> ``"6.9×"``).
        claims_caveat: how the claims were measured, as far as known.
        notes: anything else a reader must know to compare the row.
        provenance: where effbert's copy of the numbers was taken from (the project's reference notes), or None;
            never shown in a report.
    """

    id: str
    model: str
    split: str
    source: str
    source_short: str
    metrics: Mapping[str, Mapping[str, float]]
    params: str | None = None
    flops: str | None = None
    latency: str | None = None
    latency_caveat: str | None = None
    speedup: str | None = None
    speedup_caveat: str | None = None
    average_name: str | None = None
    average: float | None = None
    claims: Mapping[str, str] = field(default_factory=dict)
    claims_caveat: str | None = None
    notes: str | None = None
    provenance: str | None = None

    @property
    def label(self) -> str:
        """What the row is, for a table: ``paper, GLUE test (TinyBERT paper, Table 1)``."""
        return f"paper, {self.split} ({self.source_short})"

    @property
    def has_size_or_speed(self) -> bool:
        """Whether the entry publishes parameters, FLOPs, a latency, a speed-up or a headline claim."""
        return any((self.params, self.flops, self.latency, self.speedup, self.claims))


def _fail(where: str, message: str) -> EffbertError:
    return EffbertError(f"{where}: {message}")


def _entry(raw: Any, where: str) -> PaperEntry:
    """One validated entry; ``where`` names the file and the entry for error messages."""
    if not isinstance(raw, dict):
        raise _fail(where, "must be a JSON object")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise _fail(where, f"missing key(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}")
    for key in (*_REQUIRED_KEYS[:5], *_TEXT_KEYS):
        if key in raw and not (isinstance(raw[key], str) and raw[key].strip()):
            raise _fail(where, f"{key} must be a non-empty string")
    for key in _SHOWN_KEYS:
        if key in raw and _FILE_REFERENCE.search(raw[key]):
            raise _fail(where, f"{key} is shown in reports: cite the paper and its table, not a file ({raw[key]!r})")
    if raw["model"] not in MODEL_ORDER:
        raise _fail(where, f"model {raw['model']!r} is not one of {', '.join(MODEL_ORDER)}")
    metrics = raw["metrics"]
    if not isinstance(metrics, dict):
        raise _fail(where, "metrics must be an object task -> metric -> value")
    for task, values in metrics.items():
        if task not in TASKS:
            raise _fail(where, f"metrics: unknown task {task!r}")
        if not isinstance(values, dict) or not values:
            raise _fail(where, f"metrics.{task} must be a non-empty object metric -> value")
        for metric, value in values.items():
            if metric not in TASKS[task].metrics:
                raise _fail(where, f"metrics.{task}.{metric}: {task} reports {', '.join(TASKS[task].metrics)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise _fail(where, f"metrics.{task}.{metric} must be a number, got {value!r}")
    average = raw.get("average")
    if average is not None and not (
        isinstance(average, dict)
        and isinstance(average.get("name"), str)
        and isinstance(average.get("value"), int | float)
        and set(average) == {"name", "value"}
    ):
        raise _fail(where, "average must be {name: string, value: number}")
    claims = raw.get("claims", {})
    if not isinstance(claims, dict) or not all(isinstance(v, str) for v in claims.values()):
        raise _fail(where, "claims must be an object name -> published string")
    return PaperEntry(
        id=raw["id"],
        model=raw["model"],
        split=raw["split"],
        source=raw["source"],
        source_short=raw["source_short"],
        metrics={task: {m: float(v) for m, v in values.items()} for task, values in metrics.items()},
        params=raw.get("params"),
        flops=raw.get("flops"),
        latency=raw.get("latency"),
        latency_caveat=raw.get("latency_caveat"),
        speedup=raw.get("speedup"),
        speedup_caveat=raw.get("speedup_caveat"),
        average_name=average["name"] if average else None,
        average=float(average["value"]) if average else None,
        claims=dict(claims),
        claims_caveat=raw.get("claims_caveat"),
        notes=raw.get("notes"),
        provenance=raw.get("provenance"),
    )


def parse_paper_results(data: Any, source: str = PAPER_RESULTS_FILE) -> list[PaperEntry]:
    """Validate the decoded JSON of a paper-results file.

    Args:
        data: the decoded JSON (an object with an ``entries`` list).
        source: the file name used in error messages.

    Returns:
        The entries, in file order.

    Raises:
        EffbertError: a malformed entry, an unknown task or metric name, a duplicate id (the message names the file
            and the entry).
    """
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise EffbertError(f"{source}: must be an object with an 'entries' list")
    entries: list[PaperEntry] = []
    seen: set[str] = set()
    for position, raw in enumerate(data["entries"]):
        name = raw.get("id", "?") if isinstance(raw, dict) else "?"
        entry = _entry(raw, f"{source}: entries[{position}] ({name})")
        if entry.id in seen:
            raise EffbertError(f"{source}: entries[{position}]: duplicate id {entry.id!r}")
        seen.add(entry.id)
        entries.append(entry)
    return entries


def load_paper_results(path: Path | None = None) -> list[PaperEntry]:
    """Read and validate the published numbers.

    Args:
        path: a paper-results JSON file; None reads the package's ``effbert/report/paper_results.json``.

    Returns:
        The entries, in file order.

    Raises:
        EffbertError: the file is missing, is not JSON, or is malformed (see `parse_paper_results`).
    """
    if path is None:
        resource = resources.files("effbert.report").joinpath(PAPER_RESULTS_FILE)
        text, source = resource.read_text(encoding="utf-8"), f"effbert/report/{PAPER_RESULTS_FILE}"
    else:
        if not path.is_file():
            raise EffbertError(f"{path}: paper results file not found")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise EffbertError(f"{source}:{err.lineno}: not valid JSON: {err.msg}") from None
    return parse_paper_results(data, source)


def _model_rank(entry: PaperEntry) -> int:
    return MODEL_ORDER.index(entry.model)


def rows_for_task(entries: Sequence[PaperEntry], task: str) -> list[PaperEntry]:
    """The entries with published metrics for ``task``, EfficientBERT first (`MODEL_ORDER`), then file order.

    Args:
        entries: from `load_paper_results`.
        task: an effbert task id (``sst2``).

    Returns:
        The matching entries; empty when no source publishes the task.
    """
    return sorted((e for e in entries if task in e.metrics), key=_model_rank)


def size_speed_rows(entries: Sequence[PaperEntry]) -> list[PaperEntry]:
    """The entries that publish a size, FLOPs, a latency, a speed-up or a headline claim, in `MODEL_ORDER`."""
    return sorted((e for e in entries if e.has_size_or_speed), key=_model_rank)


__all__ = [
    "MODEL_ORDER",
    "PAPER_RESULTS_FILE",
    "PaperEntry",
    "load_paper_results",
    "parse_paper_results",
    "rows_for_task",
    "size_speed_rows",
]
