"""FastBERT's branches, its self-distillation loss and its early-exit inference.

`FastBertModel` wraps a fine-tuned sequence classifier of the BERT family; the backbone and its head are frozen for
good (no gradients, inference mode). Training runs the teacher once per batch without gradients, keeps its hidden
states, and fits every branch to the head's prediction. `FastBertModel.exit_forward` runs the layers one by one
and stops a sample at the first branch whose normalised entropy is at most ``speed``. Two batch rules:
``"batch"`` (the paper's: a batch goes on while any of its samples has not exited, so every sample pays for the
slowest) and ``"sample"`` (exited rows leave the batch; the remaining rows run on).

The exit loop (:func:`early_exit`), the branches' forward (:func:`branch_predictions`) and the teacher's head
(:func:`sequence_head`) are functions of any BERT-family sequence classifier and its branches, so the saved model
(`effbert.methods.fastbert.modeling_fastbert`) runs exactly the code the training wrapper runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effbert.distill.frozen import FrozenParts, freeze
from effbert.models.surgery import encoder_of

__all__ = [
    "BranchClassifier",
    "ExitResult",
    "FastBertModel",
    "SweepPoint",
    "branch_predictions",
    "early_exit",
    "make_branches",
    "normalised_entropy",
    "require_classifier",
    "self_distillation_loss",
    "sequence_head",
    "sweep",
]


def normalised_entropy(logits: Tensor) -> Tensor:
    """``H(softmax(logits)) / ln(num_labels)`` per row, in [0, 1]: FastBERT's uncertainty (0 = one-hot)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return entropy / math.log(logits.shape[-1])


def self_distillation_loss(branch_logits: list[Tensor], teacher_logits: Tensor) -> Tensor:
    """``sum_i KL(p_teacher || p_branch_i)``, each the batch mean, no temperature and no label term (the paper's)."""
    teacher_log_probs = F.log_softmax(teacher_logits.float(), dim=-1)
    return sum(
        (
            F.kl_div(F.log_softmax(logits.float(), dim=-1), teacher_log_probs, log_target=True, reduction="batchmean")
            for logits in branch_logits
        ),
        torch.zeros((), device=teacher_logits.device),
    )


def require_classifier(config: Any) -> None:
    """Raise ValueError unless ``config`` is a classifier's (the exit rule is an entropy over >= 2 classes)."""
    if getattr(config, "problem_type", None) == "regression" or config.num_labels < 2:
        raise ValueError("FastBERT's exit rule needs a classifier (normalised entropy over >= 2 classes)")


def make_branches(hidden_size: int, num_labels: int, layers: int, width: int, heads: int) -> nn.ModuleList:
    """The branches of a ``layers``-layer backbone: one :class:`BranchClassifier` after every layer but the last."""
    return nn.ModuleList(BranchClassifier(hidden_size, num_labels, width, heads) for _ in range(layers - 1))


class BranchClassifier(nn.Module):
    """A student classifier after one layer: narrow to ``width`` (tanh), self-attention with ``heads`` heads at that
    width, the first token's vector, a ``width`` dense layer (tanh), the labels.

    Args:
        hidden_size: the backbone's hidden size.
        num_labels: the task's classes.
        width: the classifier's width (the paper: 128).
        heads: its attention heads (the paper: 2).
    """

    def __init__(self, hidden_size: int, num_labels: int, width: int = 128, heads: int = 2) -> None:
        super().__init__()
        self.narrow = nn.Linear(hidden_size, width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.dense = nn.Linear(width, width)
        self.classifier = nn.Linear(width, num_labels)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, T, H) hidden states and the (B, T) 0/1 padding mask -> (B, num_labels) logits."""
        narrow = torch.tanh(self.narrow(hidden_states))
        padding = None if attention_mask is None else attention_mask == 0
        attended, _ = self.attention(narrow, narrow, narrow, key_padding_mask=padding, need_weights=False)
        return self.classifier(torch.tanh(self.dense(attended[:, 0])))


@dataclass(frozen=True)
class ExitResult:
    """An early-exit forward pass.

    Attributes:
        logits: (B, num_labels), each row from the classifier it exited at.
        exit_layers: (B,) the layer (1-based) each row exited after.
        layers_run: how many layers the batch ran (``"batch"``: the deepest exit).
    """

    logits: Tensor
    exit_layers: Tensor
    layers_run: int


class FastBertModel(FrozenParts):
    """A fine-tuned BERT-family sequence classifier with a branch classifier after every layer but the last.

    Args:
        teacher: the fine-tuned classifier (``base_model.embeddings``, ``.encoder.layer``, its own head); frozen.
        width: the branches' width.
        heads: the branches' attention heads.
    """

    frozen_parts = ("teacher",)  # the frozen teacher always runs as at inference

    def __init__(self, teacher: Any, width: int = 128, heads: int = 2) -> None:
        super().__init__()
        config = teacher.config
        require_classifier(config)
        self.teacher = freeze(teacher)
        self.config = config
        layers = len(encoder_of(teacher).layer)
        self.branches = make_branches(config.hidden_size, config.num_labels, layers, width, heads)
        self.train(False)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Every branch's logits on one teacher pass, and the self-distillation loss (``labels`` are not used: the
        head's prediction is the target; the argument lets a Trainer pass its batches through).

        Returns:
            ``loss``, ``logits`` (the teacher head's), ``branch_logits`` (L-1, B, num_labels).
        """
        with torch.no_grad():
            out = self.teacher(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                output_hidden_states=True,
            )
        branch_logits = branch_predictions(self.branches, out.hidden_states, attention_mask)
        loss = self_distillation_loss(branch_logits, out.logits)
        return {"loss": loss, "logits": out.logits, "branch_logits": torch.stack(branch_logits)}

    def exit_forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        speed: float = 0.0,
        rule: Literal["batch", "sample"] = "batch",
    ) -> ExitResult:
        """Early-exit inference (:func:`early_exit` of the teacher and the branches): a row exits after the first
        layer whose branch's normalised entropy is <= ``speed`` (``speed`` 0: no branch is ever sure enough, every
        row takes the teacher's head; 1: every row exits after layer 1); rows that never exit take the teacher's head
        after the last layer.

        Args:
            rule: ``"batch"``: the batch runs until its last row exits (rows that exited early keep their early
                prediction); ``"sample"``: exited rows leave the batch.
        """
        return early_exit(self.teacher, self.branches, input_ids, attention_mask, token_type_ids, speed, rule)


