"""Turn a task's official files into tokenised ``datasets.Dataset`` splits (reads the files, writes nothing).

The held-out slice used for checkpoint selection is cut from *train*, never from dev, so reported dev numbers
are not selection-biased. SQuAD questions are held out by whole paragraph, so no context is seen on both sides of
the cut.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from effbert.data import glue, qa_features, squad
from effbert.data.fingerprint import fingerprint
from effbert.data.sources import source_path
from effbert.data.tasks import TaskSpec, get_task
from effbert.params import DataParams
from effbert.tracking import path_digest

log = logging.getLogger(__name__)


def split_heldout(
    examples: Sequence[dict[str, Any]],
    fraction: float,
    max_heldout: int,
    seed: int,
    group_key: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``examples`` into (train, heldout) with a seeded shuffle.

    Args:
        examples: parsed training examples.
        fraction: share of examples to hold out (capped by ``max_heldout``; at least one).
        seed: shuffle seed.
        group_key: when set (``"context"`` for SQuAD), whole groups are held out together.

    Returns:
        (train, heldout), each in the original file order.
    """
    if len(examples) < 2:
        raise ValueError(f"need at least 2 training examples to hold some out, got {len(examples)}")
    target = max(1, min(max_heldout, round(fraction * len(examples))))
    rng = random.Random(seed)
    groups: dict[Any, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex[group_key] if group_key else i, []).append(i)
    order = list(groups)
    rng.shuffle(order)
    held: set[int] = set()
    for key in order:
        if len(held) >= target:
            break
        held.update(groups[key])
    if len(held) == len(examples):
        raise ValueError("the held-out slice would take every training example; lower data.heldout_fraction")
    train = [ex for i, ex in enumerate(examples) if i not in held]
    heldout = [ex for i, ex in enumerate(examples) if i in held]
    return train, heldout


