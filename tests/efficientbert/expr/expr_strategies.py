"""Hypothesis strategies for expression tests, built from the seeded generator of the expression language."""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st

from effbert.methods.efficientbert.expr import (
    ALL_SIZES,
    BINARY_OPS,
    TERMINALS,
    UNARY_OPS,
    Binary,
    Expr,
    Linear,
    Term,
    Unary,
    mutate,
    random_expr,
)

# Small hidden sizes keep the torch work tiny; 12 and 24 are divisible by 1..4, 16 and 13 are not by 3.
HIDDENS = (12, 13, 16, 24)
SIZES: tuple[tuple[int, int] | None, ...] = (None, *ALL_SIZES)

# Deterministic runs, no example database on disk, no per-example deadline (the first torch call is slow).
EXPR_SETTINGS = settings(max_examples=100, deadline=None, database=None, derandomize=True)


def _generated(seed: int, hidden: int, size: tuple[int, int] | None, mutations: int) -> tuple[int, Expr]:
    rng = random.Random(seed)
    expr = random_expr(rng, hidden, size)
    for _ in range(mutations):
        expr = mutate(expr, rng, hidden)
    return hidden, expr


# (hidden, valid expression): a random expression followed by 0-3 random mutations, all from one integer seed.
valid_exprs = st.builds(
    _generated,
    seed=st.integers(0, 2**32 - 1),
    hidden=st.sampled_from(HIDDENS),
    size=st.sampled_from(SIZES),
    mutations=st.integers(0, 3),
)

sizes = st.sampled_from(SIZES)

# Arbitrary (mostly invalid) trees, for syntax round trips.
any_trees: st.SearchStrategy[Expr] = st.recursive(
    st.sampled_from([Term(name) for name in TERMINALS]),
    lambda sub: st.one_of(
        st.builds(Unary, st.sampled_from(UNARY_OPS), sub),
        st.builds(Binary, st.sampled_from(BINARY_OPS), sub, sub),
        st.builds(Linear, sub, sub, sizes),
    ),
    max_leaves=12,
)
