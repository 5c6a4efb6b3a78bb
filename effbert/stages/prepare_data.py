"""Stage ``prepare_data@<task>``: read the task's official files, cut the held-out slice from train, tokenise.

Output ``results/prepare_data/<task>/``: one saved ``datasets.Dataset`` per split (``train``, ``heldout``,
``dev`` [, ``dev_mm``], ``test*`` when the test file exists; SQuAD adds ``*_examples`` next to the window
features of ``heldout``, ``dev`` and ``test``), ``meta.json`` (counts, labels, tokenizer, source sha256),
``digests.json`` (every file's sha256, checked before a split is loaded) and ``lineage.json``. The work is
`effbert.data.prepare.prepare_task`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.data.tasks import get_task
from effbert.models.teacher import teacher_source
from effbert.params import Params
from effbert.runtime import load_params, params_option, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS = (
    "seed",
    "data.glue_dir",
    "data.squad_dir",
    "data.max_train_examples",
    "data.max_eval_examples",
    "data.heldout_fraction",
    "data.max_heldout_examples",
    "data.max_seq_length",
    "data.max_query_length",
    "data.doc_stride",
    "data.window_overlap",
    "finetune_teacher.model",
)
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("prepare-data")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@params_option
def command(task: str, out: str, params_file: str) -> None:
    """Read a task's official files, cut the held-out slice and tokenise every split."""
    get_task(task)
    params = load_params(params_file)
    tags = {"effbert.task": task}
    with stage_context("prepare_data", f"prepare_data@{task}", params, PARAMS, [Path(out)], tags) as (run, (tmp,)):
        prepare(params, task, tmp, run)


def prepare(params: Params, task: str, out_dir: Path, run: tracking.StageRun) -> dict[str, Any]:
    """Build the splits, save them into ``out_dir`` and record the sources' digests in MLflow."""
    from effbert.data.prepare import prepare_task
    from effbert.data.prepared import seal_splits
    from effbert.data.sources import source_path
    from effbert.models.teacher import load_tokenizer

    root = tracking.project_root()
    tokenizer = load_tokenizer(teacher_source(params))
    splits, meta = prepare_task(params.data, root, task, tokenizer, params.finetune_teacher.model, params.seed)
    for name, dataset in splits.items():
        dataset.save_to_disk(str(out_dir / name))
        log.info("%s/%s: %d rows", task, name, len(dataset))
    write_json(out_dir / "meta.json", meta)
    for split, digest in meta["source_sha256"].items():
        if digest:
            run.log_dataset(f"{task}/{split}/source", source_path(params.data, root, task, split), "source", digest)
    run.log_metrics({f"rows/{name}": n for name, n in meta["counts"].items()})
    seal_splits(out_dir, f"prepare_data@{task}")
    return meta
