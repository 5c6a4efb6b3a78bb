"""TinyBERT's student shape: inside the window, heads paired with the teacher's, the widest such model."""

from __future__ import annotations

import pytest
from transformers import BertConfig

from effbert.errors import EffbertError
from effbert.methods.tinybert.student import parameter_count, student_config

DEMO_TEACHER = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12)
BERT_BASE = BertConfig()


def test_count_matches_a_built_model_plus_the_projection() -> None:
    from transformers import BertModel

    config = BertConfig(
        vocab_size=100, hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40
    )
    built = sum(p.numel() for p in BertModel(config, add_pooling_layer=False).parameters())
    assert parameter_count(config, 48) == built + 24 * 48 + 48


@pytest.mark.parametrize(
    ("teacher", "layers", "window"),
    [(DEMO_TEACHER, 3, (5_470_000, 5_590_000)), (BERT_BASE, 4, (15_000_000, 16_000_000))],
)
def test_the_student_is_the_widest_shape_inside_the_window(teacher: BertConfig, layers: int, window) -> None:
    config = student_config(teacher, layers, window)
    count = parameter_count(config, teacher.hidden_size)
    assert window[0] <= count <= window[1]
    assert config.num_attention_heads == teacher.num_attention_heads and config.num_hidden_layers == layers
    assert config.hidden_size % teacher.num_attention_heads == 0
    wider_ffn = BertConfig(**{**config.to_dict(), "intermediate_size": config.intermediate_size + 1})
    assert parameter_count(wider_ffn, teacher.hidden_size) > window[1]
    h = config.hidden_size + teacher.num_attention_heads
    wider = BertConfig(**{**config.to_dict(), "hidden_size": h, "intermediate_size": 4 * h})
    assert parameter_count(wider, teacher.hidden_size) > window[1]


def test_a_window_below_the_token_table_is_an_error() -> None:
    with pytest.raises(EffbertError, match="no student of 3 layers fits the parameter window"):
        student_config(DEMO_TEACHER, 3, (100_000, 200_000))
