"""Seeded random generation and mutation of valid expressions, the paper's architectures, and fingerprints.

Every random draw comes from the `random.Random` passed in, so results are reproducible from a seed. Generators and
mutations only return expressions that pass `expr.rules.check`, retrying up to ``max_tries`` times.

Structure used by the generator: with a single ``wb1`` and ``wb2``, a valid expression whose width k differs from H
is always ``OUT[linear(MID[linear(IN, wb1)], wb2)]`` where ``IN`` and every side operand are linear-free trees over
``x`` and ``OUT``/``MID`` are chains of activations and binary ops. `random_expr` samples exactly this family; the
mutations can additionally reach the other shapes that are valid when k == H.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable

import torch

from effbert.methods.efficientbert.expr.compile import compile_expr
from effbert.methods.efficientbert.expr.count import intermediate_width
from effbert.methods.efficientbert.expr.rules import check, is_valid
from effbert.methods.efficientbert.expr.tree import (
    ALL_SIZES,
    BINARY_OPS,
    UNARY_OPS,
    WB1,
    WB2,
    WEIGHT_TERMINALS,
    Binary,
    Expr,
    Linear,
    Size,
    Term,
    Unary,
    X,
    check_size,
    nodes,
    parse,
    replace,
    size_id,
    walk,
    with_size,
)

PAPER_EXPRESSIONS: tuple[str, ...] = (
    "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))",
    "elu(linear2_1(gelu(linear2_1(x,wb1)),wb2))",
    "sigmoid(linear1_2(relu(linear1_2(x,wb1)),wb2))",
    "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)",
    "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
    "leaky_relu(linear2_3(gelu(linear2_3(x,wb1)),wb2))",
)
"""Final EfficientBERT layer expressions (H = 540), layers 1..6, as in the paper's configs."""

Mutation = Callable[[Expr, random.Random, int, int], Expr]


def vanilla(size: Size | None = None) -> Expr:
    """The BERT FFN ``linear(gelu(linear(x,wb1)),wb2)``, with the size id on both linears when given.

    Raises:
        ValueError: an invalid size id.
    """
    size = None if size is None else check_size(size)
    return Linear(Unary("gelu", Linear(X, WB1, size)), WB2, size)


def paper_architectures() -> tuple[Expr, ...]:
    """The six per-layer expressions (with size ids) of the final EfficientBERT, layers 1..6."""
    return tuple(parse(text) for text in PAPER_EXPRESSIONS)


def _plain(rng: random.Random, depth: int, under_unary: bool = False) -> Expr:
    """A random linear-free tree over ``x`` of height at most ``depth`` (width H wherever it is used)."""
    if depth <= 0 or rng.random() < 0.35:
        return X
    if not under_unary and rng.random() < 0.5:
        return Unary(rng.choice(UNARY_OPS), _plain(rng, depth - 1, under_unary=True))
    left = _plain(rng, depth - 1)
    right = _plain(rng, depth - 1)
    for _ in range(3):  # identical operands are invalid; redraw a few times, the caller's check is the judge
        if right != left:
            break
        right = _plain(rng, depth - 1)
    return Binary(rng.choice(BINARY_OPS), left, right)


def _wrap(rng: random.Random, core: Expr, layers: int) -> Expr:
    """``core`` wrapped in ``layers`` random activations or binary ops with a linear-free side operand."""
    for _ in range(layers):
        if not isinstance(core, Unary) and rng.random() < 0.5:
            core = Unary(rng.choice(UNARY_OPS), core)
        else:
            side = _plain(rng, rng.randint(0, 1))
            core = Binary(rng.choice(BINARY_OPS), *((core, side) if rng.random() < 0.5 else (side, core)))
    return core


def _first_linear(rng: random.Random, size: Size | None) -> Expr:
    """A random subtree of shape ``MID[linear(IN, wb1)]``."""
    return _wrap(rng, Linear(_plain(rng, rng.randint(0, 2)), WB1, size), rng.randint(1, 2))


