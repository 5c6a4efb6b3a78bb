"""Reading a ``prepare_data`` output: its saved splits by name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert.data.tasks import TaskSpec
from effbert.errors import EffbertError


def head_rows(n: int, fraction: float) -> int:
    """How many rows the first ``fraction`` of ``n`` rows is (at least one): the search trains on the start of a
    split."""
    return max(1, math.floor(n * fraction))


def load_split(data_dir: Path, split: str, rows: int | None = None) -> Any:
    """The saved ``datasets.Dataset`` ``split`` of a prepared task (its first ``rows`` rows when given)."""
    import datasets

    path = data_dir / split
    if not (path / "dataset_info.json").is_file():
        raise EffbertError(
            f"{path}: no saved split {split!r} here (is {data_dir} a prepare-data/prepare-corpus output?)"
        )
    data: Any = datasets.load_from_disk(str(path))
    return data if rows is None or rows >= len(data) else data.select(range(rows))


@dataclass(frozen=True)
class EvalSplit:
    """One evaluated split: the model's input features and, for SQuAD, the examples they were cut from."""

    name: str
    features: Any
    examples: Any = None


def eval_splits(spec: TaskSpec, data_dir: Path, names: list[str] | None = None) -> list[EvalSplit]:
    """The prepared splits ``names`` (default: the task's dev splits), with SQuAD's examples beside the features."""
    return [
        EvalSplit(name, load_split(data_dir, name), load_split(data_dir, f"{name}_examples") if spec.is_squad else None)
        for name in (names if names is not None else list(spec.dev_splits))
    ]


@dataclass(frozen=True)
class TaskRows:
    """A task's training rows and the held-out slice it selects on (SQuAD: with the held-out examples)."""

    train: Any
    heldout: Any
    heldout_examples: Any = None

    @classmethod
    def load(cls, data_dir: Path, spec: TaskSpec) -> TaskRows:
        """The ``train``, ``heldout`` (and SQuAD ``heldout_examples``) splits of a prepared task."""
        examples = load_split(data_dir, "heldout_examples") if spec.is_squad else None
        return cls(load_split(data_dir, "train"), load_split(data_dir, "heldout"), examples)


def prepared_train_rows(prepare_data: Path, tasks: list[str]) -> dict[str, int]:
    """Training rows (features: SQuAD windows) of the tasks prepared under ``prepare_data`` (``<task>/meta.json``
    ``counts.train``); a task not prepared there, or without the count, is left out."""
    import json

    rows = {}
    for task in tasks:
        meta = prepare_data / task / "meta.json"
        count = json.loads(meta.read_text(encoding="utf-8")).get("counts", {}).get("train") if meta.is_file() else None
        if isinstance(count, int):
            rows[task] = count
    return rows


def corpus_meta(prepare_corpus: Path) -> dict[str, Any]:
    """The prepared corpus's ``meta.json`` (documents, sequences, tokens, mean length), empty when absent."""
    import json

    meta = prepare_corpus / "meta.json"
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