def branch_predictions(
    branches: nn.ModuleList, hidden_states: tuple[Tensor, ...], attention_mask: Tensor | None
) -> list[Tensor]:
    """Each branch's logits on the hidden states after its layer (``hidden_states``: a forward's
    ``output_hidden_states``, the embeddings first; the last layer's state feeds the head, not a branch)."""
    hidden = hidden_states[1:-1]  # after layers 1 .. L-1 (index 0 is the embeddings)
    return [branch(h, attention_mask) for branch, h in zip(branches, hidden, strict=True)]


def sequence_head(model: Any, sequence_output: Tensor) -> Tensor:
    """A BERT-family sequence classifier's own head (pooler, dropout, classifier) on the last layer's output."""
    bert = model.base_model
    pooled = bert.pooler(sequence_output) if bert.pooler is not None else sequence_output[:, 0]
    return model.classifier(model.dropout(pooled))


@torch.no_grad()
def early_exit(
    model: Any,
    branches: nn.ModuleList,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    token_type_ids: Tensor | None = None,
    speed: float = 0.0,
    rule: Literal["batch", "sample"] = "batch",
) -> ExitResult:
    """Run ``model``'s layers one by one with ``branches[i]`` after layer ``i + 1``; a row exits at the first branch
    whose normalised entropy is <= ``speed``, rows that never exit take ``model``'s head (:func:`sequence_head`).

    Args:
        model: a BERT-family sequence classifier (``base_model.embeddings``, ``encoder.layer``, ``dropout``,
            ``classifier``).
        branches: one branch per layer but the last.
        rule: ``"batch"``: the batch runs until its last row exits (rows that exited early keep their early
            prediction); ``"sample"``: exited rows leave the batch.
    """
    from transformers.masking_utils import create_bidirectional_mask

    layers = encoder_of(model).layer
    hidden = model.base_model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    mask_2d = attention_mask if attention_mask is not None else torch.ones(input_ids.shape, dtype=torch.long)
    mask_2d = mask_2d.to(hidden.device)
    rows = torch.arange(hidden.shape[0], device=hidden.device)  # the original index of each running row
    logits = torch.zeros(hidden.shape[0], model.config.num_labels, device=hidden.device)
    exit_layers = torch.full((hidden.shape[0],), len(layers), dtype=torch.long, device=hidden.device)
    done = torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device)
    layers_run = 0
    for depth, layer in enumerate(layers, start=1):
        mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask_2d)
        hidden = layer(hidden, mask)
        layers_run = depth
        if depth == len(layers):
            break
        branch = branches[depth - 1](hidden, mask_2d)
        exits = (normalised_entropy(branch) <= speed) & ~done[rows]
        logits[rows[exits]] = branch[exits].float()
        exit_layers[rows[exits]] = depth
        done[rows[exits]] = True
        if bool(done.all()):
            return ExitResult(logits, exit_layers, layers_run)
        if rule == "sample":
            keep = ~done[rows]
            rows, hidden, mask_2d = rows[keep], hidden[keep], mask_2d[keep]
    final = sequence_head(model, hidden)
    remaining = ~done[rows]
    logits[rows[remaining]] = final[remaining].float()
    return ExitResult(logits, exit_layers, layers_run)


@dataclass(frozen=True)
class SweepPoint:
    """One ``speed`` threshold of a sweep.

    Attributes:
        speed: the threshold.
        predictions: (N,) class ids, in the order of the batches.
        exit_layers: (N,) the layer each row exited after.
        layers_run: per batch, the layers it ran (under the ``"batch"`` rule: its deepest row's exit).
    """

    speed: float
    predictions: Tensor
    exit_layers: Tensor
    layers_run: list[int]

    @property
    def mean_exit_layer(self) -> float:
        """The average layer a row exits after."""
        return float(self.exit_layers.float().mean())

    @property
    def mean_layers_run(self) -> float:
        """The average layers a batch ran: the cost the batch rule makes every row pay."""
        return sum(self.layers_run) / max(1, len(self.layers_run))


def sweep(
    model: FastBertModel,
    batches: list[dict[str, Tensor]],
    speeds: list[float],
    rule: Literal["batch", "sample"] = "batch",
) -> list[SweepPoint]:
    """Early-exit predictions of ``batches`` (model inputs) at every threshold of ``speeds``, in that order."""
    points = []
    for speed in speeds:
        results = [model.exit_forward(**batch, speed=speed, rule=rule) for batch in batches]
        points.append(
            SweepPoint(
                speed,
                torch.cat([r.logits.argmax(-1).cpu() for r in results]),
                torch.cat([r.exit_layers.cpu() for r in results]),
                [r.layers_run for r in results],
            )
        )
    return points
