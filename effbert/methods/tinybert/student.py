"""TinyBERT's student: a BERT of the teacher's family, shaped to fit a parameter window.

The paper's TinyBERT-4 is 4 layers, H=312, FFN 1200 (ratio 3.85), 12 heads, 14.5M parameters with BERT's 30,522-word
table. effbert sizes it to EfficientBERT's window on the profile's frame, so the two compete at the same size:
the widest hidden size (a multiple of the teacher's heads, which the attention-score loss pairs one to one) whose
model with an FFN of ``ffn_ratio x H`` stays at or under the window's top, then the widest FFN that still does.
Counts include the hidden-state projection to the teacher's width, as the paper counts EfficientBERT's window.
"""

from __future__ import annotations

from typing import Any

import torch

from effbert.errors import EffbertError

__all__ = ["parameter_count", "student_config"]


def parameter_count(config: Any, teacher_hidden: int) -> int:
    """Parameters of a BERT encoder built from ``config`` (no task head), plus the ``H -> teacher_hidden``
    projection of the hidden-state loss (weight and bias)."""
    from transformers import BertModel

    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=False)
    return sum(p.numel() for p in model.parameters()) + config.hidden_size * teacher_hidden + teacher_hidden


def student_config(teacher_config: Any, layers: int, window: tuple[int, int], ffn_ratio: float = 4.0) -> Any:
    """The student's ``BertConfig``: ``layers`` layers, the teacher's heads, vocabulary and positions, sized into
    ``window`` (see the module doc).

    Raises:
        EffbertError: no shape lands inside the window (the token table alone may exceed it).
    """
    from transformers import BertConfig

    heads = teacher_config.num_attention_heads
    teacher_hidden = teacher_config.hidden_size

    def shaped(hidden: int, ffn: int) -> Any:
        return BertConfig(
            vocab_size=teacher_config.vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ffn,
            max_position_embeddings=teacher_config.max_position_embeddings,
            type_vocab_size=teacher_config.type_vocab_size,
            hidden_act=teacher_config.hidden_act,
            layer_norm_eps=teacher_config.layer_norm_eps,
        )

    low, high = window
    hidden = heads
    if parameter_count(shaped(hidden, round(ffn_ratio * hidden)), teacher_hidden) > high:
        raise EffbertError(f"tinybert: no student of {layers} layers fits the parameter window {window}")
    while parameter_count(shaped(hidden + heads, round(ffn_ratio * (hidden + heads))), teacher_hidden) <= high:
        hidden += heads
    base = parameter_count(shaped(hidden, 1), teacher_hidden)
    per_neuron = parameter_count(shaped(hidden, 2), teacher_hidden) - base  # FFN parameters grow linearly
    ffn = 1 + (high - base) // per_neuron
    config = shaped(hidden, ffn)
    if parameter_count(config, teacher_hidden) < low:
        raise EffbertError(f"tinybert: the widest {layers}-layer student ({hidden}, FFN {ffn}) is under {window}")
    return config
