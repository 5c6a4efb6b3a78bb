"""FastBERT's phase 2 as a function of the ``fastbert`` params section, a fine-tuned teacher and a prepared task.

Phase 1 (fine-tuning the backbone and the final classifier) is the shared ``finetune_teacher`` stage. Here the
teacher is frozen and the branches learn by self-distillation (`early_exit.self_distillation_loss`) on the task's
training rows, labels unused, with the shared Trainer: AdamW, linear warm-up and decay over the *distillation* steps
(the official code sizes this schedule from the fine-tuning epochs, so its rate reaches 0 early: reference section
15), a checkpoint every ``eval_steps`` in a resumable folder.

Checkpoint selection (on the held-out slice of train, never dev): the **mean branch agreement**, the share of
(row, branch) pairs whose branch predicts the final classifier's class. It is label-free like the training signal
and independent of the exit threshold, so ``fastbert.speed`` and ``fastbert.speeds`` stay evaluation-only settings
(a held-out accuracy at a threshold would also reward branches that are never sure, which exit nobody early). The
held-out self-distillation loss and each branch's agreement are logged beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from effbert.compute import seed_everything
from effbert.data.prepared import TaskRows
from effbert.data.tasks import SELECTION, get_task
from effbert.errors import EffbertError
from effbert.methods.fastbert.early_exit import FastBertModel
from effbert.params import Params
from effbert.training import TrainingOutcome, build_trainer, selection_arguments, train

log = logging.getLogger(__name__)

__all__ = ["CARD_NOTES", "FastBertResult", "SelfDistillation", "branch_agreement", "distill_branches"]

CARD_NOTES = (
    "FastBERT (Liu et al., 2020): the fine-tuned teacher with a self-distilled early-exit branch after every layer but "
    "the last. The plain forward is the teacher's (speed 0); `model.exit_forward(..., speed=s)` lets a row leave at "
    "the first branch whose normalised entropy is <= s.",
    "Held-out selection score: the mean branch agreement with the final classifier (label-free).",
)
"""The first model card's notes on a FastBERT model."""


class SelfDistillation(FastBertModel):
    """`FastBertModel` as the Trainer's model: its outputs batch-first (``branch_logits`` (B, L-1, C)), so the
    Trainer's held-out predictions concatenate along rows."""

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``loss`` (the self-distillation loss), ``logits`` (the final classifier's) and ``branch_logits``."""
        out = super().forward(input_ids, attention_mask, token_type_ids, labels)
        return {**out, "branch_logits": out["branch_logits"].transpose(0, 1)}


def branch_agreement(prediction: Any) -> dict[str, float]:
    """``compute_metrics``: the share of held-out rows whose branch predicts the final classifier's class, per branch
    (``agreement_layer<i>``, the branch after layer i) and averaged over branches (the selection score)."""
    final, branches = prediction.predictions[0], prediction.predictions[1]
    agree = np.asarray(branches).argmax(-1) == np.asarray(final).argmax(-1)[:, None]  # (N, L-1)
    per_branch = agree.mean(axis=0)
    metrics = {f"agreement_layer{i}": float(value) for i, value in enumerate(per_branch, start=1)}
    return {**metrics, "agreement": float(per_branch.mean()), SELECTION: float(per_branch.mean())}


@dataclass(frozen=True)
class FastBertResult:
    """A finished self-distillation: the Trainer's outcome, the saved model, the training rows it read."""

    outcome: TrainingOutcome
    model: Any
    train_rows: int

    def report_extra(self) -> dict[str, Any]:
        """The training report's figures beyond the Trainer's: parameters (branches, all), branches, held-out loss."""
        return {
            "branch_params": sum(p.numel() for p in self.model.branches.parameters()),
            "model_params": sum(p.numel() for p in self.model.parameters()),
            "branches": len(self.model.branches),
            "final_heldout_loss": self.outcome.last_logged("eval_loss"),
        }


def distill_branches(
    params: Params,
    task: str,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    *,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> FastBertResult:
    """Self-distil FastBERT's branches on the frozen fine-tuned teacher of ``task`` (``fastbert`` with the task's
    overrides); write the model with the best held-out branch agreement and the tokenizer into ``model_out``.

    Raises:
        EffbertError: ``task`` is not a classification task.
    """
    from effbert.methods.fastbert.modeling_fastbert import from_trained
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    spec = get_task(task)
    if spec.kind != "classification":
        raise EffbertError(f"fastbert@{task}: FastBERT's exit rule needs a classification task, {task} is {spec.kind}")
    section = params.fastbert
    hp = section.distill.for_task(task)
    seed_everything(params.seed)
    teacher = load_task_model(str(teacher_dir), spec)
    tokenizer = load_tokenizer(str(teacher_dir))
    rows = TaskRows.load(data_dir, spec)
    module = SelfDistillation(teacher, section.branch_width, section.branch_heads)
    args = selection_arguments(hp, output_dir=checkpoints, seed=params.seed, bf16=bf16, label_names=["labels"])
    trainer = build_trainer(spec, module, tokenizer, args, rows.train, rows.heldout, callbacks=callbacks)
    trainer.compute_metrics = branch_agreement
    log.info("self-distilling %d branches on %d training rows", len(module.branches), len(rows.train))
    outcome = train(trainer, resume=True)
    model = from_trained(module.cpu())
    model.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    return FastBertResult(outcome, model, len(rows.train))
