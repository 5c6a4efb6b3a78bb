"""Record what EfficientBERT distils from an unmodified Hugging Face BERT-family model.

EfficientBERT's attention loss uses the PRE-softmax scaled scores ``q @ k^T * scaling + mask`` of every layer, which
Hugging Face models never return (``output_attentions`` gives probabilities, and nothing at all under ``sdpa``). In
transformers 5.x every ``BertSelfAttention`` looks its attention function up by ``config._attn_implementation`` in
``ALL_ATTENTION_FUNCTIONS``, so this module registers one more implementation, :data:`CAPTURE_IMPLEMENTATION`, that
computes eager attention and hands the scores to the recorder of the current call. The mask builder is registered for
the same name (``masking_utils.eager_mask``); without it the padding mask silently arrives as ``None``.

The recorder lives in a :class:`contextvars.ContextVar`, so concurrent or nested calls (threads, two models) never see
each other's scores, and a forward pass run outside :func:`recording_scores` records nothing.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import eager_mask

__all__ = [
    "CAPTURE_IMPLEMENTATION",
    "MASKED_SCORE_THRESHOLD",
    "TeacherSignals",
    "capture",
    "forward_with_signals",
    "recording_scores",
    "zero_masked",
]

CAPTURE_IMPLEMENTATION = "effbert_score_capture"
"""Name under which the score-recording attention function and its mask builder are registered."""

MASKED_SCORE_THRESHOLD = -100.0
"""Scores at or below this value are masked keys (the official code's convention, kept by :func:`zero_masked`)."""

_RECORDER: contextvars.ContextVar[list[torch.Tensor] | None] = contextvars.ContextVar(
    "effbert_attention_score_recorder", default=None
)
# Per-config reference counts, so overlapping captures of the same model (threads) restore the setting only once.
_SWITCH_LOCK = threading.Lock()
_SWITCHED: dict[int, tuple[int, Any]] = {}


def _score_capturing_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention (same arithmetic as BERT's ``eager_attention_forward``) that records the masked scores.

    Args:
        module: the calling attention module (its ``training`` flag drives dropout).
        query: (B, heads, q, d).
        key: (B, heads, k, d).
        value: (B, heads, k, d).
        attention_mask: additive float mask (B, 1, q, k) with 0 / ``finfo.min``, or None (no padding).
        scaling: score scale, default ``d ** -0.5``.
        dropout: attention-probability dropout rate.
        **kwargs: further model kwargs, unused.

    Returns:
        attention output (B, q, heads, d) and attention probabilities (B, heads, q, k).
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, heads, q, k)
    if attention_mask is not None:
        scores = scores + attention_mask
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.append(scores)
    probs = nn.functional.softmax(scores, dim=-1)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, q, heads, d)
    return output, probs


AttentionInterface.register(CAPTURE_IMPLEMENTATION, _score_capturing_attention)
AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, eager_mask)


def zero_masked(scores: torch.Tensor) -> torch.Tensor:
    """Replace every masked score (``<= -100``, including ``-inf``) by 0, as the official attention loss does.

    Args:
        scores: attention scores of any shape, typically (B, heads, q, k).

    Returns:
        a new tensor of the same shape; gradients flow through the kept entries only.
    """
    return scores.masked_fill(scores <= MASKED_SCORE_THRESHOLD, 0.0)  # 3x faster than where() with zeros_like


@dataclass
class TeacherSignals:
    """Everything the EfficientBERT losses read from one forward pass (of the teacher, or of a student).

    Attributes:
        hidden_states: L+1 tensors (B, T, H): the embedding output, then the output of each layer.
        attention_scores: L tensors (B, heads, T, T): pre-softmax scaled scores with the additive mask applied, so
            masked keys hold ``finfo(dtype).min`` (apply :func:`zero_masked` before comparing).
        logits: (B, C) for sequence-classification heads (C = 1 for regression), else None.
        start_logits: (B, T) for question-answering heads, else None.
        end_logits: (B, T) for question-answering heads, else None.
    """

    hidden_states: tuple[torch.Tensor, ...]
    attention_scores: list[torch.Tensor]
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None

    @property
    def num_layers(self) -> int:
        """Number of transformer layers (``len(hidden_states) - 1``)."""
        return len(self.hidden_states) - 1


def _configs(model: nn.Module) -> list[Any]:
    """The distinct Hugging Face configs of ``model`` and its sub-models (head models share one with their body)."""
    seen: dict[int, Any] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            seen.setdefault(id(config), config)
    if not seen:
        raise TypeError(f"{type(model).__name__} has no Hugging Face config; expected a BERT-family PreTrainedModel")
    return list(seen.values())


