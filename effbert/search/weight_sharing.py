"""Stage-3 weight sharing: train one supernet over a random sub-architecture per step, then score without training.

Two pieces plug into the Hugging Face Trainer (checkpoints, exact resume, devices come from it):

* :func:`random_subnet_callback`: before every optimizer step, activates a sub-architecture drawn by a function of
  the step number only, so a resumed run draws exactly what an uninterrupted one would.
* :class:`MultiTaskDistillation`: single-task batches from several tasks, each distilled from its own fine-tuned
  teacher (kept in memory, unlike the official code that re-reads a teacher from disk on every batch), into one
  shared body with one classifier per task and one shared ``fit_dense``. Each parameter is registered once, so the
  Trainer's checkpoints hold no aliased tensors.

:func:`single_task_batches` and :class:`MultiTaskCollator` turn per-task datasets into such batches. No file or
tracking I/O here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from effbert.distill.losses import DistillationLoss
from effbert.distill.teacher_signals import capture, forward_with_signals
from effbert.distill.trainer import DistillationOutput
from effbert.models.architecture import Architecture
from effbert.models.supernet import set_active

__all__ = [
    "MultiTaskCollator",
    "MultiTaskDistillation",
    "random_subnet_callback",
    "single_task_batches",
    "step_rng",
]


def step_rng(seed: int, phase: str, step: int) -> random.Random:
    """The random source of one training step: a function of (seed, phase, step) only."""
    return random.Random(f"{seed}/{phase}/{step}")


def random_subnet_callback(
    body: nn.Module, draw: Callable[[random.Random], Architecture], seed: int, phase: str
) -> Any:
    """A ``TrainerCallback`` that activates ``draw(step_rng(seed, phase, step))`` on ``body`` before each step."""
    from transformers import TrainerCallback

    class RandomSubnet(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            set_active(body, draw(step_rng(seed, phase, state.global_step)))

    return RandomSubnet()


def single_task_batches(sizes: Mapping[str, int], batch_size: int, seed: int) -> list[tuple[int, list[int]]]:
    """Every task's rows shuffled and cut into batches, then all batches shuffled together.

    Args:
        sizes: rows per task, in task order (the task index is the position in this mapping).
        batch_size: rows per batch (a task's last batch may be smaller).
        seed: the shuffling seed.

    Returns:
        ``(task_index, row_ids)`` per batch.
    """
    rng = random.Random(seed)
    batches: list[tuple[int, list[int]]] = []
    for index, (_, size) in enumerate(sizes.items()):
        rows = list(range(size))
        rng.shuffle(rows)
        batches += [(index, rows[start : start + batch_size]) for start in range(0, size, batch_size)]
    rng.shuffle(batches)
    return batches


class MultiTaskCollator:
    """Collates one "row" = one single-task batch (``task_index``, ``rows``) into padded model inputs.

    Args:
        datasets: per task (in task-index order), the tokenised dataset with a ``label`` column.
        tokenizer: pads ``input_ids``/``token_type_ids``/``attention_mask``.
    """

    _INPUTS = ("input_ids", "token_type_ids", "attention_mask")

    def __init__(self, datasets: Sequence[Any], tokenizer: Any) -> None:
        self.datasets = list(datasets)
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if len(features) != 1:
            raise ValueError(f"one single-task batch per step expected, got {len(features)} (use batch size 1)")
        task_index, rows = int(features[0]["task_index"]), list(features[0]["rows"])
        data = self.datasets[task_index][rows]
        inputs = {k: data[k] for k in self._INPUTS if k in data}
        batch = dict(self.tokenizer.pad(inputs, return_tensors="pt"))
        labels = torch.tensor(data["label"])
        batch["labels"] = labels.float() if labels.is_floating_point() else labels.long()
        batch["task_index"] = torch.tensor([task_index])
        return batch


class MultiTaskDistillation(nn.Module):
    """One shared body, one classifier per task, one KD objective; a frozen teacher per task alongside.

    Args:
        body: the shared (supernet) encoder, with the pooler all tasks share.
        heads: per task, a head model (``EffBert*ForSequenceClassification``) whose ``effbert`` is ``body``.
        teachers: per task, its fine-tuned teacher (same task order as ``heads``).
        kinds: per task, the KD kind (``classification`` or ``regression``).
        criterion: the shared objective (its ``fit_dense`` is trained); its task kind is switched per batch.
    """

    def __init__(
        self,
        body: nn.Module,
        heads: Mapping[str, nn.Module],
        teachers: Mapping[str, nn.Module],
        kinds: Mapping[str, str],
        criterion: DistillationLoss,
    ) -> None:
        super().__init__()
        if list(heads) != list(teachers) or list(heads) != list(kinds):
            raise ValueError("heads, teachers and kinds must name the same tasks in the same order")
        for name, head in heads.items():
            if getattr(head, "effbert", None) is not body:
                raise ValueError(f"the head model of {name!r} must use the shared body")
        self.body = body
        self.classifiers = nn.ModuleDict({name: head.classifier for name, head in heads.items()})  # type: ignore[misc]
        self.criterion = criterion
        self.task_names = list(heads)
        self._kinds = dict(kinds)
        self._heads = dict(heads)  # plain dict: their parameters are registered once, through body and classifiers
        self._teachers = dict(teachers)
        for teacher in self._teachers.values():
            teacher.eval()
            for parameter in teacher.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> MultiTaskDistillation:
        """Train/eval mode reaches the heads (held in a plain dict) too; the teachers always stay in eval mode."""
        super().train(mode)
        for head in self._heads.values():
            head.train(mode)
        for teacher in self._teachers.values():
            teacher.eval()
        return self

    def head(self, task: str) -> nn.Module:
        """The head model of ``task`` (shares the body)."""
        return self._heads[task]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MultiTaskDistillation:
        super()._apply(fn, recurse)
        for teacher in self._teachers.values():
            teacher._apply(fn, recurse)
        return self

    def forward(
        self,
        task_index: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> Any:
        """The KD loss of one single-task batch (training), or the task head's output (evaluation)."""
        task = self.task_names[int(task_index.reshape(-1)[0])]
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        inputs = {k: v for k, v in inputs.items() if v is not None}
        if not self.training:
            return self._heads[task](**inputs, **({"labels": labels} if labels is not None else {}))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
            inputs["attention_mask"] = attention_mask
        self.criterion.task = self._kinds[task]  # type: ignore[assignment]
        teacher_signals = capture(self._teachers[task], **inputs)
        student_signals = forward_with_signals(self._heads[task], **inputs)
        return DistillationOutput(**self.criterion(student_signals, teacher_signals, attention_mask))
