"""TinyBERT's augmented training split: a prepared task's ``train`` rows followed by their augmented copies.

Every example's text fields (``text_a``, and ``text_b`` for a pair task; each field in turn, the other one left as
it is) are split into words by the tokenizer's own normaliser and pre-tokeniser (BERT's basic tokenizer: lower-cased
for an uncased model, punctuation split off), given candidates and varied by `effbert.methods.tinybert.augment`; a
variant is written as its words joined by spaces and tokenised exactly as ``prepare_data`` tokenises (same tokenizer,
``data.max_seq_length``), its other columns (``idx``, label) copied from the example. The candidates come from the
pre-trained teacher: its masked-LM head when the checkpoint has one (`augmentation_teacher`), its input embeddings
otherwise. Each example draws from its own ``random.Random`` seeded by the run's seed and its row number, so a row's
variants do not depend on how many rows are augmented. Span tasks (SQuAD) are not augmented (the paper distils on the
original set).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from typing import Any

import torch

from effbert.errors import EffbertError
from effbert.methods.tinybert.augment import MaskedLM, augment_words, candidate_lists
from effbert.params import TinyBertAugmentParams

log = logging.getLogger(__name__)

__all__ = [
    "TEXT_FIELDS",
    "augment_examples",
    "augmentation_teacher",
    "augmented_split",
    "rows_digest",
    "split_words",
]

TEXT_FIELDS = ("text_a", "text_b")
"""The text columns of a prepared GLUE split (``text_b`` is empty for a single-sentence task)."""

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
"""The tokenised columns, recomputed for a variant."""


def split_words(tokenizer: Any, text: str) -> list[str]:
    """The words of ``text`` as BERT's basic tokenizer splits them: the fast tokenizer's normaliser (lower-casing
    and accent stripping for an uncased model) then its pre-tokeniser (whitespace and punctuation)."""
    backend = tokenizer.backend_tokenizer
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    if backend.pre_tokenizer is None:
        return text.split()
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def augmentation_teacher(source: str, batch_size: int) -> tuple[torch.Tensor, MaskedLM | None]:
    """The pre-trained teacher's input embeddings and, when its checkpoint has a masked-LM head, that head as a
    `MaskedLM` running ``batch_size`` masked sentences per forward (None when the head would be newly initialised,
    e.g. the demo's sentence-embedding MiniLM)."""
    from transformers import AutoModel, AutoModelForMaskedLM

    try:
        model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except ValueError:  # a model family without a masked-LM class
        model, info = AutoModel.from_pretrained(source), {"missing_keys": ["(no masked-LM class)"]}
    embeddings = model.get_input_embeddings().weight.detach()
    if info["missing_keys"]:
        log.info("augmentation: %s has no masked-LM head; every word gets embedding neighbours", source)
        return embeddings, None
    model.eval()

    def mlm(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = batch["input_ids"].shape[0]
        with torch.no_grad():
            parts = [
                model(**{k: v[i : i + batch_size] for k, v in batch.items()}).logits for i in range(0, rows, batch_size)
            ]
        return torch.cat(parts)

    log.info("augmentation: masked-LM candidates from %s (words of one WordPiece)", source)
    return embeddings, mlm


def augment_examples(
    rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    embeddings: torch.Tensor,
    mlm: MaskedLM | None,
    hp: TinyBertAugmentParams,
    seed: int,
) -> list[dict[str, Any]]:
    """The variants of ``rows`` (text columns only, no model inputs), example by example, field by field: up to
    ``hp.variants`` per non-empty field (`augment_words` with ``hp.candidates`` and ``hp.replace_prob``)."""
    out: list[dict[str, Any]] = []
    for number, row in enumerate(rows):
        rng = random.Random(f"tinybert-augment:{seed}:{number}")
        for field in TEXT_FIELDS:
            text = row.get(field)
            if not text:
                continue
            words = split_words(tokenizer, text)
            candidates = candidate_lists(words, tokenizer, embeddings, hp.candidates, mlm)
            for variant in augment_words(words, candidates, hp.variants, hp.replace_prob, rng):
                out.append({**row, field: " ".join(variant)})
        if (number + 1) % 500 == 0:
            log.info("augmentation: %d examples -> %d variants", number + 1, len(out))
    return out


def rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    """sha256 of the rows' columns as canonical JSON (the augmentation's content, independent of Arrow)."""
    text = json.dumps(list(rows), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def augmented_split(
    train: Any,
    tokenizer: Any,
    embeddings: torch.Tensor,
    mlm: MaskedLM | None,
    hp: TinyBertAugmentParams,
    *,
    seed: int,
    max_seq_length: int,
) -> tuple[Any, dict[str, Any]]:
    """``train`` (a prepared GLUE training split) followed by the variants of its first ``hp.max_examples`` rows
    (all when null), tokenised like ``prepare_data``; and the counts and digest for ``meta.json``.

    Raises:
        EffbertError: the split has no ``text_a`` column (SQuAD's window features: span tasks are not augmented).
    """
    import datasets

    from effbert.data.fingerprint import fingerprint
    from effbert.data.prepare import tokenize_pairs

    if "text_a" not in train.column_names:
        raise EffbertError("tinybert augmentation: the split has no text_a column (span tasks are not augmented)")
    texts = train.remove_columns([c for c in MODEL_INPUTS if c in train.column_names])
    limit = len(texts) if hp.max_examples is None else min(hp.max_examples, len(texts))
    variants = augment_examples(list(texts.select(range(limit))), tokenizer, embeddings, mlm, hp, seed)
    digest = rows_digest(variants)
    meta = {
        "original_rows": len(train),
        "augmented_examples": limit,
        "variants": len(variants),
        "rows": len(train) + len(variants),
        "candidates_from": "masked_lm+embeddings" if mlm is not None else "embeddings",
        "variants_sha256": digest,
    }
    if not variants:
        return train, meta
    tokenised = tokenize_pairs(variants, tokenizer, max_seq_length, fingerprint("tinybert-augment", digest))
    combined = datasets.concatenate_datasets([train, tokenised.select_columns(train.column_names).cast(train.features)])
    return combined.flatten_indices(new_fingerprint=fingerprint("tinybert-augment", digest, len(train))), meta
