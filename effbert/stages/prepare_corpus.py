"""Stage ``prepare_corpus``: the raw-text corpus for task-agnostic distillation, tokenised and packed.

Consecutive sentences of one document are packed into sequences of at most ``data.max_seq_length`` tokens
(``[CLS] sentences... [SEP]``), never crossing a document boundary. This replaces the official code's
one-random-pair-per-article instances, which wasted most of the corpus (reference section 1.1).
Output ``results/prepare_corpus/``: ``corpus/`` (a saved Dataset), ``meta.json``, ``lineage.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.data import corpus, prepare
from effbert.errors import EffbertError
from effbert.models.teacher import load_tokenizer, resolve_source
from effbert.params import Params

log = logging.getLogger(__name__)


def build_corpus(params: Params) -> tuple[Any, dict[str, Any], Path]:
    """Read, tokenise and pack the corpus; returns (dataset, meta, source path)."""
    import datasets

    if params.data.corpus is None:
        raise EffbertError("data.corpus is null: run `effbert fetch-data` first to materialise the hub corpus")
    path = tracking.project_root() / params.data.corpus
    documents = corpus.read_documents(path)
    if params.data.max_corpus_documents:
        documents = documents[: params.data.max_corpus_documents]
    tokenizer = load_tokenizer(resolve_source(params.finetune_teacher.model, tracking.project_root()))
    budget = params.data.max_seq_length - 2  # room for [CLS] and [SEP]
    rows: list[dict[str, Any]] = []
    for doc_id, sentences in enumerate(documents):
        ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
        for chunk in corpus.pack_sentences(ids, budget):
            input_ids = [tokenizer.cls_token_id, *chunk, tokenizer.sep_token_id]
            rows.append({"doc": doc_id, "input_ids": input_ids, "attention_mask": [1] * len(input_ids)})
    if not rows:
        raise EffbertError(f"{path}: the corpus produced no sequences")
    fp = prepare.fingerprint("corpus", params.data.model_dump(mode="json"), params.finetune_teacher.model)
    dataset = datasets.Dataset.from_list(rows).flatten_indices(new_fingerprint=fp)
    lengths = [len(r["input_ids"]) for r in rows]
    meta = {
        "documents": len(documents),
        "sequences": len(rows),
        "tokens": sum(lengths),
        "mean_length": sum(lengths) / len(lengths),
        "max_seq_length": params.data.max_seq_length,
        "tokenizer": params.finetune_teacher.model,
    }
    return dataset, meta, path


def run(params: Params, out_dir: Path, stage: tracking.StageRun) -> dict[str, Any]:
    dataset, meta, source = build_corpus(params)
    dataset.save_to_disk(str(out_dir / "corpus"))
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    stage.log_dataset("corpus/source", source, "source")
    stage.log_metrics({k: v for k, v in meta.items() if isinstance(v, int | float)})
    log.info("corpus: %d documents -> %d sequences, %d tokens", meta["documents"], meta["sequences"], meta["tokens"])
    return meta
