"""The inference kernels: the fused oneDNN path agrees with the eager composite, training stays on torch's own ops,
and a parameter changed in place is seen by the next call (the cached blocked weight is refreshed)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from effbert_helpers import batch, tiny_config

from effbert.methods.efficientbert import kernels
from effbert.methods.efficientbert.expr import compile_expr, parse
from effbert.methods.efficientbert.expr.compile import UNARY_MODULES
from effbert.methods.efficientbert.modeling_effbert import EffBertModel

FUSED = [op for op, cls in UNARY_MODULES.items() if cls.post_op is not None or op == "gelu"]


def _weights(k: int = 24, hidden: int = 40) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(k, hidden), (k,), (hidden, k), (hidden,)]
    return [torch.randn(*shape, generator=gen) / hidden**0.5 for shape in shapes]


@pytest.mark.parametrize("op", FUSED)
def test_a_fused_activation_agrees_with_the_eager_one(op: str) -> None:
    module = compile_expr(parse(f"linear({op}(linear(x,wb1)),wb2)"))
    x = torch.randn(2, 5, 40, generator=torch.Generator().manual_seed(1))
    eager = module(x, *_weights())  # autograd on: torch's own ops
    with torch.no_grad():
        fused = module(x, *_weights())
        residual = module.residual(x, *_weights())
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(residual, x + eager, rtol=1e-5, atol=1e-5)


def test_training_runs_torch_ops_exactly() -> None:
    lin = kernels.FusedLinear(40, 24)
    x = torch.randn(3, 40)
    assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))
    t = torch.randn(3, 40)
    assert torch.equal(kernels.tanh(t), torch.tanh(t))
    with torch.no_grad():
        torch.testing.assert_close(kernels.tanh(t), torch.tanh(t), rtol=0, atol=1e-6)


def test_an_in_place_change_reaches_the_next_call() -> None:
    lin = kernels.FusedLinear(40, 24)
    x = torch.randn(3, 40)
    with torch.no_grad():
        before = lin(x)
        lin.weight.mul_(2)  # bumps the version counter: the cached blocked weight is stale
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-5)
        lin.load_state_dict({"weight": torch.zeros(24, 40), "bias": torch.ones(24)})
        assert torch.equal(lin(x), torch.ones(3, 24))
        copied = copy.deepcopy(lin)
        assert torch.equal(copied(x), lin(x)) and not torch.equal(before, lin(x))


def test_the_model_at_inference_agrees_with_training_mode_arithmetic() -> None:
    model = EffBertModel(tiny_config()).eval()  # fused tanh, GELU and ReLU; a fused residual add
    seen: list[torch.Size] = []
    model.encoder.layer[0].attention.self.qkv.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    inputs = batch()
    eager = model(**inputs).last_hidden_state
    with torch.inference_mode():
        fused = model(**inputs).last_hidden_state
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)
    assert len(seen) == 2  # the qkv projection is still called as a module (hooks see it)


def test_use_fused_linears_keeps_a_bert_model_and_its_outputs() -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False).eval()
    ids = torch.randint(0, config.vocab_size, (2, 7))
    with torch.no_grad():
        stock = model(input_ids=ids).last_hidden_state
        fused_model = kernels.use_fused_linears(copy.deepcopy(model))
        fused = fused_model(input_ids=ids).last_hidden_state
    linears = [m for m in fused_model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is kernels.FusedLinear for m in linears)
    assert fused_model.state_dict().keys() == model.state_dict().keys()
    torch.testing.assert_close(fused, stock, rtol=1e-5, atol=1e-5)