@contextmanager
def _attention_implementation(model: nn.Module, name: str) -> Iterator[None]:
    """Switch every config of ``model`` to the attention implementation ``name`` and restore it on exit."""
    configs = _configs(model)
    with _SWITCH_LOCK:
        for config in configs:
            count, saved = _SWITCHED.get(id(config), (0, None))
            if count == 0:
                saved = config._attn_implementation
                config._attn_implementation = name
            _SWITCHED[id(config)] = (count + 1, saved)
    try:
        yield
    finally:
        with _SWITCH_LOCK:
            for config in configs:
                count, saved = _SWITCHED.pop(id(config))
                if count == 1:
                    config._attn_implementation = saved
                else:
                    _SWITCHED[id(config)] = (count - 1, saved)


@contextmanager
def recording_scores(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Run ``model`` with the score-recording attention inside the block; yield the list the scores land in.

    Gradients are not disabled, so this also serves a student being trained. The model's previous attention
    implementation is restored on exit, also after an exception. Scores arrive in call order (layer 0 first).

    Args:
        model: a Hugging Face model whose attention dispatches through ``ALL_ATTENTION_FUNCTIONS`` (BERT family).

    Yields:
        the list that receives one (B, heads, q, k) tensor per attention call made inside the block.

    Raises:
        TypeError: if ``model`` carries no Hugging Face config.
    """
    recorder: list[torch.Tensor] = []
    token = _RECORDER.set(recorder)
    try:
        with _attention_implementation(model, CAPTURE_IMPLEMENTATION):
            yield recorder
    finally:
        _RECORDER.reset(token)


def _signals(outputs: Any, scores: list[torch.Tensor], model: nn.Module) -> TeacherSignals:
    """Assemble :class:`TeacherSignals` from a model output and the recorded scores; check their counts agree."""
    hidden_states = getattr(outputs, "hidden_states", None)
    if hidden_states is None:
        raise RuntimeError(f"{type(model).__name__} returned no hidden_states with output_hidden_states=True")
    if len(scores) != len(hidden_states) - 1:
        raise RuntimeError(
            f"recorded {len(scores)} attention-score tensors for {len(hidden_states) - 1} layers: "
            f"{type(model).__name__} does not dispatch its attention through transformers' AttentionInterface "
            "(or uses cross-attention / gradient checkpointing, which are not supported)"
        )
    return TeacherSignals(
        hidden_states=tuple(hidden_states),
        attention_scores=list(scores),
        logits=getattr(outputs, "logits", None),
        start_logits=getattr(outputs, "start_logits", None),
        end_logits=getattr(outputs, "end_logits", None),
    )


def forward_with_signals(model: nn.Module, **inputs: Any) -> TeacherSignals:
    """Run ``model(**inputs)`` WITH gradients and return its signals (for a BERT-family student).

    Args:
        model: a Hugging Face BERT-family model (BertModel or any BertFor* head model).
        **inputs: model inputs (``input_ids``, ``attention_mask`` with 1 = keep, ``token_type_ids``, ...).

    Returns:
        the model's :class:`TeacherSignals`; tensors stay attached to the autograd graph.

    Raises:
        TypeError: if ``model`` carries no Hugging Face config.
        RuntimeError: if the number of recorded score tensors differs from the number of layers.
    """
    with recording_scores(model) as scores:
        outputs = model(**{**inputs, "output_hidden_states": True, "return_dict": True})
    return _signals(outputs, scores, model)


def capture(model: nn.Module, **inputs: Any) -> TeacherSignals:
    """Run an unmodified BERT-family teacher under ``torch.no_grad`` and record its distillation signals.

    The outputs equal those of the model's own eager/sdpa attention (same arithmetic as eager). The training mode is
    left alone: call ``model.eval()`` first so that dropout is off.

    Args:
        model: a Hugging Face BERT-family model (BertModel or any BertFor* head model).
        **inputs: model inputs (``input_ids`` (B, T), ``attention_mask`` (B, T) with 1 = keep, ...).

    Returns:
        :class:`TeacherSignals` with L+1 hidden states, L score tensors and the head's logits when present.

    Raises:
        TypeError: if ``model`` carries no Hugging Face config.
        RuntimeError: if the number of recorded score tensors differs from the number of layers.
    """
    with torch.no_grad():
        return forward_with_signals(model, **inputs)