def subsample(examples: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded random subset of at most ``limit`` examples, in file order (None = all)."""
    if limit is None or limit >= len(examples):
        return examples
    keep = set(random.Random(seed).sample(range(len(examples)), limit))
    return [ex for i, ex in enumerate(examples) if i in keep]


def tokenize_pairs(examples: list[dict[str, Any]], tokenizer: Any, max_seq_length: int, fp: str) -> Any:
    """GLUE examples (idx, text_a, text_b, label) -> Dataset with input_ids/token_type_ids/attention_mask.

    Pairs are truncated longest-first to ``max_seq_length``; padding is left to the batch collator.
    """
    import datasets

    rows = [{**ex, "text_b": ex.get("text_b") or "", "label": ex.get("label")} for ex in examples]
    has_pair = any(ex.get("text_b") for ex in examples)

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        second = batch["text_b"] if has_pair else None
        return dict(tokenizer(batch["text_a"], second, truncation=True, max_length=max_seq_length))

    raw = datasets.Dataset.from_list(rows)
    if all(r["label"] is None for r in rows):
        raw = raw.remove_columns([c for c in ("label", "label_text") if c in raw.column_names])
    return raw.map(encode, batched=True, new_fingerprint=fp, desc="tokenise")


def as_dataset(rows: list[dict[str, Any]], fp: str) -> Any:
    """Plain rows as a Dataset with a deterministic fingerprint."""
    import datasets

    return datasets.Dataset.from_list(rows).flatten_indices(new_fingerprint=fp)


def tokenize_squad(
    examples: list[dict[str, Any]], tokenizer: Any, *, windows: qa_features.Windows, for_training: bool, fp: str
) -> Any:
    """SQuAD examples -> sliding-window features (training features carry start/end positions)."""
    import datasets

    prepare: Callable[..., dict[str, list[Any]]] = (
        qa_features.prepare_train_features if for_training else qa_features.prepare_eval_features
    )
    raw = datasets.Dataset.from_list(examples)
    return raw.map(
        lambda batch: prepare(batch, tokenizer, windows),
        batched=True,
        remove_columns=raw.column_names,
        new_fingerprint=fp,
        desc="windows",
    )


def _read_split(data: DataParams, root: Path, task: str, split: str, labelled: bool) -> list[dict[str, Any]]:
    spec = get_task(task)
    path = source_path(data, root, task, split)
    if spec.is_squad:
        return squad.read_squad(path, version_2=task == "squad_v2", labelled=labelled)
    return glue.read_glue_split(task, path, labelled=labelled)


def _tokenize_rows(
    spec: TaskSpec, data: DataParams, rows: list[dict[str, Any]], tokenizer: Any, base_fp: list[Any], name: str
) -> dict[str, Any]:
    """One evaluated split's datasets: SQuAD gives ``<name>_examples`` beside the window features ``<name>``."""
    if not spec.is_squad:
        return {name: tokenize_pairs(rows, tokenizer, data.max_seq_length, fingerprint(base_fp, name))}
    return {
        f"{name}_examples": as_dataset(rows, fingerprint(base_fp, name, "examples")),
        name: tokenize_squad(
            rows, tokenizer, windows=squad_windows(data), for_training=False, fp=fingerprint(base_fp, name)
        ),
    }


def squad_windows(data: DataParams) -> qa_features.Windows:
    """SQuAD's sliding windows from the ``data`` params (``doc_stride`` or ``window_overlap``)."""
    return qa_features.Windows(
        max_seq_length=data.max_seq_length,
        max_query_length=data.max_query_length,
        doc_stride=data.doc_stride,
        overlap=data.window_overlap,
    )


def prepare_task(
    data: DataParams, root: Path, task: str, tokenizer: Any, tokenizer_name: str, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read every split of ``task``, cut the held-out slice from train, tokenise.

    Args:
        data: the ``data`` params section (folders, caps, held-out slice, sequence lengths).
        root: the project root the data folders are relative to.
        task: task id.
        tokenizer: the teacher's tokenizer.
        tokenizer_name: its params name (``finetune_teacher.model``), recorded in ``meta``.
        seed: the held-out cut's and subsampling's seed.

    Returns:
        (datasets by split name, meta record: counts, labels, tokenizer, sha256 of every source file read).
    """
    spec = get_task(task)
    base_fp = [task, seed, data.model_dump(mode="json"), tokenizer_name]
    sources: dict[str, str] = {}

    def read(split: str, labelled: bool = True) -> list[dict[str, Any]]:
        path = source_path(data, root, task, split)
        sources[split] = path_digest(path) if path.is_file() else ""
        return _read_split(data, root, task, split, labelled)

    train_all = read("train")
    group = "context" if spec.is_squad else None
    train, heldout = split_heldout(train_all, data.heldout_fraction, data.max_heldout_examples, seed, group)
    train = subsample(train, data.train_limit(task), seed)
    evals = {"heldout": heldout}
    for split in spec.dev_splits:
        rows = read(split)
        evals[split] = rows[: data.max_eval_examples] if data.max_eval_examples else rows
    out: dict[str, Any] = {}
    if spec.is_squad:
        fp = fingerprint(base_fp, "train")
        out["train"] = tokenize_squad(train, tokenizer, windows=squad_windows(data), for_training=True, fp=fp)
        for name, rows in evals.items():
            out.update(_tokenize_rows(spec, data, rows, tokenizer, base_fp, name))
    else:
        for name, rows in {"train": train, **evals}.items():
            out.update(_tokenize_rows(spec, data, rows, tokenizer, base_fp, name))
    for split in spec.test_splits:
        if not source_path(data, root, task, split).is_file():
            log.info("%s: no %s file, skipping (only needed for test-set predictions)", task, split)
            continue
        out.update(_tokenize_rows(spec, data, read(split, labelled=False), tokenizer, base_fp, split))
    meta = {
        "task": task,
        "kind": spec.kind,
        "labels": list(spec.labels),
        "tokenizer": tokenizer_name,
        "counts": {name: len(ds) for name, ds in out.items()},
        "examples": {"train": len(train), **{name: len(rows) for name, rows in evals.items()}},
        "source_sha256": sources,
    }
    return out, meta
