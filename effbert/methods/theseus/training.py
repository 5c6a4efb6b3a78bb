"""BERT-of-Theseus training as functions of the ``theseus`` params section, models and data (reference section 2).

Two phases, each in its own folder of the checkpoint directory:

1. ``compress`` (:func:`compress`): the fine-tuned teacher wrapped in a `TheseusModel`; every batch replaces each
   module by its successor with probability ``p`` from the schedule (`schedule_of`), on the model's own task loss
   (cross-entropy, MSE or span cross-entropy). Only the successor layers are optimised; the predecessor, its
   embeddings, pooler and head are frozen for real (no gradients, outside the clipping norm, inference-mode dropout).
   The successors-only model is scored on the held-out slice every ``eval_steps`` (the curve in the history), but
   the phase keeps its last weights: before ``p`` reaches 1 a checkpoint's score is that of a model the phase was
   not yet training. Its finished successors are saved as the phase's marker, so a resumed stage skips it.
2. ``finetune`` (:func:`successor_finetune`): successor fine-tuning, ``p = 1`` (only the successors run), with the
   same optimised parameters as the paper and the official code (the successor layers; embeddings, pooler and head
   stay the teacher's, frozen), scored on the held-out slice and ending with the best checkpoint.

The student is `TheseusModel.compact`: a plain model of the teacher's family with the successor layers, saved with
its tokenizer by :func:`theseus_student` into the directory it is given. No tracking here: metrics reach MLflow
through the callbacks passed in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert.compute import seed_everything
from effbert.data.prepared import TaskRows
from effbert.data.tasks import TaskSpec, get_task
from effbert.errors import EffbertError
from effbert.methods.theseus.replacement import ReplacementSchedule, TheseusModel, replacement_callback
from effbert.params import MethodTraining, TheseusParams
from effbert.training import TrainingOutcome, build_trainer, save_finished_phase, selection_arguments, train
from effbert.training.phases import finished_phase

log = logging.getLogger(__name__)

__all__ = [
    "PHASES",
    "TheseusResult",
    "combined_outcome",
    "compress",
    "load_phase",
    "save_phase",
    "schedule_of",
    "successor_finetune",
    "theseus_student",
]

PHASES = ("compress", "finetune")
"""The training phases, in order; each trains in ``<checkpoints>/<phase>``, finished ones leave
``<checkpoints>/<phase>-done``."""

SUCCESSORS_FILE = "successors.safetensors"
OUTCOME_FILE = "outcome.json"


@dataclass(frozen=True)
class TheseusResult:
    """What :func:`theseus_student` produced.

    Attributes:
        compress: the replacement phase's outcome (last weights kept).
        finetune: the successor fine-tuning's outcome (best held-out checkpoint kept).
        student: the compact model saved (the teacher's family, ``successor_layers`` layers).
        teacher_layers: the predecessor's layer count.
        train_rows: training rows (SQuAD: features).
        compress_last_rate: the replacement rate of the compress phase's last batch (below 1: the schedule had not
            reached successors-only training when the phase ended; the fine-tuning phase runs at 1).
    """

    compress: TrainingOutcome
    finetune: TrainingOutcome
    student: Any
    teacher_layers: int
    train_rows: int
    compress_last_rate: float

    def outcome(self) -> TrainingOutcome:
        """Both phases as one run (`combined_outcome`)."""
        return combined_outcome(self.compress, self.finetune)

    def figures(self) -> dict[str, Any]:
        """The method's own report figures (beside the training report's): layers, steps per phase, the last
        replacement rate of the compress phase, the fine-tuning's best step within it, the student's parameters
        (embeddings and encoder; no pooler or head)."""
        from effbert.measure.size import model_params

        return {
            "teacher_layers": self.teacher_layers,
            "successor_layers": int(self.student.config.num_hidden_layers),
            "compress_steps": self.compress.steps,
            "compress_last_rate": self.compress_last_rate,
            "finetune_steps": self.finetune.steps,
            "finetune_best_step": self.finetune.best_step,
            "student_params": model_params(self.student.base_model),
        }


def schedule_of(hp: TheseusParams, compress_steps: int) -> ReplacementSchedule:
    """The replacement rate of the compress phase: ``linear`` ``p = min(1, k t + b)``; ``constant`` (or a linear
    slope of 0) ``p = b`` for the whole phase (``compress_steps`` steps; the fine-tuning phase then runs at 1)."""
    if hp.scheduler == "linear" and hp.rate_slope > 0:
        return ReplacementSchedule("linear", base=hp.base_rate, slope=hp.rate_slope)
    return ReplacementSchedule("constant", base=hp.base_rate, replacing_steps=max(1, compress_steps))


def phase_steps(section: MethodTraining, rows: int) -> int:
    """Optimiser steps of one phase over ``rows`` training rows (the Trainer's count: batches per epoch x epochs)."""
    return max(1, math.ceil(section.epochs * math.ceil(rows / section.batch_size)))


def save_phase(directory: Path, model: TheseusModel, outcome: TrainingOutcome, checkpoints: Path) -> None:
    """Mark a finished phase: its successor weights and outcome (`save_finished_phase`: atomic, written once),
    the phase's Trainer ``checkpoints`` removed."""
    from safetensors.torch import save_file

    def write(folder: Path) -> None:
        save_file({k: v.contiguous() for k, v in model.successors.state_dict().items()}, str(folder / SUCCESSORS_FILE))
        (folder / OUTCOME_FILE).write_text(json.dumps(dataclasses.asdict(outcome)) + "\n", encoding="utf-8")

    save_finished_phase(directory, write, remove=[checkpoints])


def load_phase(directory: Path, model: TheseusModel) -> TrainingOutcome | None:
    """A finished phase's outcome with its successor weights loaded into ``model``; None when it did not finish."""
    from safetensors.torch import load_file

    if not finished_phase(directory):
        return None
    model.successors.load_state_dict(load_file(str(directory / SUCCESSORS_FILE)))
    return TrainingOutcome(**json.loads((directory / OUTCOME_FILE).read_text(encoding="utf-8")))


def _label_names(spec: TaskSpec) -> list[str] | None:
    """The batch keys holding labels: the Trainer cannot infer span QA's from the wrapper's class name."""
    return ["start_positions", "end_positions"] if spec.kind == "span" else None


def _phase_trainer(
    model: TheseusModel,
    tokenizer: Any,
    rows: TaskRows,
    spec: TaskSpec,
    section: MethodTraining,
    output_dir: Path,
    *,
    seed: int,
    bf16: bool,
    callbacks: list[Any],
) -> Any:
    """A Trainer of ``model`` on the task with held-out evaluation every ``section.eval_steps``."""
    seed_everything(seed)
    args = selection_arguments(section, output_dir=output_dir, seed=seed, bf16=bf16, label_names=_label_names(spec))
    return build_trainer(spec, model, tokenizer, args, rows.train, rows.heldout, rows.heldout_examples, callbacks)


def compress(
    model: TheseusModel,
    tokenizer: Any,
    rows: TaskRows,
    spec: TaskSpec,
    hp: TheseusParams,
    *,
    seed: int,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> TrainingOutcome:
    """Phase 1, progressive module replacing (``theseus.compress`` with the task's overrides); its last weights are
    kept. Skipped when ``<checkpoints>/compress-done`` holds its result (loaded into ``model``)."""
    done = checkpoints / "compress-done"
    finished = load_phase(done, model)
    if finished is not None:
        log.info("theseus compress phase already finished (%d steps): %s", finished.steps, done)
        return finished
    section = hp.compress.for_task(spec.name)
    schedule = schedule_of(hp, phase_steps(section, len(rows.train)))
    log.info(
        "theseus compress: %d successors for %d layers, %s schedule (b=%g, p=1 from step %d)",
        len(model.successors),
        sum(len(group) for group in model.groups),
        schedule.kind,
        schedule.base,
        schedule.full_replacement_step(),
    )
    callbacks = [replacement_callback(model, schedule), *callbacks]
    trainer = _phase_trainer(
        model, tokenizer, rows, spec, section, checkpoints / "compress", seed=seed, bf16=bf16, callbacks=callbacks
    )
    trainer.args.load_best_model_at_end = False  # scored for the curve, last weights kept (module docstring)
    outcome = train(trainer)
    last = schedule.rate(max(0, outcome.steps - 1))
    log.info("theseus compress: %d steps, replacement rate of the last batch %.3f", outcome.steps, last)
    if last < 1.0:
        log.warning(
            "theseus compress ended at p=%.3f before p=1 (step %d): the successors first run alone in the fine-tuning",
            last,
            schedule.full_replacement_step(),
        )
    save_phase(done, model, outcome, checkpoints / "compress")
    return outcome


def successor_finetune(
    model: TheseusModel,
    tokenizer: Any,
    rows: TaskRows,
    spec: TaskSpec,
    hp: TheseusParams,
    *,
    seed: int,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> TrainingOutcome:
    """Phase 2, successor fine-tuning (``theseus.finetune`` with the task's overrides): only the successors run and
    train; the best held-out checkpoint is loaded at the end. Skipped when ``<checkpoints>/finetune-done`` holds it."""
    done = checkpoints / "finetune-done"
    finished = load_phase(done, model)
    if finished is not None:
        log.info("theseus successor fine-tuning already finished (%d steps): %s", finished.steps, done)
        return finished
    model.replace_rate = 1.0
    section = hp.finetune.for_task(spec.name)
    trainer = _phase_trainer(
        model, tokenizer, rows, spec, section, checkpoints / "finetune", seed=seed, bf16=bf16, callbacks=callbacks
    )
    outcome = train(trainer)
    log.info(
        "theseus successor fine-tuning: best held-out score %.4f at step %s", outcome.best_score, outcome.best_step
    )
    save_phase(done, model, outcome, checkpoints / "finetune")
    return outcome


def combined_outcome(first: TrainingOutcome, second: TrainingOutcome) -> TrainingOutcome:
    """The two phases as one run: steps counted on (the fine-tuning's step ``s`` is ``first.steps + s``), a
    ``phase`` column in the log, the fine-tuning's selected checkpoint as the best."""
    history = [{**row, "phase": PHASES[0]} for row in first.log_history]
    history += [
        {**row, "phase": PHASES[1], **({"step": row["step"] + first.steps} if "step" in row else {})}
        for row in second.log_history
    ]
    return TrainingOutcome(
        steps=first.steps + second.steps,
        seconds=first.seconds + second.seconds,
        resumed=first.resumed or second.resumed,
        log_history=history,
        best_score=second.best_score,
        best_step=None if second.best_step is None else first.steps + second.best_step,
    )


def theseus_student(
    hp: TheseusParams,
    task: str,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    *,
    seed: int,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> TheseusResult:
    """Compress the task's fine-tuned teacher in ``teacher_dir`` by progressive module replacing, then fine-tune the
    successors; write the compact student (best held-out checkpoint) and the teacher's tokenizer to ``model_out``.

    Raises:
        EffbertError: ``theseus.successor_layers`` does not divide the teacher's layer count or is not below it.
    """
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    spec = get_task(task)
    teacher = load_task_model(str(teacher_dir), spec)
    tokenizer = load_tokenizer(str(teacher_dir))
    layers = int(teacher.config.num_hidden_layers)
    try:
        model = TheseusModel(teacher, hp.successor_layers)
    except ValueError as exc:
        raise EffbertError(f"theseus.successor_layers: {exc} ({teacher_dir})") from exc
    rows = TaskRows.load(data_dir, spec)
    common: dict[str, Any] = {"seed": seed, "checkpoints": checkpoints, "callbacks": callbacks, "bf16": bf16}
    first = compress(model, tokenizer, rows, spec, hp, **common)
    second = successor_finetune(model, tokenizer, rows, spec, hp, **common)
    student = model.compact()
    student.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    schedule = schedule_of(hp, phase_steps(hp.compress.for_task(task), len(rows.train)))
    last_rate = schedule.rate(max(0, first.steps - 1))
    return TheseusResult(first, second, student, layers, len(rows.train), last_rate)
