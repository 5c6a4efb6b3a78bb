"""Register EffBert with transformers' Auto classes, so ``AutoModel*.from_pretrained(dir)`` builds the student."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from effbert.models.configuration_effbert import EffBertConfig
from effbert.models.modeling_effbert import (
    EffBertForQuestionAnswering,
    EffBertForSequenceClassification,
    EffBertModel,
)

__all__ = ["register"]


def register() -> None:
    """Register ``"effbert"`` with AutoConfig, AutoModel, AutoModelForSequenceClassification and
    AutoModelForQuestionAnswering. Safe to call any number of times.
    """
    AutoConfig.register(EffBertConfig.model_type, EffBertConfig, exist_ok=True)
    AutoModel.register(EffBertConfig, EffBertModel, exist_ok=True)
    AutoModelForSequenceClassification.register(EffBertConfig, EffBertForSequenceClassification, exist_ok=True)
    AutoModelForQuestionAnswering.register(EffBertConfig, EffBertForQuestionAnswering, exist_ok=True)
