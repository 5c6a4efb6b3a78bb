"""Parameter and MAC counting for the searched MLP, without building modules.

One MLP unit of width k on hidden size H owns ``W1`` (k x H), ``b1`` (k), ``W2`` (H x k), ``b2`` (H) and its
LayerNorm (weight and bias, 2H). A layer with size id ``(s, r)`` stacks ``s`` units of width ``k = H // r``. The
expression itself adds no parameters (activations and add/mul/max are parameter-free), and only the two matmuls
cost multiply-accumulates: ``2 * H * k`` per token and unit.
"""

from __future__ import annotations

from effbert.methods.efficientbert.expr.tree import SIZE_CHOICES, Expr, check_size, size_id


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def intermediate_width(hidden: int, r: int) -> int:
    """The intermediate width ``k = hidden // r`` of width divisor ``r``.

    Raises:
        ValueError: ``r`` not in 1..4, or ``hidden`` too small to give ``k >= 1``.
    """
    if r not in SIZE_CHOICES:
        raise ValueError(f"width divisor r must be in {SIZE_CHOICES}, got {r!r}")
    _positive("hidden", hidden)
    if hidden < r:
        raise ValueError(f"hidden {hidden} is too small for width divisor {r}")
    return hidden // r


def unit_params(hidden: int, k: int, layer_norm: bool = True) -> int:
    """Parameters of one MLP unit: ``2*H*k + k + H`` (W1, b1, W2, b2), plus ``2*H`` for its LayerNorm.

    Args:
        hidden: the hidden size H.
        k: the intermediate width.
        layer_norm: whether to count the unit's LayerNorm.

    Returns:
        The parameter count.

    Raises:
        ValueError: non-positive sizes.
    """
    _positive("hidden", hidden)
    _positive("k", k)
    return 2 * hidden * k + k + hidden + (2 * hidden if layer_norm else 0)


def mlp_params(hidden: int, s: int, r: int, layer_norm: bool = True) -> int:
    """Parameters of a layer's MLP block with size id ``(s, r)``: ``s`` units of width ``hidden // r``.

    Raises:
        ValueError: ``s`` or ``r`` not in 1..4, or ``hidden`` too small.
    """
    check_size((s, r))
    return s * unit_params(hidden, intermediate_width(hidden, r), layer_norm)


def unit_macs(hidden: int, k: int) -> int:
    """Multiply-accumulates per token of one unit (the two matmuls only): ``2 * H * k``.

    Raises:
        ValueError: non-positive sizes.
    """
    _positive("hidden", hidden)
    _positive("k", k)
    return 2 * hidden * k


def mlp_macs(hidden: int, s: int, r: int, tokens: int = 1) -> int:
    """Multiply-accumulates of a layer's MLP block with size id ``(s, r)`` over ``tokens`` tokens.

    Raises:
        ValueError: ``s`` or ``r`` not in 1..4, or non-positive sizes.
    """
    check_size((s, r))
    _positive("tokens", tokens)
    return tokens * s * unit_macs(hidden, intermediate_width(hidden, r))


def expr_params(expr: Expr, hidden: int, layer_norm: bool = True) -> int:
    """Parameters of the MLP block described by a sized expression (its size id from `size_id`).

    Raises:
        ValueError: the expression carries no size id.
    """
    size = size_id(expr)
    if size is None:
        raise ValueError(f"expression {expr} carries no size id; use with_size() first")
    return mlp_params(hidden, *size, layer_norm=layer_norm)
