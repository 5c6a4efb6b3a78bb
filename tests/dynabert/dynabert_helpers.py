"""Tiny inputs for DynaBERT's training and evaluation tests: a 4-head BERT classifier, seeded token rows whose label
is whether token 7 occurs, the ``dynabert`` section at test size, and a saved model directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import torch

from effbert.data.prepared import TaskRows
from effbert.params import DynaBertParams, MethodTraining
from tests.conftest import tiny_bert_classifier
from tests.export.export_helpers import tokenizer


def tiny_teacher() -> Any:
    """The seeded tiny BERT classifier with 4 heads of size 4 (FFN 32, 4 layers, vocabulary 50)."""
    model = tiny_bert_classifier(num_attention_heads=4)
    model.config.id2label, model.config.label2id = {0: "0", 1: "1"}, {"0": 0, "1": 1}
    return model


def token_rows(count: int, seed: int) -> Any:
    """``count`` seeded rows of 4-20 tokens from 1..49; label 1 when token 7 occurs."""
    generator = torch.Generator().manual_seed(seed)
    rows: dict[str, list[Any]] = {"idx": [], "input_ids": [], "token_type_ids": [], "attention_mask": [], "label": []}
    for i in range(count):
        length = int(torch.randint(4, 21, (1,), generator=generator))
        ids = torch.randint(1, 50, (length,), generator=generator).tolist()
        rows["idx"].append(i)
        rows["input_ids"].append(ids)
        rows["token_type_ids"].append([0] * length)
        rows["attention_mask"].append([1] * length)
        rows["label"].append(int(7 in ids))
    return datasets.Dataset.from_dict(rows)


def task_rows() -> TaskRows:
    """48 training rows and a 16-row held-out slice."""
    return TaskRows(token_rows(48, 1), token_rows(16, 2))


def small_params(widths: list[float] | None = None, depths: list[float] | None = None) -> DynaBertParams:
    """Both phases: 1 epoch of 6 steps at batch 8, held-out evaluation every 3 steps."""
    phase = MethodTraining(learning_rate=1e-3, epochs=1.0, batch_size=8, eval_batch_size=16, eval_steps=3)
    return DynaBertParams(
        widths=widths or [1.0, 0.5],
        depths=depths or [1.0, 0.5],
        importance_examples=8,
        width=phase,
        depth=phase,
    )


def saved_model(model: Any, directory: Path, grid: list[list[float]]) -> Path:
    """``model`` saved as the ``dynabert`` stage writes it: weights, tokenizer, ``dynabert.json``."""
    model.config.dynabert_grid = grid
    model.save_pretrained(str(directory))
    tokenizer().save_pretrained(str(directory))
    record = {"widths": sorted({w for w, _ in grid}), "depths": sorted({d for _, d in grid}), "grid": grid}
    (directory / "dynabert.json").write_text(json.dumps(record), encoding="utf-8")
    return directory
