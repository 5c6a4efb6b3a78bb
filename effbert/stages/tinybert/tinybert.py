"""Stages ``tinybert_general@corpus`` (a random student of EfficientBERT's size distils the pre-trained teacher on the
corpus), ``tinybert_augment@<task>`` (the training split plus TinyBERT's word-replacement variants, ``meta.json``) and
``tinybert@<task>`` (task KD from the fine-tuned teacher: intermediate layers, then the prediction layer selected on
the held-out slice; a Hugging Face task model with its first card). The library is
`effbert.methods.tinybert.distillation` and `effbert.methods.tinybert.augmented_split`.
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
from effbert.models.teacher import teacher_source
from effbert.params import Params
from effbert.runtime import (
    checkpoint_dir,
    load_params,
    optional_input_option,
    params_option,
    resolve_bf16,
    stage_context,
    write_json,
)

log = logging.getLogger(__name__)

GENERAL_PARAMS = (
    "seed",
    "bf16",
    "student",
    "search.param_window",
    "tinybert.num_layers",
    "tinybert.ffn_ratio",
    "tinybert.init_student",
    "tinybert.general",
    "finetune_teacher.model",
)
"""The params ``tinybert_general@corpus`` reads: the student frame and window give the shape."""

AUGMENT_PARAMS = ("seed", "tinybert.augment", "finetune_teacher.model", "data.max_seq_length")
"""The params ``tinybert_augment@<task>`` reads."""

INTERMEDIATE_KEYS = ("seed", "bf16", "tinybert.intermediate", "tinybert.transfer")
"""What step 1's resumable state depends on (besides its inputs)."""

PREDICTION_KEYS = (*INTERMEDIATE_KEYS, "tinybert.prediction", "tinybert.temperature")
"""What step 2's resumable state depends on (besides its inputs): step 1's start included."""

TASK_PARAMS = (
    "seed",
    "bf16",
    "tinybert.intermediate",
    "tinybert.prediction",
    "tinybert.temperature",
    "tinybert.transfer",
    "data.glue_dir",
    "data.squad_dir",
    "data.max_train_examples",
    "data.max_seq_length",
    "finetune_teacher.model",
    "export.registry_prefix",
)
"""The params ``tinybert@<task>`` reads: its own and those of the first model card (data, teacher, name)."""

