"""DynaBERT's adaptive distillation: one step trains every sub-network of a grid from one teacher pass.

`AdaptiveDistiller` holds the student (a rewired copy of the fine-tuned teacher) and the frozen teacher. A forward
pass runs the teacher once without gradients, then every sub-network of the grid (depths from the deepest, widths
from the widest within each, as the official code does) and returns the sum of their losses, so one backward pass
accumulates every sub-network's gradient into the shared weights and the optimizer steps once:

- prediction: soft cross-entropy against the teacher's logits (regression: MSE against its score);
- hidden states: ``hidden_weight x sum_j MSE(student_j, teacher_kept(j))`` over the embedding output and every kept
  layer, student layer ``j`` paired with the teacher layer it was kept from (so the last with the last at full
  depth); the official width stage uses 0.1 and only with augmented data, the width-and-depth stage 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from effbert.distill.frozen import FrozenParts, freeze, given_inputs
from effbert.distill.losses import regression_loss, soft_cross_entropy
from effbert.methods.dynabert.subnetworks import kept_layers, subnetwork

__all__ = ["AdaptiveDistiller", "grid"]


def grid(widths: list[float], depths: list[float]) -> list[tuple[float, float]]:
    """``(width, depth)`` pairs in training order: depths from the deepest, widths from the widest within each."""
    return [(w, d) for d in sorted(set(depths), reverse=True) for w in sorted(set(widths), reverse=True)]


class AdaptiveDistiller(FrozenParts):
    """Student and frozen teacher for width- (one depth, 1.0) or width-and-depth-adaptive distillation.

    Args:
        student: the model being trained (BERT family, same shape as the teacher).
        teacher: the fine-tuned teacher; frozen here, in place.
        widths: width multipliers of the grid.
        depths: depth multipliers of the grid (``[1.0]`` for the width stage).
        hidden_weight: weight of the hidden-state term.
    """

    frozen_parts = ("teacher",)  # the frozen teacher always runs as at inference

    def __init__(
        self, student: Any, teacher: Any, widths: list[float], depths: list[float], hidden_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = freeze(teacher)
        self.config = student.config
        self.grid = grid(widths, depths)
        self.hidden_weight = hidden_weight

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The summed loss of every sub-network, per-sub-network terms, and the full student's logits (the held-out
        selection scores the full model). ``labels`` are unused: the teacher is the target."""
        inputs = given_inputs(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        with torch.no_grad():
            teacher = self.teacher(**inputs, output_hidden_states=True)
        layers = len(teacher.hidden_states) - 1
        total = torch.zeros((), device=teacher.logits.device)
        out: dict[str, Tensor] = {}
        for width, depth in self.grid:
            with subnetwork(self.student, width, depth):
                student = self.student(**inputs, output_hidden_states=True)
            pairs = [0, *(index + 1 for index in kept_layers(layers, depth))]  # embeddings, then the kept layers
            hidden = sum(
                (
                    ((s.float() - teacher.hidden_states[t].float()) ** 2).mean()
                    for s, t in zip(student.hidden_states, pairs, strict=True)
                ),
                torch.zeros((), device=total.device),
            )
            if getattr(self.config, "problem_type", None) == "regression":
                prediction = regression_loss(student.logits, teacher.logits)
            else:
                prediction = soft_cross_entropy(student.logits, teacher.logits)
            loss = prediction + self.hidden_weight * hidden
            out[f"loss_w{width:g}_d{depth:g}"] = loss.detach()
            total = total + loss
            if width == 1.0 and depth == 1.0:
                out["logits"] = student.logits
        out["loss"] = total
        if "logits" not in out:
            with torch.no_grad():
                out["logits"] = self.student(**inputs).logits
        return out
