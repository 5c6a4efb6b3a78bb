"""effbert.models.surgery: the encoder of a BERT-family model, and swaps undone even when the block raises."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from effbert.models.surgery import encoder_of, swapped


def test_swaps_hold_inside_the_block_and_are_undone_after_an_error() -> None:
    model = BertModel(
        BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8)
    )
    encoder = encoder_of(model)
    own, dense = encoder.layer, encoder.layer[0].intermediate.dense
    shorter, stand_in = torch.nn.ModuleList([own[1]]), torch.nn.Linear(8, 8)
    swaps = {(encoder, "layer"): shorter, (own[0].intermediate, "dense"): stand_in}
    with pytest.raises(RuntimeError, match="inside"), swapped(swaps):
        assert encoder.layer is shorter and own[0].intermediate.dense is stand_in
        raise RuntimeError("inside")
    assert encoder.layer is own and own[0].intermediate.dense is dense


def test_a_model_without_a_bert_encoder_is_named() -> None:
    with pytest.raises(ValueError, match="Linear: no BERT-style encoder"):
        encoder_of(torch.nn.Linear(2, 2))
