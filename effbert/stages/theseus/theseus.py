"""Stage ``theseus@<task>``: compress the task's fine-tuned teacher by progressive module replacing (BERT-of-Theseus).

Phase ``theseus.compress`` replaces each of ``theseus.successor_layers`` teacher layer groups by its successor layer
with the scheduled probability (one draw per module per batch), training only the successors on the task loss (last
weights kept); phase ``theseus.finetune`` fine-tunes the successors alone and keeps the best checkpoint on the
held-out slice of train (never dev). Both checkpoint under ``.effbert/checkpoints/theseus/<task>/<fingerprint>/``; a
killed stage resumes inside its phase and never redoes a finished one; the folder is removed once the model is saved.

Outputs: ``--model-out`` (a plain model of the teacher's family with the successor layers, its tokenizer and a first
model card; it loads with transformers' Auto classes) and ``--report-out`` (metrics.json, the history of both
phases, the loss plot). The training is `effbert.methods.theseus.training.theseus_student`.
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
from effbert.params import Params
from effbert.runtime import checkpoint_dir, load_params, resolve_bf16, teacher_task_options, teacher_task_stage

log = logging.getLogger(__name__)

PARAMS = (
    "seed",
    "bf16",
    "theseus",
    "data.glue_dir",
    "data.squad_dir",
    "data.max_train_examples",
    "data.max_seq_length",
    "finetune_teacher.model",
    "export.registry_prefix",
)
"""The params ``theseus@<task>`` reads: its own and those of the first model card (data, teacher, name)."""

CHECKPOINT_PARAMS = ("seed", "bf16", "theseus")
"""The params the resumable training state depends on."""


@click.command("theseus")
@teacher_task_options
def command(task: str, teacher_dir: str, data_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """BERT-of-Theseus: replace the fine-tuned teacher's layer groups by successor layers, then fine-tune them."""
    get_task(task)
    params = load_params(params_file)
    with teacher_task_stage("theseus", task, params, PARAMS, teacher_dir, data_dir, [model_out, report_out]) as (
        run,
        (model_tmp, report_tmp),
    ):
        theseus(params, task, Path(teacher_dir), Path(data_dir), model_tmp, report_tmp, run)


def theseus(
    params: Params,
    task: str,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    report_dir: Path,
    run: tracking.StageRun,
) -> dict[str, Any]:
    """Train the successors of ``task``'s teacher; write the compact student, its first model card and the report."""
    from effbert.export.card_facts import write_initial_card
    from effbert.methods.theseus.training import theseus_student
    from effbert.training import metrics_callback
    from effbert.training.history import write_training_report

    seed_everything(params.seed)
    set_threads(params.theseus.compress.for_task(task).threads)
    checkpoints = checkpoint_dir("theseus", task, params, CHECKPOINT_PARAMS, [teacher_dir, data_dir])
    log.info("theseus@%s on %s, checkpoints in %s", task, device(), checkpoints)
    result = theseus_student(
        params.theseus,
        task,
        teacher_dir,
        data_dir,
        model_out,
        seed=params.seed,
        checkpoints=checkpoints,
        callbacks=[metrics_callback(run.log_metrics)],
        bf16=resolve_bf16(params, run),
    )
    outcome = result.outcome()
    metrics = write_training_report(outcome, result.train_rows, report_dir, result.figures())
    run.log_summary(metrics, report_dir / "history.png")
    card = {"teacher_dir": teacher_dir, "data_dir": data_dir, "metrics": metrics, "history": outcome.history()}
    write_initial_card(params, task, result.student, model_out, **card, stage=run, trained_by="theseus")
    log.info(
        "best held-out score %.4f at step %d (%.0f s)",
        metrics["best_heldout_score"],
        metrics["best_checkpoint_step"],
        metrics["train_seconds"],
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
