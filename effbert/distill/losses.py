"""EfficientBERT's distillation losses (Dong et al. 2021), as the official code computes them, with three fixes.

Terms (means are over every element, like ``nn.MSELoss``; hidden states get no padding mask, as in the official code):

- hidden: ``MSE(t_0, W s_0) + sum_l MSE(t_{l * L_t / L_s}, W s_l)`` with ONE shared projection ``W`` (``fit_dense``).
- attention: ``sum_l MSE(zero_masked(t_scores_{l * L_t / L_s}), zero_masked(s_scores_l))`` on pre-softmax scores.
- prediction: soft cross-entropy on logits (classification), on start/end position distributions (span QA), or MSE
  against the teacher's score (regression).

Deviations from the official code, on purpose:

1. :func:`soft_cross_entropy` averages over the batch only; the official code averages over batch x classes, which
   divides the loss by the number of classes and weakens the prediction term by that factor.
2. :func:`span_soft_cross_entropy` masks padding only; the official code also pushes the [CLS] logit to -10000, which
   removes the no-answer signal on SQuAD 2.0. It also averages over the batch only (official: batch x positions).
3. :func:`regression_loss` (STS-B) regresses on the teacher's prediction; the official code uses the gold label there
   while using the teacher everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from effbert.distill.teacher_signals import TeacherSignals, zero_masked

Task = Literal["agnostic", "classification", "regression", "span"]
SpanReduction = Literal["batch", "batch_and_positions"]
"""How the span soft CE is averaged: over the batch (effbert) or over batch x positions (the official code)."""
"""``agnostic``: attention + hidden only (pre-training KD); the others add the matching prediction loss."""

SPAN_MASK_VALUE = -10000.0
"""Logit given to padding positions in span distillation (finite, so fully padded rows stay NaN-free)."""


def _mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over all elements that is 0 (not NaN) for an empty tensor."""
    return values.sum() / max(values.numel(), 1)


def _mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Element-mean squared error in fp32 (bf16 autocast signals included); the teacher is detached."""
    if student.shape != teacher.shape:
        raise ValueError(f"student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}")
    return _mean((student.float() - teacher.detach().float()) ** 2)


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based, = index into ``hidden_states``) distilled into each student layer 1..L_s.

    Student layer ``l`` maps to teacher layer ``l * L_t / L_s``; e.g. ``layer_map(6, 12) == [2, 4, 6, 8, 10, 12]``.

    Args:
        student_layers: L_s >= 1.
        teacher_layers: L_t, a positive multiple of L_s.

    Returns:
        L_s teacher layer numbers.

    Raises:
        ValueError: if a count is not positive or L_t is not a multiple of L_s.
    """
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(f"layer counts must be positive, got student={student_layers}, teacher={teacher_layers}")
    if teacher_layers % student_layers:
        raise ValueError(
            f"teacher layers ({teacher_layers}) must be a multiple of student layers ({student_layers}) "
            "for EfficientBERT's uniform layer mapping"
        )
    interval = teacher_layers // student_layers
    return [layer * interval for layer in range(1, student_layers + 1)]


class PairingError(ValueError):
    """A student the objective cannot pair with a teacher; ``what`` is ``heads`` or ``layers``."""

    def __init__(self, what: Literal["heads", "layers"], message: str) -> None:
        super().__init__(message)
        self.what = what


def check_pair(student_layers: int, student_heads: int, teacher_layers: int, teacher_heads: int) -> None:
    """Whether the objective can pair a student with a teacher: equal head counts (the attention-score loss) and a
    uniform layer map.

    Raises:
        PairingError: naming what does not fit (heads first, then layers).
    """
    if student_heads != teacher_heads:
        raise PairingError(
            "heads", f"the attention-score loss needs the teacher's head count ({teacher_heads}), not {student_heads}"
        )
    try:
        layer_map(student_layers, teacher_layers)
    except ValueError as err:
        raise PairingError("layers", str(err)) from None


