"""Stage ``finetune_teacher@<task>``: fine-tune the teacher, select the checkpoint on the held-out slice of train.

Checkpoints go to ``.effbert/checkpoints/finetune_teacher/<task>/<fingerprint>/`` every ``eval_steps``; a killed
run started again with the same inputs and params resumes from the last one (optimizer, scheduler and RNG
state included) and the folder is removed once the model is saved. Outputs: the model directory
(``save_pretrained``) and ``results/finetune_teacher/<task>/`` (metrics, training history, loss plot, log).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.compute import device, seed_everything, set_threads
from effbert.data.tasks import get_task
from effbert.models.teacher import teacher_source
from effbert.params import Params
from effbert.runtime import (
    checkpoint_dir,
    load_params,
    params_option,
    resolve_bf16,
    stage_context,
    write_json,
)

log = logging.getLogger(__name__)

PARAMS = ("seed", "bf16", "finetune_teacher")
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("finetune-teacher")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@params_option
def command(task: str, data_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """Fine-tune the teacher on one task; select the checkpoint on the held-out slice of train."""
    params = load_params(params_file)
    outs = [Path(model_out), Path(report_out)]
    tags = {"effbert.task": task}
    with stage_context("finetune_teacher", f"finetune_teacher@{task}", params, PARAMS, outs, tags) as (
        run,
        (model_tmp, report_tmp),
    ):
        run.consume(Path(data_dir), f"{task}/prepared")
        finetune(params, task, Path(data_dir), model_tmp, report_tmp, run)
        run.log_artifact(report_tmp)


def finetune(
    params: Params, task: str, data_dir: Path, model_out: Path, report_dir: Path, run: tracking.StageRun
) -> dict[str, Any]:
    """Fine-tune the teacher on ``task``; write the best model to ``model_out`` and reports to ``report_dir``."""
    from effbert.data.prepared import TaskRows
    from effbert.models.teacher import build_task_model, load_tokenizer
    from effbert.training import build_trainer, metrics_callback, selection_arguments, train
    from effbert.training.history import write_history

    spec = get_task(task)
    hp = params.finetune_teacher.for_task(task)
    seed_everything(params.seed)
    set_threads(hp.threads)
    source = teacher_source(params)
    tokenizer = load_tokenizer(source)
    model = build_task_model(source, spec)
    if Path(source).is_dir():  # which pre-trained checkpoint, by content
        run.log_dataset(f"teacher/{hp.model}", Path(source), "pretrained_model")
    rows = TaskRows.load(data_dir, spec)
    checkpoints = checkpoint_dir("finetune_teacher", task, params, PARAMS, [data_dir])
    args = selection_arguments(hp, output_dir=checkpoints, seed=params.seed, bf16=resolve_bf16(params, run))
    callbacks = [metrics_callback(run.log_metrics)]
    trainer = build_trainer(spec, model, tokenizer, args, rows.train, rows.heldout, rows.heldout_examples, callbacks)
    log.info(
        "fine-tuning %s on %s: %d train / %d held-out rows on %s",
        hp.model,
        task,
        len(rows.train),
        len(rows.heldout),
        device(),
    )
    outcome = train(trainer)
    # the model alone: Trainer.save_model also writes training_args.bin, whose checkpoint path changes with every
    # params change of the section and would rerun everything downstream of an unchanged teacher
    trainer.model.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    write_history(outcome.history(), report_dir)
    metrics: dict[str, Any] = {
        "best_heldout_score": outcome.best_score,
        "best_checkpoint_step": outcome.best_step,
        "train_steps": outcome.steps,
        "train_examples": len(rows.train),
    }
    write_json(report_dir / "metrics.json", metrics)
    run.log_metrics({**metrics, "train_seconds": outcome.seconds, "resumed": float(outcome.resumed)})
    log.info("best held-out score %.4f at step %d (%.0f s)", outcome.best_score, outcome.best_step, outcome.seconds)
    run.log_artifact(report_dir / "history.png", "plots")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
