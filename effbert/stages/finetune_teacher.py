"""Stage ``finetune_teacher`` (per task): fine-tune the teacher, select on the held-out slice of train.

Checkpoints go to ``.effbert/checkpoints/finetune_teacher/<task>/<fingerprint>/`` every ``eval_steps``; a killed
run started again with the same inputs and params resumes from the last one (optimizer, scheduler and RNG
state included) and the folder is removed once the model is saved. Outputs: the model directory
(``save_pretrained``) and ``results/finetune_teacher/<task>/`` (metrics, training history, loss plot, log).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from effbert import tracking
from effbert.data.tasks import get_task
from effbert.models.teacher import build_task_model, load_tokenizer, resolve_source
from effbert.params import Params, section_digest
from effbert.stages.common import (
    checkpoint_dir,
    device,
    history_callback,
    seed_everything,
    set_threads,
    write_history,
)
from effbert.training import make_trainer

log = logging.getLogger(__name__)


def run(params: Params, task: str, data_dir: Path, model_out: Path, report_dir: Path, stage: tracking.StageRun) -> dict:
    """Fine-tune the teacher on ``task``; write the best model to ``model_out`` and reports to ``report_dir``."""
    import datasets
    import pandas as pd

    spec = get_task(task)
    hp = params.finetune_teacher.for_task(task)
    seed_everything(params.seed)
    set_threads(hp.threads)
    source = resolve_source(hp.model, tracking.project_root())
    tokenizer = load_tokenizer(source)
    model = build_task_model(source, spec)
    if Path(source).is_dir():  # which pre-trained checkpoint, by content
        stage.log_dataset(f"teacher/{hp.model}", Path(source), "pretrained_model")
    train = datasets.load_from_disk(str(data_dir / "train"))
    heldout = datasets.load_from_disk(str(data_dir / "heldout"))
    heldout_examples = datasets.load_from_disk(str(data_dir / "heldout_examples")) if spec.is_squad else None
    lineage = tracking.read_lineage(data_dir) or {}
    fp = section_digest(params, "seed", "finetune_teacher") + "-" + str(lineage.get("digest", ""))[:12]
    ckpt = checkpoint_dir("finetune_teacher", task, fp)
    trainer = make_trainer(
        spec,
        model,
        tokenizer,
        train,
        heldout,
        heldout_examples,
        output_dir=ckpt,
        seed=params.seed,
        learning_rate=hp.learning_rate,
        epochs=hp.epochs,
        batch_size=hp.batch_size,
        eval_batch_size=hp.eval_batch_size,
        warmup_ratio=hp.warmup_ratio,
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        eval_steps=hp.eval_steps,
        save_total_limit=hp.save_total_limit,
        bf16=hp.bf16,
        group_by_length=hp.group_by_length,
        callbacks=[history_callback(stage)],
    )
    from transformers.trainer_utils import get_last_checkpoint

    resume = get_last_checkpoint(str(ckpt)) if ckpt.is_dir() else None
    if resume:
        log.info("resuming from %s", resume)
    log.info(
        "fine-tuning %s on %s: %d train / %d held-out rows on %s", hp.model, task, len(train), len(heldout), device()
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - started
    trainer.save_model(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    write_history(pd.DataFrame(trainer.state.log_history), report_dir)
    metrics = {
        "best_heldout_score": float(trainer.state.best_metric or 0.0),
        "best_checkpoint_step": int(str(trainer.state.best_model_checkpoint or "-0").rsplit("-", 1)[-1]),
        "train_steps": int(trainer.state.global_step),
        "train_examples": len(train),
    }
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    stage.log_metrics({**metrics, "train_seconds": wall, "resumed": float(bool(resume))})
    log.info(
        "best held-out score %.4f at step %d (%.0f s)",
        metrics["best_heldout_score"],
        metrics["best_checkpoint_step"],
        wall,
    )
    stage.log_artifact(report_dir / "history.png", "plots")
    shutil.rmtree(ckpt, ignore_errors=True)
    return metrics