PARAMS = {"tinybert-general": GENERAL_PARAMS, "tinybert-augment": AUGMENT_PARAMS, "tinybert": TASK_PARAMS}
"""The params each command of this recipe reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("tinybert-general")
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Student directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@params_option
def general_command(corpus_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """TinyBERT's general distillation: a random student of EfficientBERT's size distils the pre-trained teacher."""
    params = load_params(params_file)
    outs = [Path(model_out), Path(report_out)]
    with stage_context("tinybert_general", "tinybert_general@corpus", params, GENERAL_PARAMS, outs) as (
        run,
        (model_tmp, report_tmp),
    ):
        run.consume(Path(corpus_dir), "corpus/prepared")
        distill_general(params, Path(corpus_dir), model_tmp, report_tmp, run)
        run.log_artifact(report_tmp)


def distill_general(
    params: Params, corpus_dir: Path, model_out: Path, report_dir: Path, run: tracking.StageRun
) -> dict[str, Any]:
    """General distillation on the corpus; write the student (encoder, tokenizer, ``fit_dense``) and the report."""
    from effbert.data.prepared import load_split
    from effbert.methods.tinybert.distillation import general_student
    from effbert.training import metrics_callback
    from effbert.training.history import write_training_report

    hp = params.tinybert.general
    seed_everything(params.seed)
    set_threads(hp.threads)
    source = teacher_source(params)
    if Path(source).is_dir():
        run.log_dataset(f"teacher/{params.finetune_teacher.model}", Path(source), "pretrained_model")
    corpus = load_split(corpus_dir, "corpus")
    checkpoints = checkpoint_dir("tinybert_general", "corpus", params, GENERAL_PARAMS, [corpus_dir])
    result = general_student(
        params,
        source,
        corpus,
        model_out,
        checkpoints=checkpoints,
        callbacks=[metrics_callback(run.log_metrics)],
        bf16=resolve_bf16(params, run),
    )
    config = result.student.config
    extra = {
        "student_layers": config.num_hidden_layers,
        "student_hidden_size": config.hidden_size,
        "student_intermediate_size": config.intermediate_size,
        "student_params_with_fit_dense": result.params_with_fit_dense,
        "param_window": list(result.window),
        "final_loss": result.outcome.last_logged("loss"),
    }
    metrics = write_training_report(result.outcome, len(corpus), report_dir, extra)
    run.log_summary(metrics, report_dir / "history.png")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


@click.command("tinybert-augment")
@click.option("--task", required=True, help="Task id, e.g. mrpc (one of tinybert.augment.tasks).")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Augmented split directory.")
@params_option
def augment_command(task: str, data_dir: str, out: str, params_file: str) -> None:
    """TinyBERT's data augmentation of a task's training split (original rows + word-replacement variants)."""
    from effbert.data.prepared import seal_splits

    spec = get_task(task)
    if spec.kind == "span":
        raise EffbertError(f"tinybert-augment: {task} is a span task; TinyBERT distils it on the original set")
    params = load_params(params_file)
    if task not in params.tinybert.augment.tasks:
        raise EffbertError(f"tinybert-augment: {task} is not in tinybert.augment.tasks {params.tinybert.augment.tasks}")
    tags = {"effbert.task": task}
    with stage_context("tinybert_augment", f"tinybert_augment@{task}", params, AUGMENT_PARAMS, [Path(out)], tags) as (
        run,
        (out_tmp,),
    ):
        run.consume(Path(data_dir), f"{task}/prepared")
        meta = augment(params, Path(data_dir), out_tmp)
        seal_splits(out_tmp, f"tinybert_augment@{task}")
        run.log_summary({k: v for k, v in meta.items() if isinstance(v, int)})
        run.set_tags({"effbert.augment.variants_sha256": str(meta["variants_sha256"])})


def augment(params: Params, data_dir: Path, out: Path) -> dict[str, Any]:
    """Write the augmented ``train`` split and ``meta.json`` into ``out``; return the meta record."""
    from effbert.data.prepared import load_split
    from effbert.methods.tinybert.augmented_split import augmentation_teacher, augmented_split
    from effbert.models.teacher import load_tokenizer

    hp = params.tinybert.augment
    seed_everything(params.seed)
    source = teacher_source(params)
    tokenizer = load_tokenizer(source)
    embeddings, mlm = augmentation_teacher(source, hp.batch_size)
    train = load_split(data_dir, "train")
    split, meta = augmented_split(
        train, tokenizer, embeddings, mlm, hp, seed=params.seed, max_seq_length=params.data.max_seq_length
    )
    split.save_to_disk(str(out / "train"))
    meta = {**meta, "seed": params.seed, "tokenizer": params.finetune_teacher.model, "augment": hp.model_dump()}
    write_json(out / "meta.json", meta)
    log.info(
        "augmented %d of %d examples: %d variants, %d rows in all",
        meta["augmented_examples"],
        meta["original_rows"],
        meta["variants"],
        meta["rows"],
    )
    return meta


@click.command("tinybert")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--general", "general_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@optional_input_option(
    "--augmented", "augmented_dir", "A tinybert-augment output: distil on its rows instead of the prepared train split."
)
@optional_input_option(
    "--corpus", "corpus_dir", "Prepared corpus: the source of tinybert.transfer's pairs (pair tasks, original rows)."
)
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Task model directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@params_option
def task_command(
    task: str,
    general_dir: str,
    teacher_dir: str,
    data_dir: str,
    augmented_dir: str | None,
    corpus_dir: str | None,
    model_out: str,
    report_out: str,
    params_file: str,
) -> None:
    """TinyBERT's task distillation: intermediate layers, then the prediction layer (held-out selection)."""
    get_task(task)
    params = load_params(params_file)
    outs = [Path(model_out), Path(report_out)]
    tags = {"effbert.task": task}
    family = "tinybert" if augmented_dir is None else "tinybert_augmented"  # dvc.yaml's two stage groups
    with stage_context(family, f"{family}@{task}", params, TASK_PARAMS, outs, tags) as (
        run,
        (model_tmp, report_tmp),
    ):
        run.consume(Path(general_dir), "tinybert/general", context="model")
        run.consume(Path(teacher_dir), f"{task}/teacher", context="teacher")
        run.consume(Path(data_dir), f"{task}/prepared")
        augmented = Path(augmented_dir) if augmented_dir is not None else None
        if augmented is not None:
            run.consume(augmented, f"{task}/tinybert_augmented")
        corpus = None
        if params.tinybert.transfer.corpus_pairs and corpus_dir is not None and augmented is None:
            from effbert.data.prepared import load_split

            run.consume(Path(corpus_dir), "corpus/prepared")
            corpus = load_split(Path(corpus_dir), "corpus")
        dirs = (Path(general_dir), Path(teacher_dir), Path(data_dir))
        distill_task(params, task, *dirs, augmented, model_tmp, report_tmp, run, corpus=corpus)
        run.log_artifact(report_tmp)