def _core(rng: random.Random, size: Size | None) -> Expr:
    """A random subtree of shape ``OUT[linear(MID[linear(IN, wb1)], wb2)]``."""
    return _wrap(rng, Linear(_first_linear(rng, size), WB2, size), rng.randint(0, 2))


def _check_tries(max_tries: int) -> None:
    if not isinstance(max_tries, int) or max_tries < 1:
        raise ValueError(f"max_tries must be a positive int, got {max_tries!r}")


def random_expr(rng: random.Random, hidden: int, size: Size | None = None, max_tries: int = 1000) -> Expr:
    """A random valid expression.

    Args:
        rng: the source of randomness.
        hidden: the hidden size H the expression must be valid for.
        size: the size id ``(s, r)`` carried by both linears, or None for plain ``linear``.
        max_tries: how many candidates to draw before giving up.

    Returns:
        A valid expression.

    Raises:
        ValueError: no valid candidate within ``max_tries``, or invalid arguments.
    """
    _check_tries(max_tries)
    size = None if size is None else check_size(size)
    for _ in range(max_tries):
        candidate = _core(rng, size)
        if is_valid(candidate, hidden):
            return candidate
    raise ValueError(f"no valid expression for hidden={hidden}, size={size} within {max_tries} tries")


def _weights_in(expr: Expr) -> set[str]:
    return {node.name for node in nodes(expr) if isinstance(node, Term) and node.name in WEIGHT_TERMINALS}


def _retry(expr: Expr, hidden: int, max_tries: int, name: str, propose: Callable[[], Expr | None]) -> Expr:
    _check_tries(max_tries)
    for _ in range(max_tries):
        candidate = propose()
        if candidate is not None and candidate != expr and is_valid(candidate, hidden):
            return candidate
    raise ValueError(f"{name}: no valid mutation of {expr} (hidden={hidden}) within {max_tries} tries")


def mutate_subtree(expr: Expr, rng: random.Random, hidden: int, max_tries: int = 400) -> Expr:
    """Replace a random subtree by a random new one that uses the same weight pairs.

    A subtree without weight pairs becomes a random linear-free tree (height 0-3); one holding ``wb1`` and/or
    ``wb2`` becomes a random subtree holding the same linears, with the expression's size id.

    Raises:
        ValueError: no valid, different expression within ``max_tries``.
    """
    size = size_id(expr)
    sites = [(path, node) for path, node in walk(expr) if node.op not in WEIGHT_TERMINALS]

    def propose() -> Expr:
        path, node = rng.choice(sites)
        weights = _weights_in(node)
        if not weights:
            new = _plain(rng, rng.randint(0, 3))
        elif weights == {"wb1"}:
            new = _first_linear(rng, size)
        elif weights == {"wb2"}:
            new = _wrap(rng, Linear(_plain(rng, rng.randint(0, 2)), WB2, size), rng.randint(0, 2))
        else:
            new = _core(rng, size)
        return replace(expr, path, new)

    return _retry(expr, hidden, max_tries, "mutate_subtree", propose)


def mutate_node(expr: Expr, rng: random.Random, hidden: int, max_tries: int = 400) -> Expr:
    """Replace a random operator by another of the same arity.

    Activations swap with activations and add/mul/max with each other. A sized ``linear`` changes its size id,
    applied to both linears so that the size rule holds (the paper's "swap linear size variants"). Turning a
    linear into add/mul/max (or back) never yields a valid expression, so it is not proposed.

    Raises:
        ValueError: nothing to mutate, or no valid, different expression within ``max_tries``.
    """
    sites = [(p, n) for p, n in walk(expr) if isinstance(n, Unary | Binary) or (isinstance(n, Linear) and n.size)]
    if not sites:
        raise ValueError(f"mutate_node: {expr} has no operator to replace")

    def propose() -> Expr:
        path, node = rng.choice(sites)
        if isinstance(node, Unary):
            return replace(expr, path, Unary(rng.choice([op for op in UNARY_OPS if op != node.op]), node.arg))
        if isinstance(node, Binary):
            op = rng.choice([op for op in BINARY_OPS if op != node.op])
            return replace(expr, path, Binary(op, node.left, node.right))
        assert isinstance(node, Linear)
        return with_size(expr, *rng.choice([size for size in ALL_SIZES if size != node.size]))

    return _retry(expr, hidden, max_tries, "mutate_node", propose)


