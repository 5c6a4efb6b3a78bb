"""Batched forward passes over a tokenised Dataset, on CUDA when present (no file or tracking I/O)."""

from __future__ import annotations

from typing import Any

import numpy as np

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def predict_logits(model: Any, dataset: Any, tokenizer: Any, batch_size: int, device: str) -> list[np.ndarray]:
    """Run ``model`` over ``dataset`` in row order; returns one array per output head.

    Sequence classification gives ``[logits (n, num_labels)]``; span QA gives ``[start (n, L), end (n, L)]``.
    Rows are padded per batch with the tokenizer's pad token.
    """
    import torch
    from tqdm.auto import tqdm

    columns = [c for c in MODEL_INPUTS if c in dataset.column_names]
    rows = dataset.select_columns(columns)
    model = model.to(device).eval()
    outputs: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), desc="predict", leave=False):
            batch = rows[start : start + batch_size]
            enc = tokenizer.pad(batch, return_tensors="pt")
            out = model(**{k: v.to(device) for k, v in enc.items()})
            heads = [out.start_logits, out.end_logits] if hasattr(out, "start_logits") else [out.logits]
            if not outputs:
                outputs = [[] for _ in heads]
            for acc, head in zip(outputs, heads, strict=True):
                acc.append(head.float().cpu().numpy())
    return [np.concatenate(acc) for acc in outputs]
