"""EfficientBERT-TINY and ++ cut out of a supernet of a wider, shallower frame (`supernet.slice_frame`): the leading
dims of every tensor (query, key and value each their own), the layer map, and the identity at the supernet's frame."""

from __future__ import annotations

import pytest
import torch
from effbert_helpers import batch

from effbert.methods.efficientbert.architecture import load_architecture
from effbert.methods.efficientbert.modeling_effbert import EffBertForSequenceClassification, EffBertModel
from effbert.methods.efficientbert.supernet import materialize, slice_frame, supernet_config

HIDDEN, NARROW, HEADS = 48, 36, 4


def supernet(layers: int = 3) -> EffBertModel:
    config = supernet_config(
        hidden_size=HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        vocab_size=99,
        embedding_size=8,
        max_position_embeddings=64,
    )
    return EffBertModel(config).eval()


def searched(hidden: int, layers: int = 3) -> object:
    return load_architecture("efficientbert").resized(HIDDEN, 3).resized(hidden, layers, name=f"arch{hidden}x{layers}")


def test_at_the_supernets_frame_slicing_is_materialize() -> None:
    net = supernet()
    arch = searched(HIDDEN)
    inputs = batch()
    with torch.no_grad():
        expected = materialize(net, arch)(**inputs).last_hidden_state
        got = slice_frame(net, arch)(**inputs).last_hidden_state
    assert torch.equal(expected, got)


def test_tiny_takes_the_leading_dims_of_every_tensor_and_each_of_query_key_value() -> None:
    net = supernet()
    tiny = slice_frame(net, searched(NARROW))
    assert (tiny.config.hidden_size, tiny.config.num_hidden_layers) == (NARROW, 3)
    assert tiny.config.num_attention_heads == HEADS  # the heads stay as many, each narrower
    big, small = net.state_dict(), tiny.state_dict()
    wide_qkv = big["encoder.layer.1.attention.self.qkv.weight"].reshape(3, HIDDEN, HIDDEN)
    narrow_qkv = small["encoder.layer.1.attention.self.qkv.weight"].reshape(3, NARROW, NARROW)
    for part in range(3):  # query, key and value: each its own [:H', :H'] block (not the first 3H' rows)
        assert torch.equal(narrow_qkv[part], wide_qkv[part, :NARROW, :NARROW])
    assert torch.equal(
        small["embeddings.embedding_transformation.weight"], big["embeddings.embedding_transformation.weight"][:NARROW]
    )
    assert torch.equal(small["embeddings.word_embeddings.weight"], big["embeddings.word_embeddings.weight"])
    width = tiny.config.ffn_widths[2]
    assert torch.equal(
        small["encoder.layer.2.mlp.units.0.intermediate.weight"],
        big["encoder.layer.2.mlp.units.0.intermediate.weight"][:width, :NARROW],
    )
    assert tiny(**batch()).last_hidden_state.shape[-1] == NARROW


def test_plusplus_layer_j_comes_from_supernet_layer_j_over_two() -> None:
    net = supernet()
    arch = searched(NARROW, 6)
    deep = slice_frame(net, arch, [0, 0, 1, 1, 2, 2])
    big, small = net.state_dict(), deep.state_dict()
    for layer in range(6):
        source = big[f"encoder.layer.{layer // 2}.attention.output.dense.weight"]
        assert torch.equal(small[f"encoder.layer.{layer}.attention.output.dense.weight"], source[:NARROW, :NARROW])
    assert deep.config.ffn_exprs == arch.exprs  # every searched expression twice
    assert arch.exprs[0] == arch.exprs[1] and arch.exprs[2] == arch.exprs[3]


def test_head_models_keep_their_prefix() -> None:
    config = supernet().config
    config.num_labels = 2
    classifier = EffBertForSequenceClassification(config).eval()
    sliced = slice_frame(classifier, searched(NARROW))
    assert isinstance(sliced, EffBertForSequenceClassification)
    assert sliced(**batch()).logits.shape == (3, 2)


@pytest.mark.parametrize(
    ("arch_hidden", "layers", "message"),
    [(60, None, "wider"), (NARROW, [0, 1], "layer map"), (NARROW, [0, 1, 3], "layer map")],
)
def test_what_does_not_fit_is_refused(arch_hidden: int, layers: list[int] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        slice_frame(supernet(), searched(arch_hidden), layers)
