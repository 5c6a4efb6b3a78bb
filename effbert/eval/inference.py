"""Batched forward passes over a tokenised Dataset, on CUDA when present (no file or tracking I/O).

:func:`padded_batches` is the one batching loop: :func:`predict_logits` runs a model over its batches, and the ONNX
export traces and checks its graph on them (``complete=True``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def padded_batches(
    dataset: Any, tokenizer: Any, batch_size: int, *, complete: bool = False
) -> Iterator[dict[str, Any]]:
    """The model inputs of ``dataset`` in row order, ``batch_size`` rows at a time, padded per batch.

    Args:
        dataset: a tokenised ``datasets.Dataset``; only its :data:`MODEL_INPUTS` columns are used.
        tokenizer: its tokenizer (``tokenizer.pad`` pads with its pad token and returns torch tensors).
        batch_size: rows per batch (the last batch may be shorter).
        complete: also give ``attention_mask`` (ones) and ``token_type_ids`` (zeros) when the data has none, as a
            graph with fixed inputs (the ONNX export) needs.

    Yields:
        The padded ``(B, T)`` tensors by input name, in the order ``tokenizer.pad`` returns them.
    """
    import torch

    rows = dataset.select_columns([c for c in MODEL_INPUTS if c in dataset.column_names])
    for start in range(0, len(rows), batch_size):
        batch = dict(tokenizer.pad(rows[start : start + batch_size], return_tensors="pt"))
        if complete:
            batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
            batch.setdefault("token_type_ids", torch.zeros_like(batch["input_ids"]))
        yield batch


def predict_logits(
    model: Any, dataset: Any, tokenizer: Any, batch_size: int, device: str, *, bf16: bool = False
) -> list[np.ndarray]:
    """Run ``model`` over ``dataset`` in row order; returns one array per output head (fp32).

    Sequence classification gives ``[logits (n, num_labels)]``; span QA gives ``[start (n, L), end (n, L)]``.
    Rows are padded per batch with the tokenizer's pad token (:func:`padded_batches`); with ``bf16`` the forward
    passes run under bf16 autocast (`effbert.compute.autocast`).
    """
    import torch
    from tqdm.auto import tqdm

    from effbert.compute import autocast

    model = model.to(device).eval()
    outputs: list[list[np.ndarray]] = []
    batches = padded_batches(dataset, tokenizer, batch_size)
    with torch.inference_mode(), autocast(bf16, device):
        for enc in tqdm(batches, total=len(range(0, len(dataset), batch_size)), desc="predict", leave=False):
            out = model(**{k: v.to(device) for k, v in enc.items()})
            heads = [out.start_logits, out.end_logits] if hasattr(out, "start_logits") else [out.logits]
            if not outputs:
                outputs = [[] for _ in heads]
            for acc, head in zip(outputs, heads, strict=True):
                acc.append(head.float().cpu().numpy())
    return [np.concatenate(acc) for acc in outputs]
