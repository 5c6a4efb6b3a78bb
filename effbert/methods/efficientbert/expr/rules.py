"""Validity rules for a layer's MLP expression (the paper's ``check_individual``, made explicit).

The official code decides part of validity by compiling and running a candidate on dummy tensors. Here every rule
is a static check, including width consistency by shape inference, so `check` reports all violations at once:

1. height between `MIN_HEIGHT` and `MAX_HEIGHT` (edges; the vanilla MLP has height 3);
2. the input ``x`` is used;
3. exactly one ``wb1`` and one ``wb2``, ``wb1`` first in textual order;
4. a ``wb`` terminal only appears as the second argument of a ``linear``, and that argument is always a ``wb``;
5. no activation directly inside an activation, no ``linear`` directly inside a ``linear``;
6. all ``linear`` nodes carry the same size id (or none);
7. no binary op with identical arguments;
8. widths: ``x`` has width H; ``linear(t, wb1)`` needs width(t) == H and gives k; ``linear(t, wb2)`` needs
   width(t) == k and gives H; binary ops give the smaller operand width (min-width truncation); activations keep
   the width; the whole expression must give H (for the residual). k = H // r for a size id ``(s, r)``, k = H
   without size id; each linear uses its own size id.
"""

from __future__ import annotations

from effbert.methods.efficientbert.expr.count import intermediate_width
from effbert.methods.efficientbert.expr.tree import (
    WEIGHT_TERMINALS,
    Binary,
    Expr,
    Linear,
    Term,
    Unary,
    height,
    nodes,
    walk,
)

MIN_HEIGHT = 3
MAX_HEIGHT = 7


def _check_hidden(hidden: int) -> None:
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 4:
        raise ValueError(f"hidden must be an int >= 4 (so that every width divisor gives k >= 1), got {hidden!r}")


def _is_weight(expr: Expr) -> bool:
    return isinstance(expr, Term) and expr.name in WEIGHT_TERMINALS


def _terminal_rules(expr: Expr) -> list[str]:
    names = [node.name for node in nodes(expr) if isinstance(node, Term)]
    errors = []
    if "x" not in names:
        errors.append("the input x is never used")
    for name in WEIGHT_TERMINALS:
        if names.count(name) != 1:
            errors.append(f"{name} appears {names.count(name)} times, expected exactly once")
    if names.count("wb1") == 1 and names.count("wb2") == 1 and names.index("wb1") > names.index("wb2"):
        errors.append("wb2 appears before wb1; the first linear (wb1) must come first in textual order")
    return errors


def _structure_rules(expr: Expr) -> list[str]:
    errors = []
    parents: dict[tuple[int, ...], Expr] = {}
    for path, node in walk(expr):
        for i in range(len(node.children)):
            parents[(*path, i)] = node
        parent = parents.get(path)
        if _is_weight(node) and not (isinstance(parent, Linear) and path[-1] == 1):
            where = "at the root" if parent is None else f"as argument {path[-1] + 1} of {parent.op} in '{parent}'"
            errors.append(f"{node} is used {where}; a weight pair may only be the second argument of a linear")
        if isinstance(node, Linear) and not _is_weight(node.wb):
            errors.append(f"the second argument of '{node}' is '{node.wb}', expected wb1 or wb2")
        if isinstance(node, Linear) and isinstance(node.arg, Linear):
            errors.append(f"linear directly inside linear in '{node}'")
        if isinstance(node, Unary) and isinstance(node.arg, Unary):
            errors.append(f"activation {node.arg.op} directly inside activation {node.op} in '{node}'")
        if isinstance(node, Binary) and node.left == node.right:
            errors.append(f"{node.op} has two identical arguments in '{node}'")
    tokens = {node.token for node in nodes(expr) if isinstance(node, Linear)}
    if len({node.size for node in nodes(expr) if isinstance(node, Linear)}) > 1:
        errors.append(f"the linears carry different size ids: {', '.join(sorted(tokens))}")
    return errors


def _width(expr: Expr, hidden: int, errors: list[str]) -> int | None:
    """Inferred output width of ``expr`` (None when unknown because of an error reported elsewhere)."""
    if isinstance(expr, Term):
        return hidden if expr.name == "x" else None
    if isinstance(expr, Unary):
        return _width(expr.arg, hidden, errors)
    if isinstance(expr, Binary):
        left, right = _width(expr.left, hidden, errors), _width(expr.right, hidden, errors)
        return None if left is None or right is None else min(left, right)
    width_in = _width(expr.arg, hidden, errors)
    if not _is_weight(expr.wb):
        return None
    k = hidden if expr.size is None else intermediate_width(hidden, expr.size[1])
    need, out = (hidden, k) if expr.wb == Term("wb1") else (k, hidden)
    if width_in is not None and width_in != need:
        errors.append(f"'{expr}' needs an input of width {need} but gets width {width_in} (hidden {hidden})")
    return out


def check(expr: Expr, hidden: int) -> list[str]:
    """Every rule ``expr`` violates, as readable messages.

    Args:
        expr: the layer expression.
        hidden: the hidden size H (the width of ``x`` and of the output).

    Returns:
        One message per violation; an empty list means the expression is valid.

    Raises:
        ValueError: ``hidden`` is not an int >= 4.
    """
    _check_hidden(hidden)
    errors = []
    depth = height(expr)
    if not MIN_HEIGHT <= depth <= MAX_HEIGHT:
        errors.append(f"height {depth} is outside [{MIN_HEIGHT}, {MAX_HEIGHT}]")
    errors += _terminal_rules(expr)
    errors += _structure_rules(expr)
    width = _width(expr, hidden, errors)
    if width is not None and width != hidden:
        errors.append(f"the expression outputs width {width}, but the residual needs the hidden size {hidden}")
    return errors


def is_valid(expr: Expr, hidden: int) -> bool:
    """Whether `check` finds no violation.

    Raises:
        ValueError: ``hidden`` is not an int >= 4.
    """
    return not check(expr, hidden)