def mutate_insert(expr: Expr, rng: random.Random, hidden: int, max_tries: int = 400) -> Expr:
    """Wrap a random subtree in a new activation, or in a binary op with a random linear-free second operand.

    Raises:
        ValueError: no valid, different expression within ``max_tries``.
    """
    sites = [(path, node) for path, node in walk(expr) if node.op not in WEIGHT_TERMINALS]

    def propose() -> Expr:
        path, node = rng.choice(sites)
        if rng.random() < 0.5:
            return replace(expr, path, Unary(rng.choice(UNARY_OPS), node))
        side = _plain(rng, rng.randint(0, 1))
        args = (node, side) if rng.random() < 0.5 else (side, node)
        return replace(expr, path, Binary(rng.choice(BINARY_OPS), *args))

    return _retry(expr, hidden, max_tries, "mutate_insert", propose)


MUTATIONS: dict[str, Mutation] = {"subtree": mutate_subtree, "node": mutate_node, "insert": mutate_insert}


def mutate(expr: Expr, rng: random.Random, hidden: int, max_tries: int = 400) -> Expr:
    """Apply one mutation operator drawn at random, falling back to the others when it fails.

    Raises:
        ValueError: no operator produced a valid, different expression.
    """
    names = list(MUTATIONS)
    rng.shuffle(names)
    for name in names:
        try:
            return MUTATIONS[name](expr, rng, hidden, max_tries)
        except ValueError:
            continue
    raise ValueError(f"no mutation operator produced a valid expression from {expr} (hidden={hidden})")


def fingerprint(expr: Expr, hidden: int = 32, seed: int = 0, rows: int = 64) -> str:
    """A functional fingerprint: sha256 of the output on a fixed seeded input, rounded to 4 decimals.

    Input (rows x H) and full-width weights come from a `torch.Generator` seeded with ``seed`` (float64, weights
    scaled by 1/sqrt(H)); a size id ``(s, r)`` slices them to width ``H // r`` as the supernet does, and the size
    id is part of the hashed payload (``s`` changes the model, not the unit's function). Commuted add/mul/max give
    bit-identical outputs and therefore equal fingerprints.

    Args:
        expr: the expression (it must evaluate at this hidden size).
        hidden: the hidden size H used for the evaluation.
        seed: seed of the input and weights.
        rows: number of input rows (tokens).

    Returns:
        A hex digest.

    Raises:
        ValueError: the expression cannot be compiled or evaluated at ``hidden``.
    """
    size = size_id(expr)
    k = hidden if size is None else intermediate_width(hidden, size[1])
    gen = torch.Generator().manual_seed(seed)
    scale = 1.0 / math.sqrt(hidden)
    x = torch.randn(rows, hidden, generator=gen, dtype=torch.float64)
    w1 = torch.randn(hidden, hidden, generator=gen, dtype=torch.float64) * scale
    b1 = torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.1
    w2 = torch.randn(hidden, hidden, generator=gen, dtype=torch.float64) * scale
    b2 = torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.1
    module = compile_expr(expr)
    try:
        with torch.no_grad():
            out = module(x, w1[:k], b1[:k], w2[:, :k], b2)
    except RuntimeError as err:
        raise ValueError(f"cannot evaluate {expr} at hidden={hidden}: {check(expr, hidden) or err}") from err
    # + 0.0 turns -0.0 into 0.0; non-finite values get fixed sentinels so their bit patterns cannot differ
    out = torch.nan_to_num(torch.round(out, decimals=4) + 0.0, nan=1e300, posinf=1e301, neginf=-1e301)
    tag = "none" if size is None else f"{size[0]}_{size[1]}"
    digest = hashlib.sha256(f"effbert-expr/v1;hidden={hidden};seed={seed};size={tag};".encode())
    digest.update(repr(tuple(out.shape)).encode())
    digest.update(out.contiguous().numpy().tobytes())
    return digest.hexdigest()
