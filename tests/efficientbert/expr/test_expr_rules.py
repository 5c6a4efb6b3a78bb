"""Validity rules: the paper's expressions pass, each rule has a counterexample, generated expressions keep all."""

from __future__ import annotations

import pytest
from expr_strategies import EXPR_SETTINGS, valid_exprs
from hypothesis import given

from effbert.methods.efficientbert.expr import (
    MAX_HEIGHT,
    MIN_HEIGHT,
    PAPER_EXPRESSIONS,
    Binary,
    Expr,
    Linear,
    Term,
    Unary,
    check,
    height,
    is_valid,
    nodes,
    paper_architectures,
    parse,
    strip_sizes,
    vanilla,
    walk,
)

V = "linear(gelu(linear(x,wb1)),wb2)"


def test_paper_and_vanilla_are_valid_at_540() -> None:
    exprs = [*paper_architectures(), vanilla(), vanilla((1, 1)), vanilla((4, 4))]
    for expr in exprs:
        assert check(expr, 540) == [], str(expr)
        assert check(strip_sizes(expr), 540) == [], str(expr)
    assert all(is_valid(parse(text), 360) for text in PAPER_EXPRESSIONS)


# (expression, hidden, fragments that must all appear, expected number of messages)
COUNTEREXAMPLES = [
    pytest.param("add(linear(x,wb1),linear(x,wb2))", 32, ["height 2 is outside [3, 7]"], 1, id="too-low"),
    pytest.param(f"tanh(add(tanh(add(tanh({V}),x)),x))", 32, ["height 8 is outside [3, 7]"], 1, id="too-high"),
    pytest.param(
        "linear(gelu(linear(wb1,wb1)),wb2)", 32, ["input x is never used", "wb1 appears 2 times"], 3, id="no-x"
    ),
    pytest.param(
        "linear(gelu(linear(x,wb1)),wb1)", 32, ["wb1 appears 2 times", "wb2 appears 0 times"], 2, id="wb-counts"
    ),
    pytest.param("linear(gelu(linear(x,wb2)),wb1)", 32, ["wb2 appears before wb1"], 1, id="wb-order"),
    pytest.param(
        "linear(gelu(add(linear(x,wb1),wb2)),x)",
        32,
        ["wb2 is used as argument 2 of add", "second argument of 'linear(gelu(add(linear(x,wb1),wb2)),x)' is 'x'"],
        2,
        id="wb-outside-linear",
    ),
    pytest.param(
        "linear(gelu(linear(wb1,x)),wb2)",
        32,
        ["wb1 is used as argument 1 of linear", "second argument of 'linear(wb1,x)' is 'x'"],
        2,
        id="wb-as-first-argument",
    ),
    pytest.param("linear(gelu(linear(x,wb1)),gelu(wb2))", 32, ["wb2 is used as argument 1 of gelu"], 2, id="wb-in-act"),
    pytest.param("wb1", 32, ["wb1 is used at the root"], 4, id="wb-at-root"),
    pytest.param(
        "linear(tanh(gelu(linear(x,wb1))),wb2)",
        32,
        ["activation gelu directly inside activation tanh"],
        1,
        id="act-in-act",
    ),
    pytest.param("tanh(linear(linear(x,wb1),wb2))", 32, ["linear directly inside linear"], 1, id="linear-linear"),
    pytest.param(
        "linear2_2(gelu(linear1_2(x,wb1)),wb2)", 32, ["different size ids: linear1_2, linear2_2"], 1, id="sizes-differ"
    ),
    pytest.param(
        "linear(gelu(linear1_1(x,wb1)),wb2)", 32, ["different size ids: linear, linear1_1"], 1, id="size-and-none"
    ),
    pytest.param("linear(gelu(linear(add(x,x),wb1)),wb2)", 32, ["add has two identical arguments"], 1, id="identical"),
    pytest.param(
        "linear(gelu(linear(max(tanh(x),tanh(x)),wb1)),wb2)",
        32,
        ["max has two identical arguments"],
        1,
        id="identical-subtrees",
    ),
    pytest.param(
        "add(gelu(linear1_2(x,wb1)),linear1_2(tanh(x),wb2))",
        32,
        ["'linear1_2(tanh(x),wb2)' needs an input of width 16 but gets width 32", "outputs width 16"],
        2,
        id="width-wb2-input",
    ),
    pytest.param(
        "linear1_2(gelu(linear1_2(mul(linear1_2(x,wb1),x),wb1)),wb2)",
        32,
        ["needs an input of width 32 but gets width 16", "wb1 appears 2 times"],
        2,
        id="width-wb1-input",
    ),
]


@pytest.mark.parametrize(("text", "hidden", "fragments", "count"), COUNTEREXAMPLES)
def test_each_rule_has_a_counterexample(text: str, hidden: int, fragments: list[str], count: int) -> None:
    errors = check(parse(text), hidden)
    for fragment in fragments:
        assert any(fragment in error for error in errors), (fragment, errors)
    assert len(errors) == count, errors
    assert not is_valid(parse(text), hidden)


def test_disjoint_linears_are_valid_only_when_k_equals_h() -> None:
    expr = parse("add(gelu(linear(x,wb1)),linear(tanh(x),wb2))")
    assert is_valid(expr, 32)
    assert not is_valid(parse("add(gelu(linear1_2(x,wb1)),linear1_2(tanh(x),wb2))"), 32)
    assert is_valid(parse("add(gelu(linear3_1(x,wb1)),linear3_1(tanh(x),wb2))"), 32)


def test_width_uses_integer_division() -> None:
    # H = 13, r = 3: k = 4; the min-width rule lets x[:4] meet the 4-wide first linear
    assert is_valid(parse("linear1_3(relu(mul(linear1_3(x,wb1),x)),wb2)"), 13)


@pytest.mark.parametrize("hidden", [3, 0, -5, True, 32.0])
def test_bad_hidden_raises(hidden: object) -> None:
    with pytest.raises(ValueError, match="hidden"):
        check(parse(V), hidden)  # type: ignore[arg-type]


def _independent_rule_check(expr: Expr, hidden: int) -> None:
    """The rules re-stated without `check`, so a generated expression is judged twice."""
    assert MIN_HEIGHT <= height(expr) <= MAX_HEIGHT
    text = str(expr)
    terms = [node.name for node in nodes(expr) if isinstance(node, Term)]
    assert "x" in terms
    assert terms.count("wb1") == 1 and terms.count("wb2") == 1
    assert text.index("wb1") < text.index("wb2")
    linears = [node for node in nodes(expr) if isinstance(node, Linear)]
    assert len(linears) == 2 and len({lin.size for lin in linears}) == 1
    for _, node in walk(expr):
        if isinstance(node, Linear):
            assert node.wb in (Term("wb1"), Term("wb2")) and not isinstance(node.arg, Linear)
            assert node.arg not in (Term("wb1"), Term("wb2"))
        if isinstance(node, Unary):
            assert not isinstance(node.arg, Unary) and node.arg not in (Term("wb1"), Term("wb2"))
        if isinstance(node, Binary):
            assert node.left != node.right
            assert node.left not in (Term("wb1"), Term("wb2")) and node.right not in (Term("wb1"), Term("wb2"))


@given(valid_exprs)
@EXPR_SETTINGS
def test_generated_expressions_keep_every_rule(case: tuple[int, Expr]) -> None:
    hidden, expr = case
    assert check(expr, hidden) == []
    _independent_rule_check(expr, hidden)