class HiddenStateLoss(nn.Module):
    """Hidden-state ("ffn") loss with one shared ``fit_dense`` projection from student to teacher width.

    Args:
        student_hidden: H_s.
        teacher_hidden: H_t.
    """

    def __init__(self, student_hidden: int, teacher_hidden: int) -> None:
        super().__init__()
        self.fit_dense = nn.Linear(student_hidden, teacher_hidden)

    def forward(
        self, student_hidden_states: Sequence[torch.Tensor], teacher_hidden_states: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Sum of the embedding-output MSE and one MSE per student layer (mapped by :func:`layer_map`).

        Args:
            student_hidden_states: L_s+1 tensors (B, T, H_s), embedding output first.
            teacher_hidden_states: L_t+1 tensors (B, T, H_t), embedding output first.

        Returns:
            scalar loss.

        Raises:
            ValueError: on a layer count mismatch (see :func:`layer_map`) or differing (B, T).
        """
        mapping = layer_map(len(student_hidden_states) - 1, len(teacher_hidden_states) - 1)
        loss = _mse(self.fit_dense(student_hidden_states[0]), teacher_hidden_states[0])
        for student_layer, teacher_layer in enumerate(mapping, start=1):
            projected = self.fit_dense(student_hidden_states[student_layer])  # (B, T, H_t)
            loss = loss + _mse(projected, teacher_hidden_states[teacher_layer])
        return loss


def attention_score_loss(
    student_scores: Sequence[torch.Tensor],
    teacher_scores: Sequence[torch.Tensor],
    student_layers: int,
    teacher_layers: int,
) -> torch.Tensor:
    """Sum over student layers of the MSE between pre-softmax attention scores, masked entries set to 0 in both.

    Args:
        student_scores: L_s tensors (B, heads, T, T), as recorded by ``teacher_signals``.
        teacher_scores: L_t tensors (B, heads, T, T).
        student_layers: L_s.
        teacher_layers: L_t (a multiple of L_s).

    Returns:
        scalar loss.

    Raises:
        ValueError: on wrong list lengths, a head-count mismatch or differing shapes.
    """
    if len(student_scores) != student_layers or len(teacher_scores) != teacher_layers:
        raise ValueError(
            f"got {len(student_scores)} student / {len(teacher_scores)} teacher score tensors for "
            f"{student_layers} / {teacher_layers} layers"
        )
    mapping = layer_map(student_layers, teacher_layers)
    loss = student_scores[0].new_zeros(())
    for student_layer, teacher_layer in enumerate(mapping, start=1):
        student = student_scores[student_layer - 1]
        teacher = teacher_scores[teacher_layer - 1]
        if student.shape[1] != teacher.shape[1]:
            raise ValueError(
                f"attention-score distillation compares heads one to one, but student layer {student_layer} has "
                f"{student.shape[1]} heads and teacher layer {teacher_layer} has {teacher.shape[1]}; "
                "give the student the teacher's head count"
            )
        loss = loss + _mse(zero_masked(student), zero_masked(teacher.detach()))
    return loss


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Soft cross-entropy ``-sum_c p_T(c) log p_S(c)`` with both logits divided by ``temperature``.

    Averaged over the batch only. Deviation: the official code averages over batch x classes (dividing the loss by
    the number of classes); this is the plain per-example cross-entropy. No ``T**2`` rescaling (the paper uses T=1).

    Args:
        student_logits: (B, C) (any leading dims are averaged).
        teacher_logits: (B, C), detached.
        temperature: T > 0.

    Returns:
        scalar loss (0 for an empty batch).

    Raises:
        ValueError: if the shapes differ or ``temperature <= 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} != teacher {tuple(teacher_logits.shape)}")
    teacher_probs = F.softmax(teacher_logits.detach().float() / temperature, dim=-1)  # fp32 under bf16 autocast too
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return _mean(-(teacher_probs * student_log_probs).sum(dim=-1))


def _position_soft_ce(
    student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per-example soft CE over positions (B,) with invalid positions masked in both and excluded from the sum; in
    fp32 (bf16 autocast logits included)."""
    fill = torch.tensor(SPAN_MASK_VALUE, dtype=torch.float32, device=student.device)
    student = torch.where(valid, student.float() / temperature, fill)
    teacher = torch.where(valid, teacher.detach().float() / temperature, fill)
    terms = F.softmax(teacher, dim=-1) * F.log_softmax(student, dim=-1)  # (B, T)
    return -(terms * valid).sum(dim=-1)


def span_soft_cross_entropy(
    student_start: torch.Tensor,
    student_end: torch.Tensor,
    teacher_start: torch.Tensor,
    teacher_end: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 1.0,
    reduction: SpanReduction = "batch",
) -> torch.Tensor:
    """Soft cross-entropy over token positions for start plus end, padding masked, averaged over the batch.

    Padding positions get ``SPAN_MASK_VALUE`` in both teacher and student logits. Deviations: the [CLS] position is
    NOT masked (the official code masks it, which removes the no-answer signal on SQuAD 2.0), and by default the
    mean is over the batch only; ``reduction="batch_and_positions"`` also divides by the number of positions T (the
    padded length, as the official code), which scales the term by 1/T (1/128 at the paper's length).

    Args:
        student_start: (B, T); ``student_end``, ``teacher_start``, ``teacher_end`` (detached) likewise.
        attention_mask: (B, T), 1 = real token, 0 = padding.
        temperature: T > 0, applied to all logits.
        reduction: ``batch`` (mean over examples) or ``batch_and_positions`` (that mean divided by T).

    Returns:
        scalar loss; finite (0) for fully padded rows.

    Raises:
        ValueError: if the shapes differ or ``temperature <= 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    shapes = [tuple(x.shape) for x in (student_start, student_end, teacher_start, teacher_end, attention_mask)]
    if len(set(shapes)) != 1:
        raise ValueError(f"student start/end, teacher start/end and attention_mask shapes differ: {shapes}")
    valid = attention_mask.to(torch.bool)
    start = _position_soft_ce(student_start, teacher_start, valid, temperature)  # (B,)
    end = _position_soft_ce(student_end, teacher_end, valid, temperature)  # (B,)
    per_batch = _mean(start + end)
    return per_batch / attention_mask.shape[-1] if reduction == "batch_and_positions" else per_batch


def regression_loss(student_score: torch.Tensor, teacher_score: torch.Tensor) -> torch.Tensor:
    """MSE between the student's and the TEACHER's regression scores (STS-B).

    Deviation: the official code regresses on the gold label for STS-B while every other task distils the teacher's
    output; we use the teacher for consistency (the task-specific teacher already fits the gold labels).

    Args:
        student_score: (B,) or (B, 1).
        teacher_score: (B,) or (B, 1), detached.

    Returns:
        scalar loss.

    Raises:
        ValueError: if the number of scores differs.
    """
    if student_score.numel() != teacher_score.numel():
        raise ValueError(f"student scores {tuple(student_score.shape)} != teacher {tuple(teacher_score.shape)}")
    return _mse(student_score.reshape(-1), teacher_score.reshape(-1))


class DistillationLoss(nn.Module):
    """Weighted EfficientBERT KD objective: attention + hidden (+ prediction for a task), every term returned.

    Owns the hidden-state projection, so pass ``loss.parameters()`` to the optimizer along with the student's.

    Args:
        student_hidden: H_s.
        teacher_hidden: H_t.
        task: ``agnostic`` (attention + hidden), ``classification``, ``regression`` or ``span``.
        attention_weight: weight of the attention-score term (paper: 1).
        hidden_weight: weight of the hidden-state term (paper: 1).
        prediction_weight: weight of the prediction term (paper: 1; unused when ``agnostic``).
        temperature: softmax temperature of the soft cross-entropies (paper: 1).
        span_reduction: span QA only: ``batch`` or ``batch_and_positions`` (official), see
            :func:`span_soft_cross_entropy`.

    Raises:
        ValueError: on an unknown task or span reduction, a negative weight or ``temperature <= 0``.
    """

    def __init__(
        self,
        student_hidden: int,
        teacher_hidden: int,
        task: Task = "classification",
        attention_weight: float = 1.0,
        hidden_weight: float = 1.0,
        prediction_weight: float = 1.0,
        temperature: float = 1.0,
        span_reduction: SpanReduction = "batch",
    ) -> None:
        super().__init__()
        if task not in get_args(Task):
            raise ValueError(f"unknown task {task!r}; expected one of {get_args(Task)}")
        if span_reduction not in get_args(SpanReduction):
            raise ValueError(f"unknown span reduction {span_reduction!r}; expected one of {get_args(SpanReduction)}")
        if min(attention_weight, hidden_weight, prediction_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.task: Task = task
        self.attention_weight = attention_weight
        self.hidden_weight = hidden_weight
        self.prediction_weight = prediction_weight
        self.temperature = temperature
        self.span_reduction: SpanReduction = span_reduction
        self.hidden_loss = HiddenStateLoss(student_hidden, teacher_hidden)

    def forward(
        self, student: TeacherSignals, teacher: TeacherSignals, attention_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Compute every term and the weighted total.

        Args:
            student: the student's signals (hidden states, scores, head outputs), attached to the graph.
            teacher: the teacher's signals (from ``capture``).
            attention_mask: (B, T), 1 = keep; required for ``span``.

        Returns:
            ``{"attention", "hidden", "prediction", "loss"}`` scalars (``prediction`` is 0 when ``agnostic``);
            ``loss`` is the weighted sum.

        Raises:
            ValueError: on missing head outputs for the task, or shape/layer/head mismatches.
        """
        attention = attention_score_loss(
            student.attention_scores, teacher.attention_scores, student.num_layers, teacher.num_layers
        )
        hidden = self.hidden_loss(student.hidden_states, teacher.hidden_states)
        prediction = self._prediction(student, teacher, attention_mask, like=hidden)
        total = self.attention_weight * attention + self.hidden_weight * hidden
        if self.task != "agnostic":
            total = total + self.prediction_weight * prediction
        return {"attention": attention, "hidden": hidden, "prediction": prediction, "loss": total}

    def _prediction(
        self,
        student: TeacherSignals,
        teacher: TeacherSignals,
        attention_mask: torch.Tensor | None,
        like: torch.Tensor,
    ) -> torch.Tensor:
        """The task's prediction-layer loss (a 0 scalar shaped like ``like`` for ``agnostic``)."""
        if self.task == "agnostic":
            return like.new_zeros(())
        if self.task == "span":
            if attention_mask is None:
                raise ValueError("span distillation needs the attention_mask to mask padding positions")
            s_start, s_end = student.start_logits, student.end_logits
            t_start, t_end = teacher.start_logits, teacher.end_logits
            if s_start is None or s_end is None or t_start is None or t_end is None:
                raise ValueError("span distillation needs start_logits and end_logits from student and teacher")
            return span_soft_cross_entropy(
                s_start, s_end, t_start, t_end, attention_mask, self.temperature, self.span_reduction
            )
        if student.logits is None or teacher.logits is None:
            raise ValueError(f"{self.task} distillation needs logits from student and teacher")
        if self.task == "regression":
            return regression_loss(student.logits, teacher.logits)
        return soft_cross_entropy(student.logits, teacher.logits, self.temperature)
