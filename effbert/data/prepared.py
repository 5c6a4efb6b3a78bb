"""Reading a ``prepare_data`` output: its saved splits by name, each checked against the digests its stage wrote.

The stages that save splits (``prepare_data``, ``prepare_corpus``, ``tinybert_augment``) seal their output
(`effbert.integrity.seal`: ``digests.json``, the size and sha256 of every file); :func:`load_split` checks a split's
files against it before it loads them, once per process, and refuses a damaged split in one line naming the file
and the stage to rerun.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert.data.tasks import TaskSpec
from effbert.errors import EffbertError
from effbert.integrity import damage, read_digests, seal

_VERIFIED: set[tuple[str, str]] = set()
"""The (output, split) pairs this process has checked against their digests."""


def seal_splits(out_dir: Path, stage: str) -> None:
    """Seal a stage output that holds saved splits (call it once every file is written; ``stage`` is the stage
    instance, ``prepare_data@sst2``, named in the message of a damaged split)."""
    seal(out_dir, stage=stage)


def check_split(data_dir: Path, split: str) -> None:
    """Refuse a split whose files are missing, cut short or changed since its stage sealed them.

    Raises:
        EffbertError: naming the damaged file and the stage to rerun.
    """
    key = (str(data_dir.resolve()), split)
    if key in _VERIFIED:
        return
    problem = damage(data_dir, split)
    if problem is not None:
        record, _ = read_digests(data_dir)
        stage = str((record or {}).get("stage") or "<the stage that writes it>")
        raise EffbertError(
            f"{problem}: the prepared data in {data_dir} is damaged; rerun the stage that writes it: `effbert run` "
            f"(it removes a damaged output first) or `dvc repro --force {stage}`"
        )
    _VERIFIED.add(key)


def head_rows(n: int, fraction: float) -> int:
    """How many rows the first ``fraction`` of ``n`` rows is (at least one): the search trains on the start of a
    split."""
    return max(1, math.floor(n * fraction))


def load_split(data_dir: Path, split: str, rows: int | None = None) -> Any:
    """The saved ``datasets.Dataset`` ``split`` of a prepared task (its first ``rows`` rows when given), checked
    against its digests first (:func:`check_split`)."""
    import datasets

    path = data_dir / split
    if not (path / "dataset_info.json").is_file():
        raise EffbertError(
            f"{path}: no saved split {split!r} here (is {data_dir} a prepare-data/prepare-corpus output?)"
        )
    check_split(data_dir, split)
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
