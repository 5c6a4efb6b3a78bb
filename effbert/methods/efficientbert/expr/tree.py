"""Immutable expression trees for EfficientBERT's searched MLP, with canonical printing and parsing.

An expression is a tree of frozen dataclasses:

* `Term`: a terminal, ``x`` (the unit input, width H), ``wb1`` or ``wb2`` (the unit's first and second weight/bias
  pair);
* `Linear`: ``linear(arg, wb)``, optionally carrying a size id ``(s, r)`` printed ``linear{s}_{r}``: ``s`` stacked
  units, intermediate width ``k = H // r``;
* `Binary`: ``add``, ``mul`` or ``max`` of two subtrees;
* `Unary`: one of the activations in `UNARY_OPS`.

The tree type accepts any combination (for example ``gelu(wb1)``) so that invalid candidates can be represented and
reported; `expr.rules.check` decides validity. ``str(expr)`` is the canonical token string of the paper's
configs (no spaces), and `parse` inverts it. Heights count edges (a terminal has height 0), so the vanilla MLP
``linear(gelu(linear(x,wb1)),wb2)`` has height 3. Node paths are tuples of child indices from the root.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn, TypeAlias

TERMINALS: tuple[str, ...] = ("x", "wb1", "wb2")
WEIGHT_TERMINALS: tuple[str, ...] = ("wb1", "wb2")
UNARY_OPS: tuple[str, ...] = ("gelu", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "swish")
BINARY_OPS: tuple[str, ...] = ("add", "mul", "max")
SIZE_CHOICES: tuple[int, ...] = (1, 2, 3, 4)
ALL_SIZES: tuple[tuple[int, int], ...] = tuple((s, r) for s in SIZE_CHOICES for r in SIZE_CHOICES)
MAX_PARSE_DEPTH = 200

Size: TypeAlias = tuple[int, int]
NodePath: TypeAlias = tuple[int, ...]


def check_size(size: Size) -> Size:
    """Validate a size id.

    Args:
        size: ``(s, r)`` with ``s`` stacked units and width divisor ``r``, both in `SIZE_CHOICES`.

    Returns:
        The size as a tuple of two ints.

    Raises:
        ValueError: not a pair of ints in 1..4.
    """
    if (
        not isinstance(size, tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v in SIZE_CHOICES for v in size)
    ):
        raise ValueError(f"size id must be a pair (s, r) of ints in {SIZE_CHOICES}, got {size!r}")
    return size


@dataclass(frozen=True)
class Term:
    """A terminal: ``x``, ``wb1`` or ``wb2``."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in TERMINALS:
            raise ValueError(f"unknown terminal {self.name!r}; expected one of {TERMINALS}")

    @property
    def op(self) -> str:
        return self.name

    @property
    def children(self) -> tuple[Expr, ...]:
        return ()

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Linear:
    """``linear(arg, wb)``: ``W @ arg + b`` with the weight pair named by ``wb``; ``size`` is the layer's size id."""

    arg: Expr
    wb: Expr
    size: Size | None = None

    def __post_init__(self) -> None:
        if self.size is not None:
            check_size(self.size)

    @property
    def op(self) -> str:
        return "linear"

    @property
    def token(self) -> str:
        """The operator token: ``linear`` or ``linear{s}_{r}``."""
        return "linear" if self.size is None else f"linear{self.size[0]}_{self.size[1]}"

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.arg, self.wb)

    def __str__(self) -> str:
        return f"{self.token}({self.arg},{self.wb})"


@dataclass(frozen=True)
class Binary:
    """An element-wise binary op (`BINARY_OPS`); operands of different widths are cut to the smaller width."""

    op: str
    left: Expr
    right: Expr

    def __post_init__(self) -> None:
        if self.op not in BINARY_OPS:
            raise ValueError(f"unknown binary op {self.op!r}; expected one of {BINARY_OPS}")

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def __str__(self) -> str:
        return f"{self.op}({self.left},{self.right})"


@dataclass(frozen=True)
class Unary:
    """An element-wise activation (`UNARY_OPS`)."""

    op: str
    arg: Expr

    def __post_init__(self) -> None:
        if self.op not in UNARY_OPS:
            raise ValueError(f"unknown activation {self.op!r}; expected one of {UNARY_OPS}")

    @property
    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)

    def __str__(self) -> str:
        return f"{self.op}({self.arg})"


Expr: TypeAlias = Term | Linear | Binary | Unary

X = Term("x")
WB1 = Term("wb1")
WB2 = Term("wb2")


def with_children(expr: Expr, children: tuple[Expr, ...]) -> Expr:
    """The same node with new children (same count).

    Raises:
        ValueError: wrong number of children.
    """
    if len(children) != len(expr.children):
        raise ValueError(f"{expr.op} takes {len(expr.children)} children, got {len(children)}")
    if isinstance(expr, Linear):
        return Linear(children[0], children[1], expr.size)
    if isinstance(expr, Binary):
        return Binary(expr.op, children[0], children[1])
    if isinstance(expr, Unary):
        return Unary(expr.op, children[0])
    return expr


def walk(expr: Expr) -> Iterator[tuple[NodePath, Expr]]:
    """Yield ``(path, node)`` for every node in pre-order, which is the textual (left-to-right) order."""
    stack: list[tuple[NodePath, Expr]] = [((), expr)]
    while stack:
        path, node = stack.pop()
        yield path, node
        stack.extend(((*path, i), child) for i, child in reversed(list(enumerate(node.children))))


