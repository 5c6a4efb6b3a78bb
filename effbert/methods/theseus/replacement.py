"""Progressive module replacing: the replacement schedule, the module grouping and the training-time model.

`TheseusModel` wraps a fine-tuned task model of the BERT family (``model.base_model.encoder.layer``). Everything
of the predecessor is frozen for real, unlike the official code: no gradients (so nothing of it enters the
gradient-clipping norm) and inference-mode dropout, while the successor layers train with dropout. The draws use
torch's global generator, which the Trainer's checkpoints save and restore, so a resumed run draws what an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from effbert.distill.frozen import FrozenParts, freeze, given_inputs
from effbert.models.surgery import encoder_of, swapped

__all__ = ["ReplacementSchedule", "TheseusModel", "module_groups", "replacement_callback"]


@dataclass(frozen=True)
class ReplacementSchedule:
    """The probability ``p`` of replacing a module by its successor after ``step`` optimiser steps.

    Attributes:
        kind: ``"linear"``: ``p = min(1, slope * step + base)`` (the paper's curriculum); ``"constant"``: ``p =
            base`` for ``replacing_steps`` steps, then 1 (successor fine-tuning).
        base: ``b``, the rate at step 0.
        slope: ``k``, the rise per optimiser step (linear).
        replacing_steps: steps before ``p`` becomes 1 (constant).
    """

    kind: Literal["linear", "constant"] = "linear"
    base: float = 0.3
    slope: float = 6e-4
    replacing_steps: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.base <= 1.0:
            raise ValueError(f"base must be in [0, 1], got {self.base!r}")
        if self.kind == "linear" and self.slope <= 0:
            raise ValueError(f"slope must be > 0 for the linear schedule, got {self.slope!r}")
        if self.kind == "constant" and self.replacing_steps < 1:
            raise ValueError(f"replacing_steps must be >= 1 for the constant schedule, got {self.replacing_steps!r}")

    def rate(self, step: int) -> float:
        """``p`` after ``step`` optimiser steps (0 before the first)."""
        if self.kind == "linear":
            return min(1.0, self.slope * step + self.base)
        return self.base if step < self.replacing_steps else 1.0

    def full_replacement_step(self) -> int:
        """The first step at which ``p`` is 1: training after it is successor-only fine-tuning."""
        if self.kind == "constant":
            return self.replacing_steps
        step = max(0, int((1.0 - self.base) / self.slope))
        while self.rate(step) < 1.0:  # float rounding of (1 - b) / k
            step += 1
        return step


def module_groups(predecessor_layers: int, successor_layers: int) -> list[range]:
    """The predecessor's layers each successor replaces: ``predecessor_layers / successor_layers`` consecutive ones.

    Raises:
        ValueError: the successor count is not a divisor of the predecessor's layer count, or not below it.
    """
    if not 1 <= successor_layers < predecessor_layers or predecessor_layers % successor_layers:
        raise ValueError(
            f"successor layers must divide the teacher's {predecessor_layers} layers and be fewer, "
            f"got {successor_layers!r}"
        )
    size = predecessor_layers // successor_layers
    return [range(i * size, (i + 1) * size) for i in range(successor_layers)]


def _running(encoder: Any, layers: list[nn.Module]) -> contextlib.AbstractContextManager[None]:
    """A block within which ``encoder`` runs ``layers`` (its own list restored after)."""
    return swapped({(encoder, "layer"): nn.ModuleList(layers)})


class TheseusModel(FrozenParts):
    """A fine-tuned task model whose layer groups a successor layer each may replace.

    Args:
        predecessor: the fine-tuned task model (BERT family); frozen here, in place.
        successor_layers: how many successor layers (a divisor of the predecessor's layer count).

    Attributes:
        predecessor: the wrapped model (its embeddings, pooler and head are the student's too).
        successors: the trainable layers, copies of the predecessor's first ``successor_layers`` layers.
        groups: the predecessor layers each successor replaces.
        replace_rate: ``p`` of the next training forward passes (set by the schedule's callback).
    """

    frozen_parts = ("predecessor",)  # the frozen predecessor always computes as at inference (no dropout)

    def __init__(self, predecessor: Any, successor_layers: int) -> None:
        super().__init__()
        layers = encoder_of(predecessor).layer
        self.groups = module_groups(len(layers), successor_layers)
        self.predecessor = freeze(predecessor)
        self.successors = nn.ModuleList(copy.deepcopy(layers[i]).requires_grad_(True) for i in range(successor_layers))
        self.replace_rate = 0.0
        self.config = predecessor.config  # read by the Trainer (model_input_names, label names)
        self.train(False)

    def draw(self) -> list[bool]:
        """One Bernoulli(``replace_rate``) per module: True where the successor runs (torch's global generator)."""
        draws = torch.rand(len(self.groups)) < self.replace_rate
        return [bool(d) for d in draws]

    def layer_plan(self, replaced: list[bool]) -> list[nn.Module]:
        """The layers a forward pass runs when module ``i`` is replaced where ``replaced[i]``."""
        own = encoder_of(self.predecessor).layer
        plan: list[nn.Module] = []
        for group, successor, swap in zip(self.groups, self.successors, replaced, strict=True):
            plan.extend([successor] if swap else [own[i] for i in group])
        return plan

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
    ) -> Any:
        """The predecessor's forward on a mix of modules (training) or on the successors alone (inference).

        The inputs are named (not ``**kwargs``): the Trainer keeps the dataset columns a forward names.
        """
        given = given_inputs(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            labels=labels,
            start_positions=start_positions,
            end_positions=end_positions,
        )
        replaced = self.draw() if self.training else [True] * len(self.groups)
        with _running(encoder_of(self.predecessor), self.layer_plan(replaced)):
            output = self.predecessor(**given)
        loss = getattr(output, "loss", None)
        if loss is not None and not loss.requires_grad and torch.is_grad_enabled():
            # no module replaced: nothing trainable ran. A leaf loss lets the step go through with no gradient,
            # so the optimizer skips every successor (as when the official code's successors sit out a batch).
            output.loss = loss.detach().requires_grad_(True)
        return output

    def compact(self) -> Any:
        """The student: a copy of the predecessor whose encoder holds the successors (``num_hidden_layers``
        updated, every parameter trainable again, inference mode); ``save_pretrained`` writes a plain model of the
        teacher's family."""
        with _running(encoder_of(self.predecessor), list(self.successors)):
            student = copy.deepcopy(self.predecessor)
        student.config.num_hidden_layers = len(self.successors)
        for index, layer in enumerate(encoder_of(student).layer):
            for module in layer.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = index
        return student.requires_grad_(True).train(False)


def replacement_callback(model: TheseusModel, schedule: ReplacementSchedule) -> Any:
    """A ``TrainerCallback`` setting ``model.replace_rate`` to ``schedule.rate(global_step)`` when training starts
    (a resumed run continues the schedule where its checkpoint left it) and after every optimiser step."""
    from transformers import TrainerCallback

    class ReplacementRate(TrainerCallback):
        """Keeps the replacement rate on the schedule."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model.replace_rate = schedule.rate(state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            model.replace_rate = schedule.rate(state.global_step)

    return ReplacementRate()
