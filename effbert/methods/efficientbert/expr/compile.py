"""Compile an expression tree into a parameter-free ``nn.Module`` (the only place where Expr meets torch).

The compiled module is a tree of small modules, one class per op kind, with children in ``nn.ModuleList``s. There
are no Python closures and no string evaluation (unlike the official ``gp.compile``-d lambdas), so it traces under
``torch.export.export`` and ``torch.onnx.export``. The MLP unit owns (and slices) its weights and passes them in:
``forward(x, w1, b1, w2, b2)`` with ``x`` (..., H), ``w1`` (k, H), ``b1`` (k,), ``w2`` (H, k), ``b2`` (H,).

At inference on a CPU in fp32 an activation applied to a linear, and a unit's residual add onto a linear at the root,
run inside the linear's kernel (`effbert.methods.efficientbert.kernels`); the module tree stays one module per node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effbert.methods.efficientbert import kernels
from effbert.methods.efficientbert.expr.tree import WEIGHT_TERMINALS, Binary, Expr, Linear, Term

GELU_APPROXIMATIONS = ("none", "tanh")


class ExprNode(nn.Module, ABC):
    """Abstract base: ``forward(x, w1, b1, w2, b2) -> Tensor`` evaluates the subtree rooted here."""

    @abstractmethod
    def forward(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        """Evaluate the subtree."""


class Input(ExprNode):
    """The terminal ``x``."""

    def forward(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        return x


class LinearNode(ExprNode):
    """``linear(arg, wb1)`` (``pair == 1``: ``arg @ w1.T + b1``) or ``linear(arg, wb2)`` (``arg @ w2.T + b2``)."""

    def __init__(self, arg: ExprNode, pair: int) -> None:
        super().__init__()
        self.args = nn.ModuleList([arg])
        self.pair = pair

    def operands(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The linear's evaluated argument, its weight and its bias."""
        (arg,) = self.args
        t = arg(x, w1, b1, w2, b2)
        return (t, w1, b1) if self.pair == 1 else (t, w2, b2)

    def forward(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        return kernels.linear(*self.operands(x, w1, b1, w2, b2))

    def extra_repr(self) -> str:
        return f"wb{self.pair}"


class BinaryNode(ExprNode):
    """Base of element-wise binary ops; operands of different widths are cut to their first min(width) channels."""

    def __init__(self, left: ExprNode, right: ExprNode) -> None:
        super().__init__()
        self.args = nn.ModuleList([left, right])

    @abstractmethod
    def combine(self, a: Tensor, b: Tensor) -> Tensor:
        """The element-wise operation on equal-width operands."""

    def forward(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        left, right = self.args
        a = left(x, w1, b1, w2, b2)
        b = right(x, w1, b1, w2, b2)
        width = min(a.shape[-1], b.shape[-1])  # static under export: widths are fixed by the weight shapes
        if a.shape[-1] != width:
            a = a[..., :width]
        if b.shape[-1] != width:
            b = b[..., :width]
        return self.combine(a, b)


class Add(BinaryNode):
    """``add(a, b)``."""

    def combine(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class Mul(BinaryNode):
    """``mul(a, b)``: element-wise product."""

    def combine(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b


class Max(BinaryNode):
    """``max(a, b)``: element-wise maximum."""

    def combine(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.maximum(a, b)


class UnaryNode(ExprNode):
    """Base of element-wise activations; ``post_op`` is the same function as a fused oneDNN post-op (None: none)."""

    post_op: kernels.PostOp | None = None

    def __init__(self, arg: ExprNode) -> None:
        super().__init__()
        self.args = nn.ModuleList([arg])

    @abstractmethod
    def activate(self, t: Tensor) -> Tensor:
        """The activation function."""

    def forward(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        (arg,) = self.args
        if isinstance(arg, LinearNode) and self.post_op is not None:  # activation(linear(...)): fuse when possible
            t, weight, bias = arg.operands(x, w1, b1, w2, b2)
            if kernels.fused_path(t, weight):
                return kernels.linear(t, weight, bias, self.post_op)
            return self.activate(F.linear(t, weight, bias))
        return self.activate(arg(x, w1, b1, w2, b2))


class Gelu(UnaryNode):
    """GELU, exact (``approximate="none"``) or with the tanh approximation."""

    def __init__(self, arg: ExprNode, approximate: str = "none") -> None:
        super().__init__(arg)
        self.approximate = approximate
        self.post_op = kernels.PostOp("gelu", algorithm=approximate)

    def activate(self, t: Tensor) -> Tensor:
        return F.gelu(t, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Sigmoid(UnaryNode):
    """Logistic sigmoid."""

    post_op = kernels.PostOp("sigmoid")

    def activate(self, t: Tensor) -> Tensor:
        return torch.sigmoid(t)


class Tanh(UnaryNode):
    """Hyperbolic tangent."""

    post_op = kernels.PostOp("tanh")

    def activate(self, t: Tensor) -> Tensor:
        return kernels.tanh(t)


class Relu(UnaryNode):
    """ReLU."""

    post_op = kernels.PostOp("relu")

    def activate(self, t: Tensor) -> Tensor:
        return F.relu(t)


class LeakyRelu(UnaryNode):
    """Leaky ReLU with negative slope 0.01."""

    post_op = kernels.PostOp("leaky_relu", scalars=(0.01,))

    def activate(self, t: Tensor) -> Tensor:
        return F.leaky_relu(t, negative_slope=0.01)


class Elu(UnaryNode):
    """ELU with alpha 1."""

    def activate(self, t: Tensor) -> Tensor:
        return F.elu(t, alpha=1.0)


class Swish(UnaryNode):
    """Swish ``t * sigmoid(t)`` (SiLU)."""

    post_op = kernels.PostOp("swish")

    def activate(self, t: Tensor) -> Tensor:
        return t * torch.sigmoid(t)


BINARY_MODULES: dict[str, type[BinaryNode]] = {"add": Add, "mul": Mul, "max": Max}
UNARY_MODULES: dict[str, type[UnaryNode]] = {
    "gelu": Gelu,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": Relu,
    "leaky_relu": LeakyRelu,
    "elu": Elu,
    "swish": Swish,
}


class CompiledExpr(nn.Module):
    """A compiled expression: ``forward(x, w1, b1, w2, b2)`` with no parameters of its own.

    Attributes:
        expr: the source expression.
        root: the root node module.
    """

    def __init__(self, expr: Expr, root: ExprNode) -> None:
        super().__init__()
        self.expr = expr
        self.root = root

    def forward(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        """Evaluate the expression.

        Args:
            x: unit input, shape (..., H).
            w1: first weight, (k, H); b1: (k,).
            w2: second weight, (H, k); b2: (H,).

        Returns:
            The unit output (..., H) for a valid expression (before dropout, residual and LayerNorm).
        """
        return self.root(x, w1, b1, w2, b2)

    def residual(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        """``x + self(x, w1, b1, w2, b2)``, the unit's residual connection; with a linear at the root the add runs
        inside its kernel at inference (`kernels.linear_add`)."""
        if isinstance(self.root, LinearNode):
            t, weight, bias = self.root.operands(x, w1, b1, w2, b2)
            return kernels.linear_add(t, weight, bias, x)
        return x + self.root(x, w1, b1, w2, b2)

    def extra_repr(self) -> str:
        return f"expr={self.expr}"


def _build(expr: Expr, approximate: str) -> ExprNode:
    if isinstance(expr, Term):
        if expr.name != "x":
            raise ValueError(f"cannot compile: {expr} outside the second argument of a linear")
        return Input()
    if isinstance(expr, Linear):
        if not (isinstance(expr.wb, Term) and expr.wb.name in WEIGHT_TERMINALS):
            raise ValueError(f"cannot compile '{expr}': the second argument of a linear must be wb1 or wb2")
        return LinearNode(_build(expr.arg, approximate), pair=1 if expr.wb.name == "wb1" else 2)
    if isinstance(expr, Binary):
        return BINARY_MODULES[expr.op](_build(expr.left, approximate), _build(expr.right, approximate))
    if expr.op == "gelu":
        return Gelu(_build(expr.arg, approximate), approximate)
    return UNARY_MODULES[expr.op](_build(expr.arg, approximate))


def compile_expr(expr: Expr, gelu_approximate: str = "none") -> CompiledExpr:
    """Turn an expression into a parameter-free module.

    Only the structure needed to evaluate is checked here (weight pairs only as the second argument of a linear);
    use `effbert.methods.efficientbert.expr.rules.check` for the full rules, which also guarantee that shapes fit.

    Args:
        expr: the expression.
        gelu_approximate: ``"none"`` (exact erf GELU, as Hugging Face BERT) or ``"tanh"`` (the official
            EfficientBERT code's approximation).

    Returns:
        The compiled module.

    Raises:
        ValueError: a weight pair outside a linear's second argument, or an unknown GELU approximation.
    """
    if gelu_approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"gelu_approximate must be one of {GELU_APPROXIMATIONS}, got {gelu_approximate!r}")
    return CompiledExpr(expr, _build(expr, gelu_approximate))
