"""Stages ``final_distill_general`` and ``final_distill@<task>``: distil the chosen architecture into a student.

1. ``final_distill_general`` (task-agnostic, once): read the architecture (in the DAG: the stage-3 search winner,
   ``results/search_stage3/architecture.json``; by hand: any architecture file or shipped name), resize it to the
   ``student`` frame, slice it out of the warm-up supernet as a compact model (weights and the ``fit_dense``
   projection inherited), and distil it from the pre-trained teacher on the corpus (attention + hidden). This is
   step 6 of the reference; it is one stage rather than a part of every task's stage so that all tasks share it
   (the same computation, run once, cached by DVC).
2. ``final_distill@<task>``: task KD of that student from the task's fine-tuned teacher (attention + hidden +
   prediction), evaluated on the held-out slice of train every ``eval_steps`` and ending with the best checkpoint
   (never the dev set, unlike the official code). The compact student is saved with ``save_pretrained`` and loads
   with transformers' Auto classes once ``effbert`` is imported; its ``README.md`` is a first model card (held-out
   selection metrics; the ``export`` stage writes the full one).

The same two commands build the paper's variants (``--variant``; params ``variants``, reference 3.4 and 3.6) as the
stages ``variant_general@<variant>`` and ``variant_distill@<model>-<task>``: EfficientBERT-TINY and ++ are cut from
the warm-up supernet at ``student.tiny_hidden_size`` (++ every layer twice) and distilled the same way; EfficientBERT+
has no general KD: its ``variant_general`` cuts the winner out of stage 3's multi-task weight-sharing supernet
(``results/search_stage3/weight_sharing.safetensors``), heads included, and its task KD starts from that task's head.

The distillations are `effbert.methods.efficientbert.distillation.general_student`, ``plus_general_student`` and
``task_student``; the variants' frames and slices are in `effbert.methods.efficientbert.variants`.
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
from effbert.models.teacher import teacher_source
from effbert.params import VARIANT_MODELS, VARIANTS, Params
from effbert.runtime import (
    checkpoint_dir,
    load_params,
    optional_input_option,
    params_option,
    read_json,
    resolve_bf16,
    stage_context,
    write_json,
)

log = logging.getLogger(__name__)

GENERAL_PARAMS = ("seed", "bf16", "student", "final_distill.general", "finetune_teacher.model")
"""The params ``final_distill_general`` reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""

TASK_PARAMS = (
    "seed",
    "bf16",
    "student",
    "final_distill.task",
    "data.glue_dir",
    "data.squad_dir",
    "data.max_train_examples",
    "data.max_seq_length",
    "finetune_teacher.model",
    "export.registry_prefix",
)
"""The params ``final_distill@<task>`` reads: its own and those of the first model card (data, teacher, name)."""

