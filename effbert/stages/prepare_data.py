"""Stage ``prepare_data`` (per task): read the official files, cut the held-out slice, tokenise.

Output ``results/prepare_data/<task>/``: one saved ``datasets.Dataset`` per split (``train``, ``heldout``,
``dev`` [, ``dev_mm``], ``test*`` when the test file exists; SQuAD adds ``*_examples`` next to the window
features of ``heldout``, ``dev`` and ``test``), ``meta.json`` (counts, labels, tokenizer, source sha256) and
``lineage.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.data import glue, prepare, squad
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.models.teacher import load_tokenizer, resolve_source
from effbert.params import Params

log = logging.getLogger(__name__)


def source_path(params: Params, task: str, split: str) -> Path:
    """The official file ``split`` of ``task`` is read from (whether or not it exists).

    Args:
        params: the run's params (``data.glue_dir``, ``data.squad_dir``).
        task: task id.
        split: ``train``, a dev split or a test split of the task.

    Returns:
        The path under the project root (``data/sample/glue/SST-2/test.tsv``, ``.../squad/test-v1.1.json``).

    Raises:
        EffbertError: the data folder of the task's benchmark is null (hub data not fetched yet).
    """
    spec = get_task(task)
    root = tracking.project_root()
    if spec.is_squad:
        if params.data.squad_dir is None:
            raise EffbertError("data.squad_dir is null: run `effbert fetch-data` first to materialise the hub data")
        name = spec.train_file if split == "train" else {**spec.dev_splits, **spec.test_splits}[split]
        return root / params.data.squad_dir / name
    if params.data.glue_dir is None:
        raise EffbertError("data.glue_dir is null: run `effbert fetch-data` first to materialise the hub data")
    return glue.glue_split_path(root / params.data.glue_dir, task, split)


def build_splits(params: Params, task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and tokenise every split of ``task``; returns (datasets by split name, meta record)."""
    spec = get_task(task)
    data = params.data
    source = resolve_source(params.finetune_teacher.model, tracking.project_root())
    tokenizer = load_tokenizer(source)
    base_fp = [task, params.seed, data.model_dump(mode="json"), params.finetune_teacher.model]
    out: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def read(split: str, labelled: bool = True) -> list[dict[str, Any]]:
        path = source_path(params, task, split)
        sources[split] = tracking.path_digest(path) if path.is_file() else ""
        if spec.is_squad:
            return squad.read_squad(path, version_2=task == "squad_v2", labelled=labelled)
        return glue.read_glue_split(task, path, labelled=labelled)

    train_all = read("train")
    train, heldout = prepare.split_heldout(
        train_all, data.heldout_fraction, data.max_heldout_examples, params.seed, "context" if spec.is_squad else None
    )
    train = prepare.subsample(train, data.train_limit(task), params.seed)
    evals = {"heldout": heldout}
    for split in spec.dev_splits:
        rows = read(split)
        evals[split] = rows[: data.max_eval_examples] if data.max_eval_examples else rows
    window = {"max_seq_length": data.max_seq_length, "doc_stride": data.doc_stride}
    window["max_query_length"] = data.max_query_length
    if spec.is_squad:
        out["train"] = prepare.tokenize_squad(
            train, tokenizer, **window, for_training=True, fp=prepare.fingerprint(base_fp, "train")
        )
        for name, rows in evals.items():
            out[f"{name}_examples"] = prepare.as_dataset(rows, prepare.fingerprint(base_fp, name, "examples"))
            out[name] = prepare.tokenize_squad(
                rows, tokenizer, **window, for_training=False, fp=prepare.fingerprint(base_fp, name)
            )
    else:
        for name, rows in {"train": train, **evals}.items():
            out[name] = prepare.tokenize_pairs(rows, tokenizer, data.max_seq_length, prepare.fingerprint(base_fp, name))
    for split in spec.test_splits:
        if not source_path(params, task, split).is_file():
            log.info("%s: no %s file, skipping (only needed for test-set predictions)", task, split)
            continue
        rows = read(split, labelled=False)
        fp = prepare.fingerprint(base_fp, split)
        if spec.is_squad:
            out[f"{split}_examples"] = prepare.as_dataset(rows, prepare.fingerprint(base_fp, split, "examples"))
            out[split] = prepare.tokenize_squad(rows, tokenizer, **window, for_training=False, fp=fp)
        else:
            out[split] = prepare.tokenize_pairs(rows, tokenizer, data.max_seq_length, fp)
    meta = {
        "task": task,
        "kind": spec.kind,
        "labels": list(spec.labels),
        "tokenizer": params.finetune_teacher.model,
        "counts": {name: len(ds) for name, ds in out.items()},
        "examples": {"train": len(train), **{name: len(rows) for name, rows in evals.items()}},
        "source_sha256": sources,
    }
    return out, meta


def run(params: Params, task: str, out_dir: Path, stage: tracking.StageRun) -> dict[str, Any]:
    """Build the splits, save them into ``out_dir`` and record the sources' digests in MLflow."""
    splits, meta = build_splits(params, task)
    for name, ds in splits.items():
        ds.save_to_disk(str(out_dir / name))
        log.info("%s/%s: %d rows", task, name, len(ds))
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for split, digest in meta["source_sha256"].items():
        if digest:
            stage.log_dataset(f"{task}/{split}/source", source_path(params, task, split), "source", digest)
    stage.log_metrics({f"rows/{name}": n for name, n in meta["counts"].items()})
    return meta
