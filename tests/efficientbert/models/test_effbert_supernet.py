"""Supernet slicing vs materialized compact models, the active-architecture API, parameter counts, export."""

from __future__ import annotations

import random

import pytest
import torch
from effbert_helpers import batch

from effbert.methods.efficientbert.architecture import Architecture, load_architecture
from effbert.methods.efficientbert.configuration_effbert import VANILLA_EXPR
from effbert.methods.efficientbert.expr import ALL_SIZES, PAPER_EXPRESSIONS, random_expr
from effbert.methods.efficientbert.modeling_effbert import (
    EffBertForQuestionAnswering,
    EffBertForSequenceClassification,
    EffBertModel,
)
from effbert.methods.efficientbert.supernet import (
    active,
    active_architecture,
    materialize,
    param_count,
    set_active,
    supernet_config,
)

HIDDEN = 48


def tiny_supernet_config(layers: int, **overrides: object) -> object:
    return supernet_config(
        hidden_size=HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=4,
        vocab_size=99,
        embedding_size=8,
        max_position_embeddings=64,
        **overrides,
    )


def random_architecture(seed: int, layers: int) -> Architecture:
    rng = random.Random(seed)
    sizes = [rng.choice(ALL_SIZES) for _ in range(layers)]
    exprs = [str(random_expr(rng, HIDDEN, size)) for size in sizes]
    return Architecture.from_size_ids(exprs, sizes, HIDDEN, name=f"random{seed}")


def architectures() -> list[Architecture]:
    paper = load_architecture("efficientbert").scaled(HIDDEN, name="paper48")
    vanilla = Architecture.from_size_ids([VANILLA_EXPR] * 6, [(1, 1)] * 6, HIDDEN, name="vanilla48")
    return [paper, vanilla, random_architecture(1, 6), random_architecture(2, 6)]


def test_supernet_config_capacity() -> None:
    config = supernet_config()
    assert (config.max_ffn_units, config.max_ffn_width) == (4, 540)
    assert config.ffn_units == [4] * 6 and config.ffn_widths == [540] * 6
    assert param_count(config, fit_dense_size=768) == 25_875_324  # the paper's 25.9M incl. fit_dense


@pytest.mark.parametrize("head", ["model", "classifier", "qa"])
def test_sliced_supernet_equals_materialized(head: str) -> None:
    config = tiny_supernet_config(6, num_labels=3)
    supernet = {
        "model": lambda: EffBertModel(config),
        "classifier": lambda: EffBertForSequenceClassification(config),
        "qa": lambda: EffBertForQuestionAnswering(config),
    }[head]().eval()
    inputs = batch()
    physical = sum(p.numel() for p in supernet.parameters())
    for arch in architectures():
        with active(supernet, arch):
            assert active_architecture(supernet, name=arch.name) == arch
            with torch.no_grad():
                sliced = supernet(**inputs, output_hidden_states=True)
            compact = materialize(supernet)
            counted = param_count(supernet)
        assert type(compact) is type(supernet) and not compact.training
        assert compact.config.max_ffn_units is None and compact.config.architecture(name=arch.name) == arch
        with torch.no_grad():
            out = compact(**inputs, output_hidden_states=True)
        for a, b in zip(out.to_tuple(), sliced.to_tuple(), strict=True):
            if isinstance(a, tuple):
                assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b, strict=True))
            else:
                assert torch.allclose(a, b, atol=1e-5)
        body = compact if isinstance(compact, EffBertModel) else compact.effbert
        pooler = sum(p.numel() for n, p in body.named_parameters() if n.startswith("pooler."))
        assert sum(p.numel() for p in body.parameters()) == counted + pooler
        assert counted == param_count(compact.config)
        assert all(p.is_contiguous() for p in compact.parameters())
        assert sum(p.numel() for p in supernet.parameters()) == physical  # the supernet is untouched
    # the context manager restored the full supernet
    assert active_architecture(supernet).units == [4] * 6


def test_materialized_weights_are_leading_slices_and_independent() -> None:
    supernet = EffBertModel(tiny_supernet_config(6)).eval()
    arch = load_architecture("efficientbert").scaled(HIDDEN)
    compact = materialize(supernet, arch)
    assert len(compact.encoder.layer[0].mlp.units) == 4 and len(compact.encoder.layer[2].mlp.units) == 1
    unit, source = compact.encoder.layer[5].mlp.units[1], supernet.encoder.layer[5].mlp.units[1]
    assert unit.intermediate.weight.shape == (16, HIDDEN) and unit.output.weight.shape == (HIDDEN, 16)
    assert torch.equal(unit.intermediate.weight, source.intermediate.weight[:16])
    assert torch.equal(unit.output.weight, source.output.weight[:, :16])
    assert unit.output.weight.data_ptr() != source.output.weight.data_ptr()
    assert param_count(compact) == param_count(compact.config)


def test_set_active_persists_and_rejects_misfits() -> None:
    supernet = EffBertModel(tiny_supernet_config(2)).eval()
    arch = Architecture.from_size_ids(list(PAPER_EXPRESSIONS[:2]), [(2, 4), (1, 3)], HIDDEN)
    set_active(supernet, arch)
    assert active_architecture(supernet, name=arch.name) == arch
    assert param_count(supernet) < param_count(supernet.config)
    wrong_hidden = Architecture.from_size_ids(list(PAPER_EXPRESSIONS[:2]), [(1, 1)] * 2, 32)
    with pytest.raises(ValueError, match="hidden size 32"):
        set_active(supernet, wrong_hidden)
    compact = materialize(supernet)
    too_big = Architecture.from_size_ids([VANILLA_EXPR] * 2, [(4, 1), (1, 1)], HIDDEN)
    with pytest.raises(ValueError, match="layer 1 needs 4 units of width 48"):
        set_active(compact, too_big)
    with pytest.raises(TypeError, match="expected an EffBertModel"):
        set_active(torch.nn.Linear(2, 2), arch)


def test_training_mode_and_gradients_through_the_slice() -> None:
    supernet = EffBertForSequenceClassification(tiny_supernet_config(2, num_labels=2))
    arch = Architecture.from_size_ids([VANILLA_EXPR] * 2, [(1, 2), (2, 4)], HIDDEN)
    with active(supernet, arch):
        supernet(**batch(), labels=torch.tensor([0, 1, 0])).loss.backward()
    layer0 = supernet.effbert.encoder.layer[0].mlp.units
    assert layer0[0].intermediate.weight.grad[:24].abs().sum() > 0
    assert torch.all(layer0[0].intermediate.weight.grad[24:] == 0)  # neurons outside the slice get nothing
    assert layer0[1].intermediate.weight.grad is None  # inactive unit
    compact = materialize(supernet, arch)
    assert compact.training


def test_export_materialized_student() -> None:
    supernet = EffBertForSequenceClassification(tiny_supernet_config(2, num_labels=2)).eval()
    arch = Architecture.from_size_ids(list(PAPER_EXPRESSIONS[3:5]), [(2, 2), (1, 2)], HIDDEN)
    compact = materialize(supernet, arch)
    inputs = batch()
    exported = torch.export.export(compact, args=(), kwargs=inputs)
    with torch.no_grad():
        expected = compact(**inputs).logits
    assert torch.allclose(exported.module()(**inputs).logits, expected, atol=1e-5)
