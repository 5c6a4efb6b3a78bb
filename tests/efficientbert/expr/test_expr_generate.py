"""Random generation, mutation operators, the paper's architectures and functional fingerprints."""

from __future__ import annotations

import random

import pytest
from expr_strategies import EXPR_SETTINGS, valid_exprs
from hypothesis import given, settings
from hypothesis import strategies as st

from effbert.methods.efficientbert.expr import (
    ALL_SIZES,
    MAX_HEIGHT,
    MUTATIONS,
    PAPER_EXPRESSIONS,
    WB1,
    WB2,
    Binary,
    Expr,
    Linear,
    Unary,
    X,
    fingerprint,
    height,
    is_valid,
    mutate,
    mutate_insert,
    mutate_node,
    paper_architectures,
    parse,
    random_expr,
    size_id,
    strip_sizes,
    vanilla,
    walk,
    with_children,
)


def test_vanilla() -> None:
    assert str(vanilla()) == "linear(gelu(linear(x,wb1)),wb2)"
    assert str(vanilla((4, 3))) == "linear4_3(gelu(linear4_3(x,wb1)),wb2)"
    with pytest.raises(ValueError, match="size id"):
        vanilla((0, 1))


def test_paper_architectures_match_section_6() -> None:
    archs = paper_architectures()
    assert [str(e) for e in archs] == list(PAPER_EXPRESSIONS)
    assert [size_id(e) for e in archs] == [(4, 2), (2, 1), (1, 2), (2, 2), (1, 2), (2, 3)]
    assert all(is_valid(e, 540) for e in archs)


def test_random_expr_is_seeded_and_sized() -> None:
    first = [random_expr(random.Random(7), 32, (2, 3)) for _ in range(2)]
    assert first[0] == first[1]
    assert size_id(first[0]) == (2, 3)
    many = {random_expr(random.Random(seed), 32) for seed in range(30)}
    assert len(many) > 20
    assert all(size_id(e) is None and is_valid(e, 32) for e in many)


def test_random_expr_argument_errors() -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError, match="size id"):
        random_expr(rng, 32, (5, 1))
    with pytest.raises(ValueError, match="max_tries"):
        random_expr(rng, 32, None, max_tries=0)
    with pytest.raises(ValueError, match="hidden"):
        random_expr(rng, 2)


@given(valid_exprs, st.sampled_from(sorted(MUTATIONS)), st.integers(0, 2**16))
@EXPR_SETTINGS
def test_mutations_return_valid_different_expressions(case: tuple[int, Expr], name: str, seed: int) -> None:
    hidden, expr = case
    try:
        mutated = MUTATIONS[name](expr, random.Random(seed), hidden, 400)
    except ValueError:
        # only insertion can be impossible: when every node lies on a path of maximal height
        assert name == "insert"
        assert all(len(p) + height(n) == MAX_HEIGHT for p, n in walk(expr) if n.op not in ("wb1", "wb2"))
        return
    assert mutated != expr
    assert is_valid(mutated, hidden)
    # the size id stays unless the node mutation chose a new one for both linears
    if name != "node":
        assert size_id(mutated) == size_id(expr)


def test_mutations_are_seeded() -> None:
    base = paper_architectures()[4]
    for op in MUTATIONS.values():
        assert op(base, random.Random(3), 540, 400) == op(base, random.Random(3), 540, 400)
    assert mutate(base, random.Random(3), 540) == mutate(base, random.Random(3), 540)


def test_node_mutation_reaches_other_size_ids() -> None:
    rng = random.Random(0)
    base = vanilla((1, 1))
    seen = {size_id(mutate_node(base, rng, 540)) for _ in range(200)}
    assert len(seen) > 8
    assert None not in seen


def test_mutations_raise_when_impossible() -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError, match="no operator"):
        mutate_node(X, rng, 32)
    with pytest.raises(ValueError, match="no valid mutation"):
        mutate_insert(X, rng, 32, max_tries=50)  # nothing wrapped around a bare x is valid
    with pytest.raises(ValueError, match="no mutation operator"):
        mutate(X, rng, 32, max_tries=20)
    with pytest.raises(ValueError, match="max_tries"):
        mutate_insert(vanilla(), rng, 32, max_tries=0)


def _commuted(expr: Expr) -> Expr:
    children = tuple(_commuted(child) for child in expr.children)
    if isinstance(expr, Binary):
        return Binary(expr.op, children[1], children[0])
    return with_children(expr, children)


def test_fingerprint_ignores_commutation() -> None:
    for op in ("add", "mul", "max"):
        a = parse(f"linear1_2(relu({op}(linear1_2(x,wb1),tanh(x))),wb2)")
        b = parse(f"linear1_2(relu({op}(tanh(x),linear1_2(x,wb1))),wb2)")
        assert fingerprint(a) == fingerprint(b)
        assert fingerprint(a, hidden=24, seed=5) == fingerprint(b, hidden=24, seed=5)


@given(valid_exprs)
@settings(EXPR_SETTINGS, max_examples=30)
def test_fingerprint_ignores_commutation_everywhere(case: tuple[int, Expr]) -> None:
    hidden, expr = case
    assert fingerprint(expr, hidden) == fingerprint(_commuted(expr), hidden)


def test_fingerprint_separates_different_functions() -> None:
    variants = [
        vanilla(),
        *(Linear(Unary(op, Linear(X, WB1)), WB2) for op in ("relu", "swish", "elu", "leaky_relu", "tanh", "sigmoid")),
        parse("tanh(linear(gelu(linear(x,wb1)),wb2))"),
        parse("linear(gelu(linear(max(x,tanh(x)),wb1)),wb2)"),
        parse("linear(gelu(linear(add(x,tanh(x)),wb1)),wb2)"),
        parse("linear(gelu(linear(mul(x,tanh(x)),wb1)),wb2)"),
        vanilla((1, 1)),
        vanilla((1, 2)),
        vanilla((2, 2)),
        *paper_architectures(),
        *(strip_sizes(e) for e in paper_architectures()),
    ]
    distinct = {str(e): e for e in variants}  # some stripped paper expressions repeat the hand-written ones
    assert len(distinct) == 24
    assert len({fingerprint(e) for e in distinct.values()}) == len(distinct)
    assert fingerprint(vanilla(), seed=1) != fingerprint(vanilla(), seed=0)
    assert fingerprint(vanilla()) == fingerprint(parse("linear(gelu(linear(x,wb1)),wb2)"))


def test_fingerprint_rejects_expressions_that_cannot_run() -> None:
    with pytest.raises(ValueError, match="cannot compile"):
        fingerprint(Unary("gelu", WB1))
    with pytest.raises(ValueError, match="cannot evaluate"):
        fingerprint(parse("add(gelu(linear1_2(x,wb1)),linear1_2(tanh(x),wb2))"))


def test_every_size_id_generates() -> None:
    rng = random.Random(1)
    for size in ALL_SIZES:
        expr = random_expr(rng, 540, size)
        assert size_id(expr) == size and is_valid(expr, 540)


def test_insertion_is_impossible_when_every_node_is_on_a_longest_path() -> None:
    full = parse("tanh(linear1_4(swish(linear1_4(swish(max(sigmoid(x),relu(x))),wb1)),wb2))")
    assert is_valid(full, 12) and height(full) == MAX_HEIGHT
    with pytest.raises(ValueError, match="mutate_insert"):
        mutate_insert(full, random.Random(0), 12, max_tries=200)
    assert is_valid(mutate(full, random.Random(0), 12), 12)  # the other operators still apply
