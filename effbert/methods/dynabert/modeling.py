"""A DynaBERT sub-network as a standalone model family (``model_type`` "effbert-dynabert"): a BERT whose layers
keep ``kept_heads`` of ``num_attention_heads`` attention heads (head size unchanged) and ``intermediate_size`` FFN
neurons.

Transformers' BERT ties the attention width to the hidden size (``hidden_size / num_attention_heads`` per head,
every head kept), so a sub-network narrower than its hidden size needs its own config and classes: they build
stock BERT modules and narrow every layer's query, key, value and attention-output projections to the kept heads.
Importing this module registers the family with transformers' Auto classes (config, bare model, sequence
classifier).
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
)

__all__ = ["DynaBertConfig", "DynaBertForSequenceClassification", "DynaBertModel", "narrow_attention", "register"]


@strict
class DynaBertConfig(BertConfig):
    r"""Configuration of an extracted DynaBERT sub-network: a `BertConfig` plus ``kept_heads``.

    Args:
        kept_heads (`int`, *optional*): attention heads every layer runs, each of size
            ``hidden_size / num_attention_heads`` (``num_attention_heads`` is the full model's count); None = all.
        dynabert_width (`float`, *optional*): the width multiplier the sub-network was cut at (information only).
        dynabert_depth (`float`, *optional*): the depth multiplier it was cut at (information only).
    """

    model_type = "effbert-dynabert"

    kept_heads: int | None = None
    dynabert_width: float | None = None
    dynabert_depth: float | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if self.kept_heads is None:
            self.kept_heads = self.num_attention_heads
        if not 0 < self.kept_heads <= self.num_attention_heads:
            raise ValueError(f"kept_heads must be in [1, num_attention_heads={self.num_attention_heads}]")
        super().__post_init__(**kwargs)


def narrow_attention(bert: BertModel, config: DynaBertConfig) -> None:
    """Give every layer of ``bert`` ``config.kept_heads`` heads: its projections become smaller ``nn.Linear``s
    (freshly initialised; loading a checkpoint fills them)."""
    kept = int(config.kept_heads or config.num_attention_heads)
    layers: Any = bert.encoder.layer
    for layer in layers:
        attention: Any = layer.attention.self
        width = kept * attention.attention_head_size
        attention.num_attention_heads = kept
        attention.all_head_size = width
        for name in ("query", "key", "value"):
            setattr(attention, name, nn.Linear(config.hidden_size, width))
        layer.attention.output.dense = nn.Linear(width, config.hidden_size)


class DynaBertModel(BertModel):
    """The bare encoder of a DynaBERT sub-network."""

    config_class = DynaBertConfig

    def __init__(self, config: DynaBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        narrow_attention(self, config)


class DynaBertForSequenceClassification(BertForSequenceClassification):
    """A DynaBERT sub-network with BERT's sequence classification (or regression) head."""

    config_class = DynaBertConfig

    def __init__(self, config: DynaBertConfig) -> None:
        super().__init__(config)
        narrow_attention(self.bert, config)


def register() -> None:
    """Register the family with transformers' Auto classes (idempotent)."""
    AutoConfig.register(DynaBertConfig.model_type, DynaBertConfig, exist_ok=True)
    AutoModel.register(DynaBertConfig, DynaBertModel, exist_ok=True)
    AutoModelForSequenceClassification.register(DynaBertConfig, DynaBertForSequenceClassification, exist_ok=True)


register()
