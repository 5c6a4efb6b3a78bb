"""Tree type, canonical printing, parsing and tree utilities."""

from __future__ import annotations

import dataclasses
import re

import pytest
from expr_strategies import EXPR_SETTINGS, any_trees, valid_exprs
from hypothesis import given

from effbert.methods.efficientbert.expr import (
    PAPER_EXPRESSIONS,
    WB1,
    WB2,
    Binary,
    Expr,
    Linear,
    Term,
    Unary,
    X,
    height,
    nodes,
    parse,
    replace,
    size_id,
    strip_sizes,
    subtree,
    walk,
    with_size,
)

VANILLA = "linear(gelu(linear(x,wb1)),wb2)"


@pytest.mark.parametrize("text", [*PAPER_EXPRESSIONS, VANILLA])
def test_paper_strings_round_trip_exactly(text: str) -> None:
    expr = parse(text)
    assert str(expr) == text
    assert parse(str(expr)) == expr


def test_parse_builds_the_expected_tree() -> None:
    assert parse(VANILLA) == Linear(Unary("gelu", Linear(X, WB1)), WB2)
    assert parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)") == Linear(
        Unary("relu", Binary("mul", Linear(X, WB1, (1, 2)), X)), WB2, (1, 2)
    )


def test_parse_tolerates_whitespace() -> None:
    assert parse("  max( x , tanh( x ) )\n") == Binary("max", X, Unary("tanh", X))
    assert str(parse(" linear4_2 ( x , wb1 ) ")) == "linear4_2(x,wb1)"


@given(any_trees)
@EXPR_SETTINGS
def test_any_tree_round_trips(expr: Expr) -> None:
    text = str(expr)
    assert " " not in text
    assert parse(text) == expr


@given(valid_exprs)
@EXPR_SETTINGS
def test_generated_expressions_round_trip(case: tuple[int, Expr]) -> None:
    _, expr = case
    assert parse(str(expr)) == expr


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("", "expected an operator or terminal, got end of input", 0),
        ("linear(x,wb1", "expected ')'", 12),
        ("gelu(x,x)", "'gelu' takes 1 argument", 6),
        ("add(x)", "expected ','", 5),
        ("add(x,)", "got ')'", 6),
        ("foo(x)", "unknown operator 'foo'", 0),
        ("gelu(bar)", "unknown operator 'bar'", 5),
        ("x(x)", "terminal 'x' takes no arguments", 1),
        ("linear5_1(x,wb1)", "out of range", 0),
        ("linear1_0(x,wb1)", "out of range", 0),
        ("gelu(x))", "unexpected ')' after the end", 7),
        ("gelu x", "expected '(' after 'gelu', got 'x'", 5),
        ("gelu(x)$", "unexpected character '$'", 7),
        ("tanh", "expected '(' after 'tanh', got end of input", 4),
    ],
)
def test_parse_errors_name_token_and_position(text: str, fragment: str, position: int) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as info:
        parse(text)
    assert f"at position {position}" in str(info.value)


def test_parse_rejects_non_strings_and_absurd_nesting() -> None:
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nested deeper"):
        parse("gelu(" * 1000 + "x" + ")" * 1000)


def test_node_constructors_validate() -> None:
    with pytest.raises(ValueError, match="unknown terminal"):
        Term("y")
    with pytest.raises(ValueError, match="unknown activation"):
        Unary("softmax", X)
    with pytest.raises(ValueError, match="unknown binary op"):
        Binary("sub", X, X)
    with pytest.raises(ValueError, match="size id"):
        Linear(X, WB1, (5, 1))
    with pytest.raises(ValueError, match="size id"):
        Linear(X, WB1, (1, 0))


def test_nodes_are_immutable_and_hashable() -> None:
    expr = parse(VANILLA)
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.size = (1, 1)  # type: ignore[misc]
    assert len({expr, parse(VANILLA), parse(PAPER_EXPRESSIONS[0])}) == 2


def test_height_counts_edges() -> None:
    assert height(X) == 0
    assert height(parse(VANILLA)) == 3
    assert [height(parse(t)) for t in PAPER_EXPRESSIONS] == [4, 4, 4, 5, 4, 4]


def test_walk_is_textual_preorder_with_paths() -> None:
    expr = parse("linear(relu(mul(linear(x,wb1),x)),wb2)")
    assert [node.op for node in nodes(expr)] == ["linear", "relu", "mul", "linear", "x", "wb1", "x", "wb2"]
    for path, node in walk(expr):
        assert subtree(expr, path) == node
    assert dict(walk(expr))[(0, 0, 1)] == X


def test_replace_and_subtree() -> None:
    expr = parse(VANILLA)
    assert str(replace(expr, (0,), Unary("relu", subtree(expr, (0, 0))))) == "linear(relu(linear(x,wb1)),wb2)"
    assert replace(expr, (), X) == X
    with pytest.raises(ValueError, match="does not exist"):
        subtree(expr, (2,))
    with pytest.raises(ValueError, match="does not exist"):
        replace(expr, (0, 0, 0, 0), X)


def test_size_helpers() -> None:
    expr = parse(PAPER_EXPRESSIONS[3])
    assert size_id(expr) == (2, 2)
    plain = strip_sizes(expr)
    assert str(plain) == "linear(gelu(linear(max(x,tanh(x)),wb1)),wb2)"
    assert size_id(plain) is None
    assert with_size(plain, 2, 2) == expr
    assert str(with_size(expr, 4, 3)).count("linear4_3") == 2
    assert size_id(X) is None
    # the first linear in textual order decides, as in the official code
    assert size_id(parse("linear1_2(gelu(linear3_4(x,wb1)),wb2)")) == (1, 2)
    with pytest.raises(ValueError, match="size id"):
        with_size(expr, 0, 1)
