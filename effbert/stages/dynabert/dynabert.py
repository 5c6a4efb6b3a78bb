"""Stage ``dynabert@<task>`` (sentence tasks only): DynaBERT (Hou et al., 2020) from the task's fine-tuned teacher.

A copy of the teacher is rewired by head and neuron importance on the held-out slice of train, then trained in two
phases, each with its own resumable checkpoint subfolder (a finished phase is not redone): width-adaptive
distillation from the teacher (``dynabert.width``), then width- and depth-adaptive distillation of the whole
``widths x depths`` grid from the width phase's model (``dynabert.depth``). Each phase keeps the checkpoint with the
best mean held-out selection score over its grid (never dev).

Outputs: ``--model-out`` the rewired full-size model (the teacher's class, Auto-loadable; every sub-network runs
from it with `effbert.methods.dynabert.subnetworks.subnetwork`), its tokenizer, ``dynabert.json`` (the grid) and a
first model card; ``--report-out`` ``metrics.json`` and the history of both phases. The work is
`effbert.methods.dynabert.training.dynabert_student`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.compute import seed_everything
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.params import Params
from effbert.runtime import checkpoint_dir, load_params, resolve_bf16, teacher_task_options, teacher_task_stage

log = logging.getLogger(__name__)

PARAMS = (
    "seed",
    "bf16",
    "dynabert",
    "data.glue_dir",
    "data.squad_dir",
    "data.max_train_examples",
    "data.max_seq_length",
    "finetune_teacher.model",
    "export.registry_prefix",
)
"""The params ``dynabert@<task>`` reads: its own and those of the first model card (data, teacher, name)."""


@click.command("dynabert")
@teacher_task_options
def command(task: str, teacher_dir: str, data_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """DynaBERT: one model whose (width, depth) sub-networks run alone, distilled from the task's teacher."""
    if get_task(task).kind == "span":
        raise EffbertError(f"dynabert: {task} is a span-QA task; DynaBERT runs on sentence tasks only")
    params = load_params(params_file)
    with teacher_task_stage("dynabert", task, params, PARAMS, teacher_dir, data_dir, [model_out, report_out]) as (
        run,
        (model_tmp, report_tmp),
    ):
        train(params, task, Path(teacher_dir), Path(data_dir), model_tmp, report_tmp, run)


def train(
    params: Params,
    task: str,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    report_dir: Path,
    run: tracking.StageRun,
) -> dict[str, Any]:
    """Train DynaBERT; write the model, its grid, its first card and the report."""
    from effbert.export.card_facts import write_initial_card
    from effbert.measure.size import model_params
    from effbert.methods.dynabert.training import combined_outcome, dynabert_student, report_figures
    from effbert.training import metrics_callback
    from effbert.training.history import write_training_report

    seed_everything(params.seed)
    checkpoints = checkpoint_dir("dynabert", task, params, ("seed", "bf16", "dynabert"), [teacher_dir, data_dir])
    result, train_rows = dynabert_student(
        params,
        task,
        teacher_dir,
        data_dir,
        model_out,
        checkpoints=checkpoints,
        callbacks=[metrics_callback(run.log_metrics)],
        bf16=resolve_bf16(params, run),
    )
    outcome = combined_outcome(result.phases)
    extra = {**report_figures(result), "student_params": model_params(result.student)}
    metrics = write_training_report(outcome, train_rows, report_dir, extra)
    run.log_summary(metrics, report_dir / "history.png")
    notes = (
        f"DynaBERT: this is the full-size model (width 1, depth 1) of a grid of {len(result.grid)} sub-networks "
        f"(dynabert.json); `effbert dynabert-extract` writes any one as its own compact model.",
        "The held-out selection score is the mean over the grid; the held-out task metrics are the full-size "
        "model's. Dev metrics of every sub-network are in the evaluate stage's record.",
    )
    write_initial_card(
        params,
        task,
        result.student,
        model_out,
        teacher_dir=teacher_dir,
        data_dir=data_dir,
        metrics=metrics,
        history=outcome.history(),
        stage=run,
        trained_by="dynabert",
        notes=notes,
    )
    log.info(
        "best mean held-out score over the grid %s at step %s (%.0f s)",
        metrics.get("best_heldout_score"),
        metrics.get("best_checkpoint_step"),
        metrics["train_seconds"],
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