def distill_task(
    params: Params,
    task: str,
    general_dir: Path,
    teacher_dir: Path,
    data_dir: Path,
    augmented_dir: Path | None,
    model_out: Path,
    report_dir: Path,
    run: tracking.StageRun,
    *,
    corpus: Any = None,
) -> dict[str, Any]:
    """Both steps of task distillation (a pair task's rows with ``corpus``'s pairs when ``tinybert.transfer`` asks);
    write the best task model, its first model card and the report."""
    from effbert.export.card_facts import write_initial_card
    from effbert.methods.tinybert.distillation import encoder_params, task_student
    from effbert.training import metrics_callback
    from effbert.training.history import write_history, write_training_report

    seed_everything(params.seed)
    inputs = [general_dir, teacher_dir, data_dir, *([augmented_dir] if augmented_dir is not None else [])]
    first = checkpoint_dir("tinybert", f"{task}/intermediate", params, INTERMEDIATE_KEYS, inputs)
    second = checkpoint_dir("tinybert", f"{task}/prediction", params, PREDICTION_KEYS, inputs)

    def step_one_logs(metrics: Any, step: int) -> None:
        run.log_metrics({f"intermediate/{k}": v for k, v in metrics.items()}, step)

    result = task_student(
        params,
        task,
        general_dir,
        teacher_dir,
        data_dir,
        model_out,
        augmented_dir=augmented_dir,
        checkpoints=(first, second),
        callbacks=([metrics_callback(step_one_logs)], [metrics_callback(run.log_metrics)]),
        bf16=resolve_bf16(params, run),
        corpus=corpus,
    )
    step_one = result.intermediate
    (report_dir / "intermediate").mkdir()
    write_history(step_one.history(), report_dir / "intermediate")
    extra = {
        "student_params": encoder_params(result.student),
        "augmented": augmented_dir is not None,
        "corpus_pairs": corpus is not None,
        "intermediate_steps": step_one.steps,
        "intermediate_seconds": step_one.seconds,
        "intermediate_final_loss": step_one.last_logged("loss"),
    }
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
        trained_by="tinybert",
    )
    log.info(
        "best held-out score %.4f at step %d (step 1 %.0f s, step 2 %.0f s)",
        metrics["best_heldout_score"],
        metrics["best_checkpoint_step"],
        step_one.seconds,
        metrics["train_seconds"],
    )
    shutil.rmtree(first, ignore_errors=True)
    shutil.rmtree(second, ignore_errors=True)
    return metrics
