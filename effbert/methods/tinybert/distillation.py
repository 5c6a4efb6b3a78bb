"""TinyBERT's two distillations as functions of params sections, models and data (baselines.md section 1).

- general distillation (:func:`general_student`): a plain BERT of `student_config`'s shape, sized into
  EfficientBERT's parameter window on the profile's frame (:func:`student_window`), initialised at random (seeded)
  or, with ``tinybert.init_student: teacher_projection``, from the pre-trained teacher as EfficientBERT's supernet
  is (`effbert.methods.efficientbert.distillation.project_student`), distils the PRE-trained teacher on the corpus:
  embedding + hidden-state MSE through one ``fit_dense`` projection and attention-score MSE, uniform layer map.
  This is EfficientBERT's task-agnostic KD (`effbert.methods.efficientbert.distillation.distill_on_corpus`), reused
  as is.
- task distillation (:func:`task_student`), from the task's fine-tuned teacher, in two steps, each in its own
  checkpoint folder:

  1. intermediate layers (:func:`intermediate_step`, ``tinybert.intermediate``): attention + hidden (the embedding
     output is the hidden term's index 0) on the training rows (TinyBERT's augmented rows when given), the
     ``fit_dense`` projection continued from the general student; no head is trained (its parameters get no
     gradient) and the last weights are kept, as the official code does. A finished step is saved next to its
     checkpoints and not redone on resume.
  2. prediction layer (:func:`prediction_step`, ``tinybert.prediction``): attention and hidden weights 0, prediction
     weight 1 (soft cross-entropy at ``tinybert.temperature``; span QA: the span soft cross-entropy; regression: MSE
     to the teacher's score, not the gold label as in the official code); the projection is frozen, so only the
     prediction term trains the student; the best checkpoint on the held-out slice of train is kept (never dev).

The functions write the model directory they are given (``save_pretrained``, tokenizer, ``fit_dense``) and nothing
else; the stage recipes write the reports. No tracking here: metrics reach MLflow through the callbacks passed in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert.compute import seed_everything, set_threads
from effbert.data.prepared import TaskRows
from effbert.data.tasks import TaskSpec, get_task
from effbert.distill import DistillationLoss, check_pair
from effbert.distill.losses import PairingError
from effbert.distill.projection import load_projection, save_projection
from effbert.distill.trainer import DistillationModule, fit
from effbert.errors import EffbertError
from effbert.methods.tinybert.student import parameter_count, student_config
from effbert.params import MethodTraining, Params, StudentParams
from effbert.training import TrainingOutcome, save_finished_phase, selection_arguments, training_arguments
from effbert.training.phases import finished_phase

log = logging.getLogger(__name__)

__all__ = [
    "INTERMEDIATE_DONE",
    "GeneralResult",
    "TaskResult",
    "encoder_params",
    "general_config",
    "general_student",
    "intermediate_step",
    "prediction_loss",
    "prediction_step",
    "student_window",
    "task_student",
]

INTERMEDIATE_DONE = "intermediate_done"
"""The folder (inside the task stage's checkpoint folder) holding the finished step 1: the student, its ``fit_dense``
and the step's training log. Its presence means step 1 is not redone on resume."""


def student_window(student: StudentParams, param_window: tuple[float, float], teacher_config: Any) -> tuple[int, int]:
    """The parameter window EfficientBERT's search uses on the ``student`` frame (`SearchFrame.window`): the paper's
    ``search.param_window`` mapped by the share of the searchable MLP parameters, computed from the frame's config as
    the warm-up supernet has it (the teacher's vocabulary, ``fit_dense`` to the teacher's width), without building it.
    """
    from effbert.methods.efficientbert.distillation import frame_config
    from effbert.methods.efficientbert.search.space import config_frame_params, scaled_param_window

    config = frame_config(student, teacher_config.vocab_size)
    fixed, max_mlp = config_frame_params(config, teacher_config.hidden_size, student.max_ffn_units)
    low, high = param_window
    window = scaled_param_window(fixed, max_mlp, (int(low), int(high)))
    return window.low, window.high


def general_config(params: Params, teacher_config: Any) -> Any:
    """TinyBERT's student ``BertConfig`` for this profile: ``tinybert.num_layers`` layers, the teacher's heads, sized
    into :func:`student_window` with ``tinybert.ffn_ratio``.

    Raises:
        EffbertError: the layer count cannot be paired with the teacher's, or no shape fits the window.
    """
    hp = params.tinybert
    try:
        check_pair(
            hp.num_layers,
            teacher_config.num_attention_heads,
            teacher_config.num_hidden_layers,
            teacher_config.num_attention_heads,
        )
    except PairingError as err:
        raise EffbertError(f"tinybert.num_layers={hp.num_layers}: {err}") from None
    window = student_window(params.student, params.search.param_window, teacher_config)
    return student_config(teacher_config, hp.num_layers, window, hp.ffn_ratio)


@dataclass(frozen=True)
class GeneralResult:
    """A general student: the training outcome, the encoder, its window and size (``fit_dense`` counted)."""

    outcome: TrainingOutcome
    student: Any
    window: tuple[int, int]
    params_with_fit_dense: int


def general_student(
    params: Params,
    teacher_source: str,
    corpus: Any,
    model_out: Path,
    *,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> GeneralResult:
    """General distillation (``tinybert.general``) of a seeded random student (:func:`general_config`) from the
    pre-trained teacher on the corpus; write the encoder, its tokenizer and ``fit_dense`` into ``model_out``."""
    from transformers import AutoModel, BertModel

    from effbert.methods.efficientbert.distillation import distill_on_corpus, project_student
    from effbert.models.teacher import load_tokenizer

    teacher, tokenizer = AutoModel.from_pretrained(teacher_source), load_tokenizer(teacher_source)
    config = general_config(params, teacher.config)
    window = student_window(params.student, params.search.param_window, teacher.config)
    seed_everything(params.seed)
    student = BertModel(config)
    basis = None
    if params.tinybert.init_student == "teacher_projection":
        basis = project_student(student, teacher, tokenizer, corpus)
    size = parameter_count(config, teacher.config.hidden_size)
    log.info(
        "TinyBERT student: %d layers, H=%d, FFN %d, %d heads; %.3fM params with fit_dense (window %s); init %s",
        config.num_hidden_layers,
        config.hidden_size,
        config.intermediate_size,
        config.num_attention_heads,
        size / 1e6,
        window,
        params.tinybert.init_student,
    )
    outcome, loss = distill_on_corpus(
        student,
        teacher,
        tokenizer,
        corpus,
        params.tinybert.general,
        seed=params.seed,
        checkpoints=checkpoints,
        callbacks=callbacks,
        bf16=bf16,
        projection_init=basis,
    )
    student.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    save_projection(loss, model_out)
    return GeneralResult(outcome, student, window, size)


def encoder_params(model: Any) -> int:
    """Parameters of a task model's encoder in the paper's convention: no pooler, no task head."""
    return sum(p.numel() for name, p in model.base_model.named_parameters() if not name.startswith("pooler."))


def label_names(spec: TaskSpec) -> list[str]:
    """The batch keys holding a task's labels (the KD module takes them as inputs)."""
    return ["start_positions", "end_positions"] if spec.kind == "span" else ["labels"]


def intermediate_step(
    student: Any,
    teacher: Any,
    tokenizer: Any,
    train_rows: Any,
    spec: TaskSpec,
    hp: MethodTraining,
    *,
    seed: int,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
    projection_from: Path,
) -> tuple[TrainingOutcome, DistillationLoss]:
    """Step 1: attention + hidden KD (weights 1, 1; the prediction term is not computed, so the task head gets no
    gradient) of the task ``student`` from the fine-tuned ``teacher``; checkpoints every ``hp.eval_steps`` (no
    evaluation), keeps the last weights. Returns the outcome and the objective (its continued ``fit_dense``)."""
    loss = DistillationLoss(
        student.config.hidden_size,
        teacher.config.hidden_size,
        task="agnostic",
        attention_weight=1.0,
        hidden_weight=1.0,
        prediction_weight=0.0,
    )
    load_projection(loss, projection_from)
    args = training_arguments(
        hp,
        output_dir=checkpoints,
        seed=seed,
        save_steps=hp.eval_steps,
        save_total_limit=hp.save_total_limit,
        select_on_heldout=False,
        group_by_length=hp.group_by_length,
        bf16=bf16,
        label_names=label_names(spec),
    )
    log.info("TinyBERT step 1 (intermediate layers): %d training rows", len(train_rows))
    module = DistillationModule(student, teacher, loss)
    return fit(module, tokenizer, train_rows, args, spec=spec, callbacks=callbacks), loss


def prediction_loss(spec: TaskSpec, student_hidden: int, teacher_hidden: int, temperature: float) -> DistillationLoss:
    """Step 2's objective: attention and hidden weights 0, prediction weight 1 (the task's prediction loss at
    ``temperature``), ``fit_dense`` frozen, so that only the prediction term trains the student."""
    loss = DistillationLoss(
        student_hidden,
        teacher_hidden,
        task=spec.kind,
        attention_weight=0.0,
        hidden_weight=0.0,
        prediction_weight=1.0,
        temperature=temperature,
    )
    loss.requires_grad_(False)
    return loss


def prediction_step(
    student: Any,
    teacher: Any,
    tokenizer: Any,
    rows: TaskRows,
    spec: TaskSpec,
    hp: MethodTraining,
    *,
    temperature: float,
    seed: int,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> TrainingOutcome:
    """Step 2: prediction-layer KD (:func:`prediction_loss`) of ``student``; evaluates on the held-out slice every
    ``hp.eval_steps`` and ends with the best checkpoint loaded."""
    loss = prediction_loss(spec, student.config.hidden_size, teacher.config.hidden_size, temperature)
    args = selection_arguments(hp, output_dir=checkpoints, seed=seed, bf16=bf16, label_names=label_names(spec))
    log.info("TinyBERT step 2 (prediction layer): %d training rows", len(rows.train))
    return fit(
        DistillationModule(student, teacher, loss),
        tokenizer,
        rows.train,
        args,
        spec=spec,
        heldout=rows.heldout,
        heldout_examples=rows.heldout_examples,
        callbacks=callbacks,
    )


@dataclass(frozen=True)
class TaskResult:
    """A TinyBERT task student: both steps' outcomes, the model, the training rows (augmented rows included)."""

    intermediate: TrainingOutcome
    outcome: TrainingOutcome
    student: Any
    train_rows: int


def save_outcome(outcome: TrainingOutcome, path: Path) -> None:
    """A finished step's outcome as JSON (so a resumed stage can still report it)."""
    record = {
        "steps": outcome.steps,
        "seconds": outcome.seconds,
        "resumed": outcome.resumed,
        "log_history": outcome.log_history,
    }
    path.write_text(json.dumps(record, default=float) + "\n", encoding="utf-8")


def load_outcome(path: Path) -> TrainingOutcome:
    """The outcome :func:`save_outcome` wrote."""
    record = json.loads(path.read_text(encoding="utf-8"))
    return TrainingOutcome(record["steps"], record["seconds"], record["resumed"], record["log_history"])


def training_rows(spec: TaskSpec, rows: TaskRows, augmented: Any) -> tuple[Any, Any]:
    """The training rows of (step 1, step 2): TinyBERT's augmented split for both when given, except that a
    regression task's prediction step uses the original rows (as the paper does for STS-B)."""
    if augmented is None:
        return rows.train, rows.train
    return augmented, rows.train if spec.kind == "regression" else augmented


def run_intermediate(
    params: Params,
    spec: TaskSpec,
    general_dir: Path,
    teacher: Any,
    train_rows: Any,
    *,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> Path:
    """Step 1 unless a previous run finished it: the task model built from the general student (seeded head),
    distilled (the Trainer's checkpoints in ``checkpoints / "trainer"``) and saved (student, ``fit_dense``, outcome)
    into ``checkpoints / INTERMEDIATE_DONE``, which is returned."""
    from effbert.models.teacher import build_task_model, load_tokenizer

    done = checkpoints / INTERMEDIATE_DONE
    if finished_phase(done):
        log.info("TinyBERT step 1 already finished in %s: not redone", done)
        return done
    hp = params.tinybert.intermediate.for_task(spec.name)
    set_threads(hp.threads)
    seed_everything(params.seed)
    student = build_task_model(str(general_dir), spec)
    tokenizer = load_tokenizer(str(general_dir))
    outcome, loss = intermediate_step(
        student,
        teacher,
        tokenizer,
        train_rows,
        spec,
        hp,
        seed=params.seed,
        checkpoints=checkpoints / "trainer",
        callbacks=callbacks,
        bf16=bf16,
        projection_from=general_dir,
    )

    def write(partial: Path) -> None:
        student.save_pretrained(str(partial))
        save_projection(loss, partial)
        save_outcome(outcome, partial / "outcome.json")

    save_finished_phase(done, write, remove=[checkpoints / "trainer"])
    return done


def task_student(
    params: Params,
    task: str,
    general_dir: Path,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    *,
    augmented_dir: Path | None,
    checkpoints: tuple[Path, Path],
    callbacks: tuple[list[Any], list[Any]],
    bf16: bool,
    corpus: Any = None,
) -> TaskResult:
    """TinyBERT's task distillation of the general student in ``general_dir`` from the task's fine-tuned teacher:
    step 1 (:func:`run_intermediate`) then step 2 (:func:`prediction_step`) from step 1's weights; write the best
    student by held-out score and its tokenizer into ``model_out``.

    Args:
        augmented_dir: a ``tinybert_augment`` output (its ``train`` split), or None for the original rows.
        corpus: the prepared corpus: with ``tinybert.transfer.corpus_pairs``, a pair task's original rows gain the
            corpus pairs EfficientBERT's task KD gets (`effbert.distill.transfer`); augmented rows are used as they are.
        checkpoints: step 1's folder (resumable Trainer state, then the finished step) and step 2's Trainer folder.
        callbacks: ``TrainerCallback`` objects of step 1 and of step 2.
    """
    from effbert.data.prepared import load_split
    from effbert.distill.transfer import is_pair_task, with_corpus_pairs
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    spec = get_task(task)
    teacher = load_task_model(str(teacher_dir), spec)
    rows = TaskRows.load(data_dir, spec)
    transfer = params.tinybert.transfer
    if transfer.corpus_pairs and corpus is not None and augmented_dir is None and is_pair_task(rows.train):
        rows = with_corpus_pairs(rows, corpus, load_tokenizer(str(general_dir)), teacher, transfer, seed=params.seed)
    augmented = load_split(augmented_dir, "train") if augmented_dir is not None else None
    first_rows, second_rows = training_rows(spec, rows, augmented)
    done = run_intermediate(
        params, spec, general_dir, teacher, first_rows, checkpoints=checkpoints[0], callbacks=callbacks[0], bf16=bf16
    )
    hp = params.tinybert.prediction.for_task(task)
    set_threads(hp.threads)
    seed_everything(params.seed)
    student = load_task_model(str(done), spec)  # the same start whether step 1 ran now or in a killed run
    tokenizer = load_tokenizer(str(general_dir))
    outcome = prediction_step(
        student,
        teacher,
        tokenizer,
        TaskRows(second_rows, rows.heldout, rows.heldout_examples),
        spec,
        hp,
        temperature=params.tinybert.temperature,
        seed=params.seed,
        checkpoints=checkpoints[1],
        callbacks=callbacks[1],
        bf16=bf16,
    )
    student.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    return TaskResult(load_outcome(done / "outcome.json"), outcome, student, len(second_rows))
