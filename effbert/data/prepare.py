"""Turn parsed GLUE/SQuAD examples into tokenised ``datasets.Dataset`` splits (no file writing here).

The held-out slice used for checkpoint selection is cut from *train*, never from dev, so reported dev numbers
are not selection-biased. SQuAD questions are held out by whole paragraph, so no context is seen on both sides of the cut.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from effbert.data import qa_features


def fingerprint(*parts: Any) -> str:
    """A deterministic datasets fingerprint from JSON-serialisable parts (keeps saved Arrow bytes stable)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
        raw = raw.remove_columns("label")
    return raw.map(encode, batched=True, new_fingerprint=fp, desc="tokenise")


def as_dataset(rows: list[dict[str, Any]], fp: str) -> Any:
    """Plain rows as a Dataset with a deterministic fingerprint."""
    import datasets

    return datasets.Dataset.from_list(rows).flatten_indices(new_fingerprint=fp)


def tokenize_squad(
    examples: list[dict[str, Any]],
    tokenizer: Any,
    *,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    for_training: bool,
    fp: str,
) -> Any:
    """SQuAD examples -> sliding-window features (training features carry start/end positions)."""
    import datasets

    prepare: Callable[..., dict[str, list[Any]]] = (
        qa_features.prepare_train_features if for_training else qa_features.prepare_eval_features
    )
    raw = datasets.Dataset.from_list(examples)
    return raw.map(
        lambda batch: prepare(batch, tokenizer, max_seq_length, doc_stride, max_query_length),
        batched=True,
        remove_columns=raw.column_names,
        new_fingerprint=fp,
        desc="windows",
    )