PARAMS = {"final-distill-general": GENERAL_PARAMS, "final-distill": TASK_PARAMS}
"""The params each command of this recipe reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""

variant_option = click.option(
    "--variant",
    type=click.Choice(VARIANTS),
    default=None,
    help="Build one of the paper's variants (plus, tiny, plusplus) instead of the main student.",
)


@click.command("final-distill-general")
@click.option("--supernet", "supernet_dir", required=True, type=click.Path(exists=True))
@click.option(
    "--arch",
    "arch",
    required=True,
    help="A search stage's output folder (its architecture.json), an architecture JSON file or a shipped name.",
)
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Student directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@variant_option
@params_option
def general_command(
    supernet_dir: str,
    arch: str,
    corpus_dir: str,
    model_out: str,
    report_out: str,
    variant: str | None,
    params_file: str,
) -> None:
    """Slice an architecture out of the warm-up supernet and distil it on the corpus (task-agnostic)."""
    params = load_params(params_file)
    outs = [Path(model_out), Path(report_out)]
    name, instance = (
        ("final_distill_general",) * 2 if variant is None else ("variant_general", f"variant_general@{variant}")
    )
    tags = {"effbert.variant": variant} if variant else None
    with stage_context(name, instance, params, GENERAL_PARAMS, outs, tags) as (run, (model_tmp, report_tmp)):
        run.consume(Path(supernet_dir), "supernet", context="model")
        run.consume(Path(corpus_dir), "corpus/prepared")
        if Path(arch).is_dir():
            run.consume(Path(arch), "search/winner", context="architecture")
            winner = Path(arch) / "winner.json"
            if winner.is_file():
                info = read_json(winner, "the search stage's winner")
                run.set_tags({f"effbert.search.winner_{k}": str(v)[:4000] for k, v in info.items()})
        elif Path(arch).is_file():
            run.log_dataset("architecture", Path(arch), "architecture")
        if variant == "plus":
            plus_general(params, Path(supernet_dir), Path(arch), model_tmp, report_tmp, run)
        else:
            dirs = (Path(supernet_dir), arch, Path(corpus_dir), model_tmp, report_tmp)
            distill_general(params, *dirs, run, variant=variant)
        run.log_artifact(report_tmp)


def distill_general(
    params: Params,
    supernet_dir: Path,
    arch: str,
    corpus_dir: Path,
    model_out: Path,
    report_dir: Path,
    run: tracking.StageRun,
    *,
    variant: str | None = None,
) -> dict[str, Any]:
    """General KD of ``arch`` sliced from the supernet (a variant's: at its frame); write the student and report."""
    from effbert.data.prepared import load_split
    from effbert.methods.efficientbert.distillation import general_student, student_architecture
    from effbert.methods.efficientbert.supernet import param_count
    from effbert.methods.efficientbert.variants import variant_frame
    from effbert.training import metrics_callback
    from effbert.training.history import write_training_report

    hp = params.final_distill.general
    seed_everything(params.seed)
    set_threads(hp.threads)
    source = teacher_source(params)
    if Path(source).is_dir():
        run.log_dataset(f"teacher/{params.finetune_teacher.model}", Path(source), "pretrained_model")
    architecture = student_architecture(
        arch, params.student if variant is None else variant_frame(params.student, variant)
    )
    corpus = load_split(corpus_dir, "corpus")
    key = f"student-{architecture.digest()}" + (f"-{variant}" if variant else "")
    checkpoints = checkpoint_dir("final_distill_general", key, params, GENERAL_PARAMS, [supernet_dir, corpus_dir])
    result = general_student(
        params,
        source,
        supernet_dir,
        architecture,
        corpus,
        model_out,
        checkpoints=checkpoints,
        callbacks=[metrics_callback(run.log_metrics)],
        bf16=resolve_bf16(params, run),
        variant=variant,
    )
    extra = {
        "student_params": param_count(result.student),
        "student_params_with_fit_dense": param_count(result.student, fit_dense_size=result.teacher_hidden),
        "final_loss": result.outcome.last_logged("loss"),
    }
    metrics = write_training_report(result.outcome, len(corpus), report_dir, extra)
    run.log_summary(metrics, report_dir / "history.png")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


def plus_general(
    params: Params, supernet_dir: Path, search_dir: Path, model_out: Path, report_dir: Path, run: tracking.StageRun
) -> dict[str, Any]:
    """EfficientBERT+'s start (no training): the winner cut from stage 3's multi-task weight-sharing supernet."""
    from effbert.methods.efficientbert.distillation import plus_general_student, student_architecture
    from effbert.methods.efficientbert.search.weight_sharing import WEIGHT_SHARING_FILE
    from effbert.methods.efficientbert.supernet import param_count

    architecture = student_architecture(str(search_dir), params.student)
    student = plus_general_student(supernet_dir, search_dir / WEIGHT_SHARING_FILE, architecture, model_out)
    metrics = {"student_params": param_count(student), "general_kd_steps": 0}
    write_json(report_dir / "metrics.json", metrics)
    log.info("EfficientBERT+ starts from stage 3's multi-task weights: %s", architecture.describe())
    run.log_summary(metrics)
    return metrics


@click.command("final-distill")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--student", "student_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@optional_input_option(
    "--corpus", "corpus_dir", "Prepared corpus: the source of final_distill.task.transfer's pairs (pair tasks)."
)
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Student directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@variant_option
@params_option
def task_command(
    task: str,
    student_dir: str,
    teacher_dir: str,
    data_dir: str,
    corpus_dir: str | None,
    model_out: str,
    report_out: str,
    variant: str | None,
    params_file: str,
) -> None:
    """Task KD of the general student from the task's fine-tuned teacher; select on the held-out slice."""
    get_task(task)
    params = load_params(params_file)
    outs = [Path(model_out), Path(report_out)]
    tags = {"effbert.task": task}
    name, instance = "final_distill", f"final_distill@{task}"
    if variant is not None:
        name, instance = "variant_distill", f"variant_distill@{VARIANT_MODELS[variant]}-{task}"
        tags["effbert.variant"] = variant
    with stage_context(name, instance, params, TASK_PARAMS, outs, tags) as (
        run,
        (model_tmp, report_tmp),
    ):
        run.consume(Path(student_dir), "student/general", context="model")
        run.consume(Path(teacher_dir), f"{task}/teacher", context="teacher")
        run.consume(Path(data_dir), f"{task}/prepared")
        corpus = None
        if params.final_distill.task.for_task(task).transfer.corpus_pairs and corpus_dir is not None:
            from effbert.data.prepared import load_split

            run.consume(Path(corpus_dir), "corpus/prepared")
            corpus = load_split(Path(corpus_dir), "corpus")
        dirs = (Path(student_dir), Path(teacher_dir), Path(data_dir))
        distill_task(params, task, *dirs, model_tmp, report_tmp, run, corpus=corpus, variant=variant)
        run.log_artifact(report_tmp)


def distill_task(
    params: Params,
    task: str,
    student_dir: Path,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    report_dir: Path,
    run: tracking.StageRun,
    *,
    corpus: Any = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """Task KD of the general student (with ``corpus``'s pairs for a pair task when ``transfer.corpus_pairs``); write
    the best student by held-out score, its first model card, the report."""
    from effbert.export.card_facts import write_initial_card
    from effbert.methods.efficientbert.distillation import task_student
    from effbert.methods.efficientbert.supernet import param_count
    from effbert.training import metrics_callback
    from effbert.training.history import write_training_report

    hp = params.final_distill.task.for_task(task)
    seed_everything(params.seed)
    set_threads(hp.threads)
    keys = ("seed", "bf16", "final_distill.task")
    key = task if variant is None else f"{variant}-{task}"
    checkpoints = checkpoint_dir("final_distill", key, params, keys, [student_dir, teacher_dir, data_dir])
    result = task_student(
        params,
        task,
        student_dir,
        teacher_dir,
        data_dir,
        model_out,
        checkpoints=checkpoints,
        callbacks=[metrics_callback(run.log_metrics)],
        bf16=resolve_bf16(params, run),
        corpus=corpus,
        variant=variant,
    )
    extra = {"student_params": param_count(result.student)}
    metrics = write_training_report(result.outcome, result.train_rows, report_dir, extra)
    run.log_summary(metrics, report_dir / "history.png")
    write_initial_card(
        params,
        task,
        result.student,
        model_out,
        teacher_dir=teacher_dir,
        data_dir=data_dir,
        metrics=metrics,
        history=result.outcome.history(),
        stage=run,
        trained_by="final_distill" if variant is None else "variant_distill",
        variant=variant,
    )
    log.info(
        "best held-out score %.4f at step %d (%.0f s)",
        metrics["best_heldout_score"],
        metrics["best_checkpoint_step"],
        metrics["train_seconds"],
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
