"""Distillation with the Hugging Face Trainer: one module that owns the student and the KD objective.

The Trainer brings checkpointing and exact resume (optimizer, scheduler, RNG and data position), distributed
training, bf16 autocast and callbacks; distillation only needs a model whose forward returns the KD loss.
:class:`DistillationModule` is that model: it holds the student and the :class:`DistillationLoss` (whose shared
``fit_dense`` projection is trained along with the student) as submodules, and the teacher outside its parameters
(never optimised, never written into checkpoints, but moved to the same device). In training mode its forward runs
the frozen teacher and the student and returns every loss term; in evaluation mode it runs the student alone, so
held-out selection scores the student exactly as it will be saved.

:class:`DistillationTrainerMixin` adds the loss terms (attention, hidden, prediction) to the Trainer's logs;
:func:`fit` trains a :class:`DistillationModule` with them (resuming from a killed run's checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from effbert.data.tasks import TaskSpec
from effbert.distill.frozen import freeze, given_inputs
from effbert.distill.losses import DistillationLoss
from effbert.distill.teacher_signals import capture, forward_with_signals
from effbert.training import TrainingOutcome, build_trainer, train

__all__ = ["KD_TERMS", "DistillationModule", "DistillationOutput", "DistillationTrainerMixin", "fit"]

KD_TERMS = ("attention", "hidden", "prediction")
"""The loss terms a training step reports next to the total."""


@dataclass
class DistillationOutput(ModelOutput):
    """What :class:`DistillationModule` returns in training mode: the total and each term (scalars)."""

    loss: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    prediction: torch.Tensor | None = None


class DistillationModule(nn.Module):
    """Student + KD objective as one trainable module, with a frozen teacher alongside.

    Args:
        student: an EffBert model (bare, classification/regression or QA head).
        teacher: a Hugging Face BERT-family model with the matching head (bare for task-agnostic KD); put in eval
            mode and kept out of ``parameters()`` and ``state_dict()``.
        criterion: the distillation objective; its ``fit_dense`` projection is trained with the student.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, criterion: DistillationLoss) -> None:
        super().__init__()
        self.student = student
        self.criterion = criterion
        self._teacher = [freeze(teacher)]  # a list hides it from nn.Module's registration

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher."""
        return self._teacher[0]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> DistillationModule:
        """Device and dtype moves (``.to``, ``.cuda``) apply to the teacher as well."""
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> Any:
        """Training mode: the KD loss and its terms. Evaluation mode: the student's own output (logits, and its
        supervised loss when labels are given), for held-out selection.

        Gold labels are not used in training: EfficientBERT's task stage is pure distillation.
        """
        inputs = given_inputs(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if not self.training:
            supervised = given_inputs(labels=labels, start_positions=start_positions, end_positions=end_positions)
            return self.student(**inputs, **supervised)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
            inputs["attention_mask"] = attention_mask
        teacher_signals = capture(self.teacher, **inputs)
        student_signals = forward_with_signals(self.student, **inputs)
        terms = self.criterion(student_signals, teacher_signals, attention_mask)
        return DistillationOutput(**terms)


class DistillationTrainerMixin:
    """Put first in a Trainer's bases: logs the mean of each KD term over the steps since the last log."""

    _kd_sums: dict[str, float]
    _kd_count: int

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        outputs = model(**inputs)
        loss = outputs["loss"]
        if isinstance(outputs, DistillationOutput):
            sums = getattr(self, "_kd_sums", None) or dict.fromkeys(KD_TERMS, 0.0)
            for term in KD_TERMS:
                value = outputs[term]
                sums[term] += float(value.detach()) if value is not None else 0.0
            self._kd_sums, self._kd_count = sums, getattr(self, "_kd_count", 0) + 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        count = getattr(self, "_kd_count", 0)
        if "loss" in logs and count:
            logs = {**logs, **{f"kd_{term}": total / count for term, total in self._kd_sums.items()}}
            self._kd_sums, self._kd_count = dict.fromkeys(KD_TERMS, 0.0), 0
        super().log(logs, *args, **kwargs)  # type: ignore[misc]


def fit(
    module: nn.Module,
    tokenizer: Any,
    train_rows: Any,
    args: Any,
    *,
    spec: TaskSpec | None = None,
    heldout: Any = None,
    heldout_examples: Any = None,
    callbacks: list[Any] | None = None,
    resume: bool = True,
) -> TrainingOutcome:
    """Distil: train ``module`` (a :class:`DistillationModule` or another module returning
    :class:`DistillationOutput`) with the KD terms logged, resuming from a checkpoint in ``args.output_dir``.

    Args:
        module: the student with its objective.
        tokenizer: pads the batches.
        train_rows: the tokenised training rows (corpus, or a task's train split).
        args: `effbert.training.training_arguments`.
        spec: the task for task KD (held-out selection), None for task-agnostic KD.
        heldout: held-out features for selection (task KD).
        heldout_examples: span QA only: the held-out examples.
        callbacks: extra ``TrainerCallback`` objects.
        resume: look for a checkpoint to continue from.
    """
    trainer = build_trainer(
        spec, module, tokenizer, args, train_rows, heldout, heldout_examples, callbacks, mixin=DistillationTrainerMixin
    )
    return train(trainer, resume=resume)