def nodes(expr: Expr) -> Iterator[Expr]:
    """Yield every node in pre-order (textual order)."""
    return (node for _, node in walk(expr))


def subtree(expr: Expr, path: NodePath) -> Expr:
    """The node at ``path``.

    Raises:
        ValueError: the path does not exist.
    """
    node = expr
    for i in path:
        if not 0 <= i < len(node.children):
            raise ValueError(f"path {path} does not exist in {expr}")
        node = node.children[i]
    return node


def replace(expr: Expr, path: NodePath, new: Expr) -> Expr:
    """A copy of ``expr`` with the node at ``path`` replaced by ``new``.

    Raises:
        ValueError: the path does not exist.
    """
    if not path:
        return new
    head, rest = path[0], path[1:]
    if not 0 <= head < len(expr.children):
        raise ValueError(f"path {path} does not exist in {expr}")
    children = list(expr.children)
    children[head] = replace(children[head], rest, new)
    return with_children(expr, tuple(children))


def height(expr: Expr) -> int:
    """Length of the longest root-to-leaf path in edges (a terminal has height 0)."""
    return max((len(path) for path, _ in walk(expr)), default=0)


def size_id(expr: Expr) -> Size | None:
    """The size id of the first ``linear`` in textual order (as the official code reads it), or None."""
    first = next((node for node in nodes(expr) if isinstance(node, Linear)), None)
    return None if first is None else first.size


def _map_linears(expr: Expr, size: Size | None) -> Expr:
    children = tuple(_map_linears(child, size) for child in expr.children)
    if isinstance(expr, Linear):
        return Linear(children[0], children[1], size)
    return with_children(expr, children)


def with_size(expr: Expr, s: int, r: int) -> Expr:
    """A copy where every ``linear`` carries the size id ``(s, r)``.

    Raises:
        ValueError: ``s`` or ``r`` not in 1..4.
    """
    return _map_linears(expr, check_size((s, r)))


def strip_sizes(expr: Expr) -> Expr:
    """A copy where every ``linear`` is a plain ``linear`` without size id."""
    return _map_linears(expr, None)


_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),])|(?P<bad>\S))")
_SIZED_LINEAR = re.compile(r"linear(\d+)_(\d+)")


class _Parser:
    """Recursive-descent parser over a token list ``[(text, position)]`` ending with ``("", len(text))``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, int]] = []
        pos = 0
        while True:
            match = _TOKEN.match(text, pos)
            if match is None:  # only trailing whitespace is left
                break
            if match.group("bad") is not None:
                self.fail(f"unexpected character {match.group('bad')!r}", match.start("bad"))
            start = match.start("name") if match.group("name") is not None else match.start("punct")
            self.tokens.append((match.group("name") or match.group("punct"), start))
            pos = match.end()
        self.tokens.append(("", len(text)))
        self.index = 0

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ValueError(f"cannot parse expression {self.text!r}: {message} at position {pos}")

    def take(self) -> tuple[str, int]:
        token = self.tokens[self.index]
        if token[0]:
            self.index += 1
        return token

    def expect(self, want: str, context: str) -> None:
        token, pos = self.take()
        if token != want:
            self.fail(f"expected {want!r} {context}, got {_show(token)}", pos)

    def expr(self, depth: int) -> Expr:
        token, pos = self.take()
        if depth > MAX_PARSE_DEPTH:
            self.fail(f"expression nested deeper than {MAX_PARSE_DEPTH}", pos)
        if token in ("", "(", ")", ","):
            self.fail(f"expected an operator or terminal, got {_show(token)}", pos)
        if token in TERMINALS:
            if self.tokens[self.index][0] == "(":
                self.fail(f"terminal {token!r} takes no arguments", self.tokens[self.index][1])
            return Term(token)
        size: Size | None = None
        sized = _SIZED_LINEAR.fullmatch(token)
        if sized is not None:
            s, r = int(sized.group(1)), int(sized.group(2))
            if s not in SIZE_CHOICES or r not in SIZE_CHOICES:
                self.fail(f"size id in {token!r} out of range (s and r must be in {SIZE_CHOICES})", pos)
            size = (s, r)
        elif token not in ("linear", *BINARY_OPS, *UNARY_OPS):
            self.fail(f"unknown operator {token!r}", pos)
        arity = 1 if token in UNARY_OPS else 2
        self.expect("(", f"after {token!r}")
        args = [self.expr(depth + 1)]
        while len(args) < arity:
            self.expect(",", f"({token!r} takes {arity} arguments)")
            args.append(self.expr(depth + 1))
        self.expect(")", f"({token!r} takes {arity} argument{'s' if arity > 1 else ''})")
        if sized is not None or token == "linear":
            return Linear(args[0], args[1], size)
        return Unary(token, args[0]) if arity == 1 else Binary(token, args[0], args[1])


def _show(token: str) -> str:
    return repr(token) if token else "end of input"


def parse(text: str) -> Expr:
    """Parse a token string such as ``tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))``.

    Whitespace between tokens is allowed; ``str(parse(text))`` is the canonical (space-free) form.

    Args:
        text: the expression string.

    Returns:
        The expression tree (not checked for validity, see `expr.rules.check`).

    Raises:
        TypeError: ``text`` is not a string.
        ValueError: a syntax error; the message names the offending token and its position.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse expects a string, got {type(text).__name__}")
    parser = _Parser(text)
    expr = parser.expr(0)
    token, pos = parser.take()
    if token:
        parser.fail(f"unexpected {token!r} after the end of the expression", pos)
    return expr
