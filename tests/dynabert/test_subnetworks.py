"""DynaBERT mechanics: sizes and kept layers (the official rounding), rewiring as a function-preserving permutation
in importance order, sliced forward passes equal to a model with the dropped units removed, gradients reaching the
full weights, and extraction."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertForSequenceClassification

from effbert.methods.dynabert.subnetworks import extract, importance, kept_layers, rewire, subnetwork, width_sizes
from tests.conftest import tiny_bert_classifier


def tiny_model() -> BertForSequenceClassification:
    return tiny_bert_classifier(num_attention_heads=4)


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 50, (3, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch()).logits


def test_sizes_and_depths_follow_the_official_rounding() -> None:
    assert [width_sizes(12, 3072, w) for w in (0.25, 0.5, 0.75, 1.0)] == [(3, 768), (6, 1536), (9, 2304), (12, 3072)]
    assert kept_layers(12, 0.5) == [0, 2, 4, 6, 8, 10]
    assert kept_layers(12, 0.75) == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert kept_layers(12, 1.0) == list(range(12))
    assert kept_layers(6, 0.5) == [0, 2, 4]
    with pytest.raises(ValueError, match="depth must be in"):
        kept_layers(4, 0.1)
    with pytest.raises(ValueError, match="width must be in"):
        width_sizes(4, 32, 1.5)


def test_rewiring_is_a_permutation_that_keeps_the_full_model_and_orders_units() -> None:
    model = tiny_model()
    before = logits(model)
    query0 = model.bert.encoder.layer[0].attention.self.query.weight.clone()
    ffn0 = model.bert.encoder.layer[0].intermediate.dense.weight.clone()
    heads = torch.rand(4, 4, generator=torch.Generator().manual_seed(3))
    neurons = torch.rand(4, 32, generator=torch.Generator().manual_seed(4))
    rewire(model, heads, neurons)
    assert torch.allclose(logits(model), before, atol=1e-5)
    best_head = int(heads[0].argmax())  # head size 4: rows 4h..4h+3
    assert torch.equal(
        model.bert.encoder.layer[0].attention.self.query.weight[:4], query0[4 * best_head : 4 * best_head + 4]
    )
    order = neurons[0].argsort(descending=True)
    assert torch.equal(model.bert.encoder.layer[0].intermediate.dense.weight, ffn0[order])


@pytest.mark.parametrize(("width", "depth"), [(1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.25, 0.75), (0.75, 0.5)])
def test_a_subnetwork_is_the_model_without_its_dropped_units(width: float, depth: float) -> None:
    model = tiny_model()
    reference = copy.deepcopy(model)  # the dropped heads' and neurons' outputs zeroed, the dropped layers removed
    kept_heads, kept_neurons = width_sizes(4, 32, width)
    with torch.no_grad():
        for layer in reference.bert.encoder.layer:
            layer.attention.output.dense.weight[:, kept_heads * 4 :] = 0
            layer.output.dense.weight[:, kept_neurons:] = 0
    own = reference.bert.encoder.layer
    reference.bert.encoder.layer = torch.nn.ModuleList(own[i] for i in kept_layers(4, depth))
    with subnetwork(model, width, depth):
        sliced = logits(model)
    assert torch.allclose(sliced, logits(reference), atol=1e-5)
    assert len(model.bert.encoder.layer) == 4 and isinstance(
        model.bert.encoder.layer[0].attention.self.query, torch.nn.Linear
    )  # restored
    compact = extract(model, width, depth)
    assert torch.allclose(logits(compact), sliced, atol=1e-5)
    assert compact.config.num_hidden_layers == len(kept_layers(4, depth))
    assert sum(p.numel() for p in compact.parameters()) <= sum(p.numel() for p in model.parameters())


def test_training_a_subnetwork_reaches_only_its_slice_of_the_full_weights() -> None:
    model = tiny_model().train()
    with subnetwork(model, 0.5, 0.5):
        model(**batch(), labels=torch.tensor([0, 1, 1])).loss.backward()
    layers = model.bert.encoder.layer
    query = layers[0].attention.self.query.weight.grad
    assert query is not None and query[:8].abs().sum() > 0 and torch.all(query[8:] == 0)
    ffn_out = layers[2].output.dense.weight.grad
    assert ffn_out is not None and torch.all(ffn_out[:, 16:] == 0) and ffn_out[:, :16].abs().sum() > 0
    assert layers[1].intermediate.dense.weight.grad is None  # layer 1 is not kept at depth 0.5


def test_importance_scores_every_head_and_neuron_and_clears_gradients() -> None:
    model = tiny_model()
    batches = [{**batch(), "labels": torch.tensor([0, 1, 1])}, {**batch(), "labels": torch.tensor([1, 0, 0])}]
    heads, neurons = importance(model, batches)
    assert heads.shape == (4, 4) and neurons.shape == (4, 32)
    assert torch.all(heads >= 0) and torch.all(neurons >= 0) and heads.sum() > 0 and neurons.sum() > 0
    one_a, _ = importance(model, batches[:1])
    one_b, _ = importance(model, batches[1:])
    assert torch.allclose(heads, one_a + one_b, atol=1e-6)  # per-batch scores summed, not running sums of gradients
    assert all(p.grad is None for p in model.parameters())
