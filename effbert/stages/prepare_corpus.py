"""Stage ``prepare_corpus``: the raw-text corpus for task-agnostic distillation, tokenised and packed.

Consecutive sentences of one document are packed into sentence-pair rows of at most ``data.max_seq_length``
tokens (``[CLS] A [SEP] B [SEP]``, split at a sentence boundary drawn with ``seed``, segment ids 0/1), never
crossing a document boundary (`effbert.data.corpus.pack_corpus`). This keeps the official code's pair format, which
trains the segment-1 embedding pair tasks need, and replaces its one-random-pair-per-article instances, which wasted
most of the corpus (reference section 1.1). The corpus is streamed (documents read one at a time, tokenised by
``data.num_proc`` processes, packed into Arrow shards), so memory stays flat as the corpus grows. Output
``results/prepare_corpus/``: ``corpus/`` (a saved Dataset), ``meta.json``, ``digests.json`` (every file's sha256,
checked before the corpus is loaded), ``lineage.json``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.errors import EffbertError
from effbert.models.teacher import teacher_source
from effbert.params import Params
from effbert.runtime import load_params, params_option, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS = (
    "data.corpus",
    "data.max_corpus_documents",
    "data.max_seq_length",
    "data.num_proc",
    "finetune_teacher.model",
    "seed",
)
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("prepare-corpus")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@params_option
def command(out: str, params_file: str) -> None:
    """Tokenise the raw-text corpus and pack sentences into sequences for task-agnostic KD."""
    params = load_params(params_file)
    with stage_context("prepare_corpus", "prepare_corpus", params, PARAMS, [Path(out)]) as (run, (tmp,)):
        prepare(params, tmp, run)


def prepare(params: Params, out_dir: Path, run: tracking.StageRun) -> dict[str, Any]:
    """Read, tokenise and pack the corpus into ``out_dir``; record its source in MLflow."""
    from effbert.data.corpus import iter_documents, pack_corpus
    from effbert.data.fingerprint import fingerprint
    from effbert.data.prepared import seal_splits
    from effbert.models.teacher import load_tokenizer

    if params.data.corpus is None:
        raise EffbertError("data.corpus is null: run `effbert fetch-data` first to materialize the hub corpus")
    source = tracking.project_root() / params.data.corpus
    documents = iter_documents(source, params.data.max_corpus_documents)
    tokenizer = load_tokenizer(teacher_source(params))
    fp = fingerprint("corpus", params.data.model_dump(mode="json"), params.finetune_teacher.model, params.seed)
    work_dir = out_dir / ".arrow"  # the intermediate Arrow files, inside the stage's temporary output
    try:
        dataset, counts = pack_corpus(
            documents,
            tokenizer,
            params.data.max_seq_length,
            fp,
            params.seed,
            work_dir=work_dir,
            num_proc=params.data.num_proc,
        )
    except ValueError as err:
        raise EffbertError(f"{source}: {err}") from None
    meta = {**counts, "max_seq_length": params.data.max_seq_length, "tokenizer": params.finetune_teacher.model}
    dataset.save_to_disk(str(out_dir / "corpus"))
    del dataset
    shutil.rmtree(work_dir)
    write_json(out_dir / "meta.json", meta)
    seal_splits(out_dir, "prepare_corpus")
    run.log_dataset("corpus/source", source, "source")
    run.log_metrics({k: v for k, v in meta.items() if isinstance(v, int | float)})
    log.info(
        "corpus: %d documents -> %d sequences (%d sentence pairs), %d tokens",
        meta["documents"],
        meta["sequences"],
        meta["pair_sequences"],
        meta["tokens"],
    )
    return meta
