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
   selection metrics; `effbert.stages.export` writes the full one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.data.tasks import get_task
from effbert.distill.trainer import DistillationModule
from effbert.errors import EffbertError
from effbert.models.architecture import ARCHITECTURE_FILE, Architecture, load_architecture
from effbert.models.modeling_effbert import EffBertModel
from effbert.models.supernet import materialize, param_count
from effbert.models.teacher import build_task_model, load_task_model, load_tokenizer
from effbert.params import Params
from effbert.stages import distillation
from effbert.stages.common import seed_everything, set_threads
from effbert.stages.model_card import write_initial_card

log = logging.getLogger(__name__)

"""Written into every student directory: the exact architecture it runs (also in its config)."""


def architecture_source(arch: str) -> Path | None:
    """The JSON file behind ``arch``: a search stage's folder (its ``architecture.json``) or a file; None for a
    shipped name."""
    path = Path(arch)
    if path.is_dir():
        return path / ARCHITECTURE_FILE
    return path if path.is_file() else None


def student_architecture(params: Params, arch: str) -> Architecture:
    """The architecture ``arch`` (see :func:`architecture_source`) resized to the ``student`` frame.

    Raises:
        EffbertError: the file is missing or invalid, or a layer does not fit the frame.
    """
    source_path = architecture_source(arch)
    try:
        source = load_architecture(source_path if source_path is not None else arch)
        return source.resized(params.student.hidden_size, params.student.num_layers)
    except ValueError as err:
        raise EffbertError(f"--arch {arch}: {err}") from None


def run_general(
    params: Params,
    supernet_dir: Path,
    arch: str,
    corpus_dir: Path,
    model_out: Path,
    report_dir: Path,
    stage: tracking.StageRun,
) -> dict:
    """Slice the architecture out of the supernet and distil it on the corpus; write the compact student."""
    import datasets

    hp = params.final_distill.general
    seed_everything(params.seed)
    set_threads(hp.threads)
    teacher, tokenizer = distillation.pretrained_teacher(params, stage)
    distillation.check_frame(params.student, teacher.config)
    architecture = student_architecture(params, arch)
    supernet = EffBertModel.from_pretrained(str(supernet_dir))
    if supernet.config.hidden_size != params.student.hidden_size:
        raise EffbertError(
            f"{supernet_dir}: supernet hidden size {supernet.config.hidden_size} differs from "
            f"student.hidden_size={params.student.hidden_size}"
        )
    try:
        student = materialize(supernet, architecture)
    except ValueError as err:
        raise EffbertError(f"--arch {arch}: {err}") from None
    del supernet
    loss = distillation.criterion(student.config.hidden_size, teacher.config, "agnostic", hp)
    distillation.load_projection(loss, supernet_dir)
    corpus: Any = datasets.load_from_disk(str(corpus_dir / "corpus"))
    checkpoints = distillation.kd_checkpoints(
        "final_distill_general",
        "student-" + hashlib.sha256(json.dumps(architecture.to_dict(), sort_keys=True).encode()).hexdigest()[:12],
        params,
        ("seed", "student", "final_distill.general", "finetune_teacher.model"),
        supernet_dir,
        corpus_dir,
    )
    log.info("general KD of %s: %s", architecture.name, _describe(architecture))
    log.info("student: %.2fM params (no pooler, no fit_dense)", param_count(student) / 1e6)
    module = DistillationModule(student, teacher, loss)
    figures = distillation.distill(
        module, tokenizer, corpus, stage=stage, hp=hp, seed=params.seed, checkpoints=checkpoints
    )
    student.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    distillation.save_projection(loss, model_out)
    architecture.save(model_out / ARCHITECTURE_FILE)
    metrics = distillation.write_report(
        figures,
        report_dir,
        stage,
        {
            "student_params": param_count(student),
            "student_params_with_fit_dense": param_count(student, fit_dense_size=teacher.config.hidden_size),
            "final_loss": distillation.last_logged(figures["history"], "loss"),
        },
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


def run_task(
    params: Params,
    task: str,
    student_dir: Path,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    report_dir: Path,
    stage: tracking.StageRun,
) -> dict:
    """Task KD of the general student from the task's fine-tuned teacher; write the best student by held-out score."""
    import datasets

    spec = get_task(task)
    hp = params.final_distill.task.for_task(task)
    seed_everything(params.seed)
    set_threads(hp.threads)
    teacher = load_task_model(str(teacher_dir), spec)
    distillation.check_frame(params.student, teacher.config)
    tokenizer = load_tokenizer(str(student_dir))
    student = build_task_model(str(student_dir), spec)
    loss = distillation.criterion(student.config.hidden_size, teacher.config, spec.kind, hp)
    distillation.load_projection(loss, student_dir)
    train: Any = datasets.load_from_disk(str(data_dir / "train"))
    heldout: Any = datasets.load_from_disk(str(data_dir / "heldout"))
    heldout_examples = datasets.load_from_disk(str(data_dir / "heldout_examples")) if spec.is_squad else None
    checkpoints = distillation.kd_checkpoints(
        "final_distill",
        task,
        params,
        ("seed", "final_distill.task"),
        student_dir,
        teacher_dir,
        data_dir,
    )
    module = DistillationModule(student, teacher, loss)
    figures = distillation.distill(
        module,
        tokenizer,
        train,
        stage=stage,
        hp=hp,
        seed=params.seed,
        checkpoints=checkpoints,
        spec=spec,
        heldout=heldout,
        heldout_examples=heldout_examples,
    )
    student.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    shutil.copyfile(student_dir / ARCHITECTURE_FILE, model_out / ARCHITECTURE_FILE)
    metrics = distillation.write_report(figures, report_dir, stage, {"student_params": param_count(student)})
    write_initial_card(
        params,
        task,
        student,
        model_out,
        teacher_dir=teacher_dir,
        data_dir=data_dir,
        metrics=metrics,
        history=figures["history"],
        stage=stage,
    )
    log.info(
        "best held-out score %.4f at step %d (%.0f s)",
        metrics["best_heldout_score"],
        metrics["best_checkpoint_step"],
        metrics["train_seconds"],
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


def _describe(architecture: Architecture) -> str:
    return "; ".join(
        f"L{i} {layer.units}x{layer.width} {layer.expr}" for i, layer in enumerate(architecture.layers, start=1)
    )
