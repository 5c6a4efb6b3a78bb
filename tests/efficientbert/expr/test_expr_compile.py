"""The compiler: module structure, semantics against hand-written formulas, gradients and torch.export."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from expr_strategies import EXPR_SETTINGS, valid_exprs
from hypothesis import given
from torch import Tensor, nn

from effbert.methods.efficientbert.expr import (
    Expr,
    compile_expr,
    intermediate_width,
    nodes,
    paper_architectures,
    parse,
    size_id,
    vanilla,
)
from effbert.methods.efficientbert.expr.compile import BINARY_MODULES, UNARY_MODULES, ExprNode, Input, LinearNode

H = 540


def _weights(hidden: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(k, hidden), (k,), (hidden, k), (hidden,)]
    return [torch.randn(*shape, generator=gen, dtype=dtype) / hidden**0.5 for shape in shapes]


def _inputs(expr: Expr, hidden: int, dtype: torch.dtype = torch.float64) -> list[Tensor]:
    size = size_id(expr)
    k = hidden if size is None else intermediate_width(hidden, size[1])
    x = torch.randn(2, 3, hidden, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return [x, *_weights(hidden, k, dtype=dtype)]


def _mlp(act: Callable[[Tensor], Tensor], x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    return F.linear(act(F.linear(x, w1, b1)), w2, b2)


# The "unit function" column of the reference's section 6, written out by hand.
REFERENCE: list[Callable[..., Tensor]] = [
    lambda x, w1, b1, w2, b2: torch.tanh(_mlp(F.gelu, x, w1, b1, w2, b2)),
    lambda x, w1, b1, w2, b2: F.elu(_mlp(F.gelu, x, w1, b1, w2, b2)),
    lambda x, w1, b1, w2, b2: torch.sigmoid(_mlp(F.relu, x, w1, b1, w2, b2)),
    lambda x, w1, b1, w2, b2: _mlp(F.gelu, torch.maximum(x, torch.tanh(x)), w1, b1, w2, b2),
    lambda x, w1, b1, w2, b2: F.linear(F.relu(F.linear(x, w1, b1) * x[..., : w1.shape[0]]), w2, b2),
    lambda x, w1, b1, w2, b2: F.leaky_relu(_mlp(F.gelu, x, w1, b1, w2, b2), 0.01),
]


@pytest.mark.parametrize("layer", range(6))
def test_paper_expressions_compute_their_formulas(layer: int) -> None:
    expr = paper_architectures()[layer]
    args = _inputs(expr, H)
    assert args[1].shape == (H // size_id(expr)[1], H)  # type: ignore[index]
    out = compile_expr(expr)(*args)
    assert out.shape == (2, 3, H)
    torch.testing.assert_close(out, REFERENCE[layer](*args))


def test_compiled_module_has_no_state_and_one_module_per_node() -> None:
    expr = parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
    module = compile_expr(expr)
    assert list(module.parameters()) == [] and list(module.buffers()) == []
    names = {cls: op for op, cls in {**BINARY_MODULES, **UNARY_MODULES}.items()}

    def preorder(node: nn.Module) -> list[str]:
        assert isinstance(node, ExprNode)
        label = "x" if isinstance(node, Input) else "linear" if isinstance(node, LinearNode) else names[type(node)]
        return [label] + [op for child in getattr(node, "args", []) for op in preorder(child)]

    assert preorder(module.root) == [n.op for n in nodes(expr) if n.op not in ("wb1", "wb2")]
    assert "linear1_2(relu(mul" in repr(module)


@pytest.mark.parametrize("op", sorted(UNARY_MODULES))
def test_each_activation(op: str) -> None:
    expected = {
        "gelu": F.gelu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": F.relu,
        "leaky_relu": lambda t: torch.where(t > 0, t, 0.01 * t),
        "elu": lambda t: torch.where(t > 0, t, torch.expm1(t)),
        "swish": F.silu,
    }[op]
    x, w1, b1, w2, b2 = _inputs(vanilla(), 8)
    module = compile_expr(parse(f"linear({op}(linear(x,wb1)),wb2)"))
    torch.testing.assert_close(module(x, w1, b1, w2, b2), _mlp(expected, x, w1, b1, w2, b2))


def test_min_width_truncation_for_every_binary_op() -> None:
    x, w1, b1, w2, b2 = _inputs(vanilla((1, 3)), 12)  # k = 4
    combine = {"add": torch.add, "mul": torch.mul, "max": torch.maximum}
    for op, fn in combine.items():
        for text in (f"{op}(linear1_3(x,wb1),x)", f"{op}(x,linear1_3(x,wb1))"):
            module = compile_expr(parse(f"linear1_3(gelu({text}),wb2)"))
            expected = F.linear(F.gelu(fn(F.linear(x, w1, b1), x[..., :4])), w2, b2)
            torch.testing.assert_close(module(x, w1, b1, w2, b2), expected)


def test_gelu_approximation_option() -> None:
    args = _inputs(vanilla(), 8)
    exact = compile_expr(vanilla())(*args)
    tanh = compile_expr(vanilla(), gelu_approximate="tanh")(*args)
    torch.testing.assert_close(tanh, _mlp(lambda t: F.gelu(t, approximate="tanh"), *args))
    assert not torch.equal(exact, tanh)
    with pytest.raises(ValueError, match="gelu_approximate"):
        compile_expr(vanilla(), gelu_approximate="erf")


@pytest.mark.parametrize("text", ["gelu(wb1)", "linear(gelu(linear(x,x)),wb2)", "add(x,wb2)", "wb1"])
def test_compile_rejects_misplaced_weights(text: str) -> None:
    with pytest.raises(ValueError, match="cannot compile"):
        compile_expr(parse(text))


@given(valid_exprs)
@EXPR_SETTINGS
def test_generated_expressions_run_and_pass_gradients(case: tuple[int, Expr]) -> None:
    hidden, expr = case
    args = [t.requires_grad_() for t in _inputs(expr, hidden)]
    out = compile_expr(expr)(*args)
    assert out.shape == (2, 3, hidden)
    out.square().sum().backward()
    for name, tensor in zip(("x", "w1", "b1", "w2", "b2"), args, strict=True):
        assert tensor.grad is not None, name
        assert torch.isfinite(tensor.grad).all(), name


def test_vanilla_gradients_are_nonzero() -> None:
    args = [t.requires_grad_() for t in _inputs(vanilla((2, 2)), 16)]
    compile_expr(vanilla((2, 2)))(*args).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in args)


def test_torch_export_of_a_paper_expression() -> None:
    for expr in (paper_architectures()[3], paper_architectures()[4]):  # max/tanh, and mul with truncation
        module = compile_expr(expr)
        args = tuple(_inputs(expr, H, dtype=torch.float32))
        program = torch.export.export(module, args)
        assert len(program.state_dict) == 0
        torch.testing.assert_close(program.module()(*args), module(*args))


def test_onnx_export_of_a_paper_expression() -> None:
    pytest.importorskip("onnxscript")
    expr = paper_architectures()[4]
    args = tuple(_inputs(expr, H, dtype=torch.float32))
    assert torch.onnx.export(compile_expr(expr), args, dynamo=True) is not None
