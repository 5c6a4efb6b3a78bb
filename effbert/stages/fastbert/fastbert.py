"""Stage ``fastbert@<task>``: FastBERT's self-distillation on the task's fine-tuned teacher (classification tasks).

Phase 1 of FastBERT (fine-tuning backbone and final classifier) is the ``finetune_teacher@<task>`` stage; this stage
is phase 2: the teacher frozen, a branch classifier after every layer but the last, trained by self-distillation
(KL from the final classifier) on the training rows, with the learning-rate schedule sized to the distillation
epochs, checkpoints selected on the held-out slice of train by the mean branch agreement with the final classifier
(`effbert.methods.fastbert.distillation`), resumable from its checkpoint folder.

Outputs: ``--model-out`` a Hugging Face directory (``model_type`` "effbert-fastbert", loads with the Auto classes once
``effbert`` is imported; its plain forward is the teacher's, ``exit_forward`` exits early), its tokenizer and first
model card; ``--report-out`` the training report. The exit thresholds (``fastbert.speed``, ``fastbert.speeds``,
``fastbert.latency_rows``) are evaluation settings: this stage does not read them (the saved ``config.speed`` is 0).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.compute import seed_everything, set_threads
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.params import Params
from effbert.runtime import checkpoint_dir, load_params, resolve_bf16, teacher_task_options, teacher_task_stage

log = logging.getLogger(__name__)

TRAINING_PARAMS = ("seed", "bf16", "fastbert.branch_width", "fastbert.branch_heads", "fastbert.distill")
"""The params the self-distillation reads (the key of its checkpoint folder)."""

PARAMS = (
    *TRAINING_PARAMS,
    "data.glue_dir",
    "data.squad_dir",
    "data.max_train_examples",
    "data.max_seq_length",
    "finetune_teacher.model",
    "export.registry_prefix",
)
"""The params ``fastbert@<task>`` reads: its own and those of the first model card (data, teacher, name); dvc.yaml
lists the same keys (tests/test_code_deps.py checks it)."""


@click.command("fastbert")
@teacher_task_options
def command(task: str, teacher_dir: str, data_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """Self-distil FastBERT's early-exit branches on the task's frozen fine-tuned teacher; select on held-out."""
    if get_task(task).kind != "classification":
        raise EffbertError(f"fastbert@{task}: FastBERT's exit rule needs a classification task")
    params = load_params(params_file)
    with teacher_task_stage("fastbert", task, params, PARAMS, teacher_dir, data_dir, [model_out, report_out]) as (
        run,
        (model_tmp, report_tmp),
    ):
        self_distil(params, task, Path(teacher_dir), Path(data_dir), model_tmp, report_tmp, run)


def self_distil(
    params: Params,
    task: str,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    report_dir: Path,
    run: tracking.StageRun,
) -> dict[str, Any]:
    """Train the branches, write the model with the best held-out branch agreement, its first card and the report."""
    from effbert.export.card_facts import write_initial_card
    from effbert.methods.fastbert.distillation import CARD_NOTES, distill_branches
    from effbert.training import metrics_callback
    from effbert.training.history import write_training_report

    hp = params.fastbert.distill.for_task(task)
    seed_everything(params.seed)
    set_threads(hp.threads)
    checkpoints = checkpoint_dir("fastbert", task, params, TRAINING_PARAMS, [teacher_dir, data_dir])
    result = distill_branches(
        params,
        task,
        teacher_dir,
        data_dir,
        model_out,
        checkpoints=checkpoints,
        callbacks=[metrics_callback(run.log_metrics)],
        bf16=resolve_bf16(params, run),
    )
    metrics = write_training_report(result.outcome, result.train_rows, report_dir, result.report_extra())
    run.log_summary(metrics, report_dir / "history.png")
    write_initial_card(
        params,
        task,
        result.model,
        model_out,
        teacher_dir=teacher_dir,
        data_dir=data_dir,
        metrics=metrics,
        history=result.outcome.history(),
        stage=run,
        trained_by="fastbert",
        notes=CARD_NOTES,
    )
    log.info(
        "best held-out branch agreement %.4f at step %d (%.0f s)",
        metrics["best_heldout_score"],
        metrics["best_checkpoint_step"],
        metrics["train_seconds"],
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
