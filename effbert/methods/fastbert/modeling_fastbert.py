"""FastBERT as a Hugging Face model: a fine-tuned BERT sequence classifier with its self-distilled branches.

`FastBertForSequenceClassification` is BERT's sequence classifier (``bert``, ``dropout``, ``classifier``: the
teacher's weights, unchanged) plus ``branches`` (one `BranchClassifier` after every layer but the last). Its plain
``forward`` is the teacher's (every layer, the final classifier: FastBERT at speed 0), so every tool that runs a
sequence classifier (the shared evaluation, the export) sees the teacher. :meth:`~FastBertForSequenceClassification.
exit_forward` is the early-exit inference at a ``speed`` threshold (default: the config's ``speed``), the same code
as the training wrapper's (`early_exit.early_exit`).

`FastBertConfig` is BERT's config with ``branch_width``, ``branch_heads`` and ``speed``; ``model_type``
"effbert-fastbert". Importing this file registers both with transformers' Auto classes (AutoConfig, AutoModel: the
bare encoder, AutoModelForSequenceClassification); `effbert.models.auto.register_students` imports it.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
)

from effbert.methods.fastbert.early_exit import (
    ExitResult,
    FastBertModel,
    branch_predictions,
    early_exit,
    make_branches,
    require_classifier,
)

__all__ = ["FastBertConfig", "FastBertEncoder", "FastBertForSequenceClassification", "from_trained", "register"]


class FastBertConfig(BertConfig):
    r"""BERT's configuration plus FastBERT's branches.

    Args:
        branch_width (`int`, defaults to 128): each branch's width (the paper: 128).
        branch_heads (`int`, defaults to 2): each branch's self-attention heads (the paper: 2).
        speed (`float`, defaults to 0.0): the default exit threshold of ``exit_forward`` (normalised entropy in
            [0, 1]; 0 runs every layer).
        **kwargs: BERT's configuration.
    """

    model_type = "effbert-fastbert"

    branch_width: int = 128
    branch_heads: int = 2
    speed: float = 0.0

    def __post_init__(self, **kwargs: Any) -> None:
        if not 0.0 <= float(self.speed) <= 1.0:
            raise ValueError(f"speed must be in [0, 1], got {self.speed!r}")
        for name in ("branch_width", "branch_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.branch_width % self.branch_heads:
            raise ValueError(
                f"branch_width ({self.branch_width}) is not a multiple of branch_heads ({self.branch_heads})"
            )
        super().__post_init__(**kwargs)


class FastBertEncoder(BertModel):
    """The bare BERT encoder of a FastBERT directory (``AutoModel``: sizes, encoder comparisons)."""

    config_class = FastBertConfig


class FastBertForSequenceClassification(BertForSequenceClassification):
    """BERT's sequence classifier (the fine-tuned teacher) with a FastBERT branch after every layer but the last.

    ``forward`` is BERT's (the final classifier after every layer: speed 0); :meth:`exit_forward` exits early.
    """

    config_class = FastBertConfig

    def __init__(self, config: FastBertConfig) -> None:
        BertPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.config = config
        self.bert = BertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        labels = int(config.num_labels or 0)
        self.classifier = nn.Linear(config.hidden_size, labels)
        self.branches = make_branches(
            config.hidden_size, labels, config.num_hidden_layers, config.branch_width, config.branch_heads
        )
        self.post_init()

    def exit_forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        speed: float | None = None,
        rule: Literal["batch", "sample"] = "sample",
    ) -> ExitResult:
        """Early-exit inference: a row leaves after the first layer whose branch's normalised entropy is <= ``speed``
        (None: ``config.speed``); rows that never exit take the final classifier.

        Args:
            rule: ``"sample"``: exited rows leave the batch (per-sample exits); ``"batch"``: the batch runs until its
                last row exits (the paper's batch rule; rows that exited keep their early prediction).
        """
        threshold = self.config.speed if speed is None else speed
        return early_exit(self, self.branches, input_ids, attention_mask, token_type_ids, threshold, rule)

    def branch_logits(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One full pass: the final classifier's logits (B, C) and every branch's (L-1, B, C)."""
        import torch

        out = self(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, output_hidden_states=True
        )
        return out.logits, torch.stack(branch_predictions(self.branches, out.hidden_states, attention_mask))


def from_trained(model: FastBertModel, speed: float = 0.0) -> FastBertForSequenceClassification:
    """The saveable FastBERT of a trained `FastBertModel` (a BERT teacher): the teacher's weights and its branches.

    Raises:
        ValueError: the teacher is not a BERT sequence classifier (``model_type`` "bert").
    """
    teacher = model.teacher
    require_classifier(teacher.config)
    if teacher.config.model_type != "bert" or not isinstance(teacher, BertForSequenceClassification):
        raise ValueError(f"FastBERT's saved model needs a BERT teacher, got model_type {teacher.config.model_type!r}")
    first: Any = model.branches[0]
    config = FastBertConfig(
        **{k: v for k, v in teacher.config.to_dict().items() if k not in ("model_type", "architectures")},
        branch_width=int(first.narrow.out_features),
        branch_heads=int(first.attention.num_heads),
        speed=speed,
    )
    fastbert = FastBertForSequenceClassification(config)
    state = {**teacher.state_dict(), **{f"branches.{k}": v for k, v in model.branches.state_dict().items()}}
    fastbert.load_state_dict(state, strict=True)
    return fastbert.train(False)


def register() -> None:
    """Register ``"effbert-fastbert"`` with AutoConfig, AutoModel and AutoModelForSequenceClassification. Runs when
    this file is imported; safe to call any number of times."""
    AutoConfig.register(FastBertConfig.model_type, FastBertConfig, exist_ok=True)
    AutoModel.register(FastBertConfig, FastBertEncoder, exist_ok=True)
    AutoModelForSequenceClassification.register(FastBertConfig, FastBertForSequenceClassification, exist_ok=True)


register()
