"""The search spaces of EfficientBERT's three coarse-to-fine stages, and the parameter window they live in.

A `SearchSpace` knows, for one stage, which architectures are allowed (`SearchSpace.problem`), how to draw a random
one (the paper's random phase, `SearchSpace.sample`), how to mutate one (for regularised evolution), how to encode
one for the LaNAS surrogate and how to fingerprint one for duplicate detection:

* stage 1 searches every layer's expression and size id jointly, under a parameter window;
* stage 2 searches expressions only; the sizes are frozen to the stage-1 winner's;
* stage 3 searches size ids only; the expressions are fixed to the stage-2 winner's.

The paper's window of [15M, 16M] parameters is defined on its H=540, 6-layer frame; `scaled_param_window` maps it onto
other frames by the share of the searchable MLP parameters. Every random draw comes from the `random.Random` passed
in, so everything is reproducible from a seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
from effbert.methods.efficientbert.expr import (
    ALL_SIZES,
    BINARY_OPS,
    TERMINALS,
    UNARY_OPS,
    Expr,
    Linear,
    Size,
    is_valid,
    mlp_params,
    mutate_insert,
    mutate_node,
    mutate_subtree,
    nodes,
    parse,
    size_id,
    strip_sizes,
    vanilla,
    with_size,
)
from effbert.methods.efficientbert.expr import fingerprint as expr_fingerprint
from effbert.methods.efficientbert.expr import mutate as expr_mutate
from effbert.methods.efficientbert.supernet import attention_params, embedding_params

__all__ = [
    "FEATURES_PER_LAYER",
    "NODE_VOCAB",
    "PAPER_FRAME",
    "PAPER_WINDOW",
    "ParamWindow",
    "SearchSpace",
    "architecture_string",
    "config_frame_params",
    "frame_params",
    "parse_architecture_string",
    "scaled_param_window",
    "stage1_space",
    "stage2_space",
    "stage3_space",
]

PAPER_WINDOW: tuple[int, int] = (15_000_000, 16_000_000)
"""The paper's parameter constraint for stages 1 and 3, on its own frame (`PAPER_FRAME`)."""

PAPER_FRAME: dict[str, int] = {
    "hidden": 540,
    "num_layers": 6,
    "vocab_size": 30522,
    "embedding_size": 128,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "fit_dense_size": 768,
    "max_units": 4,
}
"""The frame `PAPER_WINDOW` is defined on (keyword arguments of `frame_params`)."""

NODE_VOCAB: tuple[str, ...] = (
    *TERMINALS,
    *UNARY_OPS,
    *BINARY_OPS,
    "linear",
    *(f"linear{s}_{r}" for s, r in ALL_SIZES),
)
"""Node ids of the surrogate features: a node's id is its index in this tuple."""

FEATURES_PER_LAYER = 20
"""Length of a layer's pre-order node-id list in stages 1 and 2 (padded with -1, truncated)."""

_NODE_INDEX = {token: index for index, token in enumerate(NODE_VOCAB)}
_STAGE_TRIES = {1: 1000, 2: 400, 3: 1000}
_SEPARATOR = " | "


def _sized_exprs(arch: Architecture) -> list[Expr]:
    """Every layer's expression with the layer's size id in its linears."""
    return [with_size(parse(expr), *size) for expr, size in zip(arch.exprs, arch.size_ids, strict=True)]


def architecture_string(arch: Architecture) -> str:
    """The layers' sized expression strings joined by ``" | "``, layer 1 first.

    Example: ``linear1_1(gelu(linear1_1(x,wb1)),wb2) | tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))``.
    """
    return _SEPARATOR.join(str(expr) for expr in _sized_exprs(arch))


def parse_architecture_string(text: str, hidden: int, name: str = "candidate") -> Architecture:
    """Invert `architecture_string`.

    Args:
        text: sized layer expressions separated by ``|``.
        hidden: the hidden size H.
        name: the architecture's name.

    Returns:
        The architecture; each layer's size id is read from its expression.

    Raises:
        ValueError: a syntax error, a layer without size id, or an invalid layer.
    """
    exprs: list[str] = []
    sizes: list[Size] = []
    for index, part in enumerate(text.split("|"), start=1):
        expr = parse(part.strip())
        size = size_id(expr)
        if size is None:
            raise ValueError(
                f"layer {index} of {text!r} carries no size id: write its linears as linear{{s}}_{{r}}, "
                f"e.g. linear1_1(gelu(linear1_1(x,wb1)),wb2)"
            )
        exprs.append(str(expr))
        sizes.append(size)
    return Architecture.from_size_ids(exprs, sizes, hidden, name)


@dataclass(frozen=True)
class ParamWindow:
    """A closed interval of parameter counts.

    Attributes:
        low: the smallest allowed count.
        high: the largest allowed count.
    """

    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"parameter window needs low <= high, got [{self.low}, {self.high}]")

    def contains(self, n: int) -> bool:
        """Whether ``low <= n <= high``."""
        return self.low <= n <= self.high

    def __str__(self) -> str:
        return f"[{self.low / 1e6:.2f}M, {self.high / 1e6:.2f}M]"


def frame_params(
    hidden: int,
    num_layers: int,
    vocab_size: int,
    embedding_size: int,
    max_position_embeddings: int,
    type_vocab_size: int,
    fit_dense_size: int | None,
    max_units: int,
) -> tuple[int, int]:
    """The fixed and the maximal searchable parameters of a frame, in the paper's counting convention.

    Args:
        hidden: the hidden size H.
        num_layers: the number of transformer layers.
        vocab_size: the WordPiece vocabulary size.
        embedding_size: the width of the token embedding table.
        max_position_embeddings: the number of learned positions.
        type_vocab_size: the number of segment ids.
        fit_dense_size: the teacher width of the distillation projection ``Linear(H -> fit_dense_size)``, counted as
            the paper does; None to leave it out.
        max_units: the most MLP units a layer may stack (4 in the paper).

    Returns:
        ``(fixed_params, max_mlp_params)``: embeddings + attention blocks (+ fit_dense), and ``num_layers`` MLP blocks
        of ``max_units`` units of full width H.
    """
    config = EffBertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=1,  # heads do not change the count
        embedding_size=embedding_size,
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=type_vocab_size,
    )
    fixed = embedding_params(config) + num_layers * attention_params(hidden)
    if fit_dense_size is not None:
        fixed += hidden * fit_dense_size + fit_dense_size
    return fixed, num_layers * mlp_params(hidden, max_units, 1)


def config_frame_params(config: EffBertConfig, fit_dense_size: int, max_units: int) -> tuple[int, int]:
    """`frame_params` of a supernet config (an `EffBertConfig`), with ``fit_dense`` to ``fit_dense_size``."""
    return frame_params(
        hidden=config.hidden_size,
        num_layers=config.num_hidden_layers,
        vocab_size=config.vocab_size,
        embedding_size=config.embedding_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        fit_dense_size=fit_dense_size,
        max_units=max_units,
    )


def scaled_param_window(
    fixed_params: int, max_mlp_params: int, paper_window: tuple[int, int] = PAPER_WINDOW
) -> ParamWindow:
    """The paper's window mapped onto another frame by the share of the searchable MLP parameters.

    ``bound = fixed_params + (paper_bound - paper_fixed) / paper_max_mlp * max_mlp_params``, where ``paper_fixed`` and
    ``paper_max_mlp`` are `frame_params` of `PAPER_FRAME`. On the paper frame this gives ``paper_window`` itself.

    Args:
        fixed_params: the frame's fixed parameters (see `frame_params`).
        max_mlp_params: the frame's maximal MLP parameters (see `frame_params`).
        paper_window: the window on the paper frame.

    Returns:
        The window, bounds rounded to ints.
    """
    paper_fixed, paper_max_mlp = frame_params(**PAPER_FRAME)
    low, high = (round(fixed_params + (bound - paper_fixed) / paper_max_mlp * max_mlp_params) for bound in paper_window)
    return ParamWindow(low, high)


def _encode_expr(expr: Expr) -> list[int]:
    ids = [_NODE_INDEX[node.token if isinstance(node, Linear) else node.op] for node in nodes(expr)]
    ids = ids[:FEATURES_PER_LAYER]
    return ids + [-1] * (FEATURES_PER_LAYER - len(ids))


class SearchSpace:
    """The candidates of one search stage: feasibility, random sampling, mutation, features and fingerprints.

    Build it with `stage1_space`, `stage2_space` or `stage3_space`.

    Args:
        stage: 1 (expressions and sizes), 2 (expressions, sizes frozen) or 3 (sizes, expressions fixed).
        hidden: the hidden size H.
        num_layers: the number of layers.
        fixed_params: every parameter but the MLP blocks (embeddings, attention, fit_dense; see `frame_params`).
        window: the allowed total parameter count, or None for no constraint.
        winner: the previous stage's winner (stages 2 and 3; None for stage 1).
        accept: an extra constraint (e.g. a latency budget), applied last in `problem`.
        max_layer_tries: attempts of a layer's mutation round before the unmutated base is kept; None for the paper's
            1000 (stage 1) or 400 (stage 2).
        max_arch_tries: draws of a whole architecture before giving up.

    Raises:
        ValueError: inconsistent arguments.
    """

    def __init__(
        self,
        stage: int,
        hidden: int,
        num_layers: int,
        fixed_params: int,
        window: ParamWindow | None,
        winner: Architecture | None = None,
        accept: Callable[[Architecture], bool] | None = None,
        max_layer_tries: int | None = None,
        max_arch_tries: int = 1000,
    ) -> None:
        if stage not in (1, 2, 3):
            raise ValueError(f"stage must be 1, 2 or 3, got {stage!r}")
        if len({hidden // r for _, r in ALL_SIZES}) != 4:
            raise ValueError(f"hidden size {hidden} gives equal widths for different divisors r; use hidden >= 9")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if (winner is None) != (stage == 1):
            raise ValueError(f"stage {stage} {'takes no' if stage == 1 else 'needs a'} previous winner")
        if winner is not None and (winner.hidden_size, winner.num_layers) != (hidden, num_layers):
            raise ValueError(
                f"the winner {winner.name!r} has hidden size {winner.hidden_size} and {winner.num_layers} layers, "
                f"the space {hidden} and {num_layers}"
            )
        for name, value in (("max_layer_tries", max_layer_tries), ("max_arch_tries", max_arch_tries)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.stage = stage
        self.hidden = hidden
        self.num_layers = num_layers
        self.fixed_params = fixed_params
        self.window = window
        self.winner = winner
        self.accept = accept
        self.max_layer_tries = max_layer_tries if max_layer_tries is not None else _STAGE_TRIES[stage]
        self.max_arch_tries = max_arch_tries
        self._layer_fingerprints: dict[str, str] = {}
        self._winner_sizes: list[Size] = [] if winner is None else list(winner.size_ids)
        self._winner_plain: list[Expr] = [] if winner is None else [strip_sizes(parse(e)) for e in winner.exprs]

    def __repr__(self) -> str:
        window = "none" if self.window is None else str(self.window)
        return f"SearchSpace(stage={self.stage}, hidden={self.hidden}, layers={self.num_layers}, window={window})"

    # ---------------------------------------------------------------- feasibility

    def params(self, arch: Architecture) -> int:
        """Total parameters: ``fixed_params`` plus every layer's MLP block."""
        return self.fixed_params + sum(mlp_params(arch.hidden_size, s, r) for s, r in arch.size_ids)

    def problem(self, arch: Architecture) -> str | None:
        """Why ``arch`` is not a candidate of this space, or None when it is feasible."""
        if arch.hidden_size != self.hidden:
            return f"hidden size {arch.hidden_size}, the space has {self.hidden}"
        if arch.num_layers != self.num_layers:
            return f"{arch.num_layers} layers, the space has {self.num_layers}"
        if self.stage == 2 and list(arch.size_ids) != self._winner_sizes:
            return f"size ids {_sizes_text(arch.size_ids)} differ from the frozen {_sizes_text(self._winner_sizes)}"
        if self.stage == 3:
            plain = [strip_sizes(parse(e)) for e in arch.exprs]
            changed = [i for i, (a, b) in enumerate(zip(plain, self._winner_plain, strict=True), 1) if a != b]
            if changed:
                return f"layer(s) {changed} differ from the fixed expressions"
        if self.window is not None:
            count = self.params(arch)
            if not self.window.contains(count):
                return f"{count / 1e6:.4f}M parameters, outside the window {self.window}"
        if self.accept is not None and not self.accept(arch):
            return "rejected by the extra constraint"
        return None

    # ---------------------------------------------------------------- sampling

    def _size_options(self, layer: int) -> list[Size]:
        """Stage 3: the 17 options of a layer (the winner's own id, then the 16 ids)."""
        return [self._winner_sizes[layer], *ALL_SIZES]

    def _mutation_round(self, base: Expr, rng: random.Random, size: Size | None) -> Expr:
        """One round of subtree / node / insert mutations of ``base`` (each applied with probability 1/2, at least one).

        A failed operator is skipped. With ``size`` given (stage 2), the result must be valid with that size id
        injected. After `max_layer_tries` attempts without a valid, different result, ``base`` is returned.
        """
        operators = (mutate_subtree, mutate_node, mutate_insert)
        for _ in range(self.max_layer_tries):
            mask = [rng.random() < 0.5 for _ in operators]
            if not any(mask):
                mask[rng.randrange(len(operators))] = True
            expr, applied = base, False
            for operator, use in zip(operators, mask, strict=True):
                if not use:
                    continue
                try:
                    expr = operator(expr, rng, self.hidden, max_tries=1)
                except ValueError:
                    continue
                applied = True
            if not applied or expr == base:
                continue
            if size is None or is_valid(with_size(expr, *size), self.hidden):
                return expr
        return base

    def _draw(self, rng: random.Random) -> Architecture | None:
        """One raw random candidate (not yet checked against the window), or None when it is invalid."""
        if self.stage == 1:
            exprs = [self._mutation_round(vanilla(rng.choice(ALL_SIZES)), rng, None) for _ in range(self.num_layers)]
            sizes = [size_id(expr) or (1, 1) for expr in exprs]
        elif self.stage == 2:
            sizes = self._winner_sizes
            exprs = [
                self._mutation_round(rng.choice((self._winner_plain[layer], vanilla())), rng, sizes[layer])
                for layer in range(self.num_layers)
            ]
        else:
            exprs = self._winner_plain
            sizes = [rng.choice(self._size_options(layer)) for layer in range(self.num_layers)]
        try:
            return Architecture.from_size_ids([str(e) for e in exprs], sizes, self.hidden, "candidate")
        except ValueError:  # stage 3: an expression that is invalid at the drawn size
            return None

    def _infeasible(self, what: str, last: str | None) -> ValueError:
        window = "none" if self.window is None else str(self.window)
        return ValueError(
            f"stage {self.stage}: {what} within {self.max_arch_tries} tries (last problem: {last}); the parameter "
            f"window {window} or the extra constraint seems infeasible"
        )

    def sample(self, rng: random.Random) -> Architecture:
        """A random feasible candidate: the random phase of the paper's sampler.

        Stage 1: every layer independently takes one of the 16 sized vanilla MLPs and one mutation round. Stage 2:
        every layer takes its stage-1 expression (sizes stripped) or the plain vanilla MLP, one mutation round, and
        its frozen size id. Stage 3: every layer's size id is drawn from 17 options (the winner's own id and the 16
        ids). The whole architecture is redrawn until `problem` is None.

        Raises:
            ValueError: no feasible candidate within ``max_arch_tries`` draws.
        """
        last: str | None = None
        for _ in range(self.max_arch_tries):
            arch = self._draw(rng)
            if arch is None:
                last = "an expression is invalid at the drawn size"
                continue
            last = self.problem(arch)
            if last is None:
                return arch
        raise self._infeasible("no feasible random architecture", last)

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        """A feasible mutant of ``arch`` with a different fingerprint (for regularised evolution).

        Stage 1: one random layer's expression gets `expr.mutate` (which may change its size id). Stage 2: the
        same on the plain expression; the size stays frozen. Stage 3: one random layer gets another size id.

        Raises:
            ValueError: no feasible, different mutant within ``max_arch_tries`` tries.
        """
        exprs = _sized_exprs(arch)
        sizes = list(arch.size_ids)
        original = self.fingerprint(arch)
        last: str | None = None
        for _ in range(self.max_arch_tries):
            layer = rng.randrange(arch.num_layers)
            new_exprs, new_sizes = list(exprs), list(sizes)
            try:
                if self.stage == 3:
                    new_sizes[layer] = rng.choice([s for s in self._size_options(layer) if s != sizes[layer]])
                elif self.stage == 2:
                    new_exprs[layer] = expr_mutate(strip_sizes(exprs[layer]), rng, self.hidden, max_tries=50)
                else:
                    new_exprs[layer] = expr_mutate(exprs[layer], rng, self.hidden, max_tries=50)
                    new_sizes[layer] = size_id(new_exprs[layer]) or sizes[layer]
                child = Architecture.from_size_ids([str(e) for e in new_exprs], new_sizes, self.hidden, "candidate")
            except ValueError as err:
                last = str(err)
                continue
            last = self.problem(child)
            if last is None and self.fingerprint(child) != original:
                return child
            last = last or "same function as the parent"
        raise self._infeasible(f"no feasible mutant of {architecture_string(arch)!r}", last)

    # ---------------------------------------------------------------- features and identity

    def encode(self, arch: Architecture) -> list[int]:
        """Surrogate features.

        Stages 1 and 2: per layer, the pre-order node ids (indices into `NODE_VOCAB`) padded with -1 / truncated to
        `FEATURES_PER_LAYER` (stage 2 drops the frozen size ids, so its linears are plain ``linear``). Stage 3: per
        layer, the index of its size id in `ALL_SIZES`.
        """
        if self.stage == 3:
            return [ALL_SIZES.index(size) for size in arch.size_ids]
        exprs = _sized_exprs(arch)
        if self.stage == 2:
            exprs = [strip_sizes(expr) for expr in exprs]
        return [node_id for expr in exprs for node_id in _encode_expr(expr)]

    def feature_length(self) -> int:
        """Length of `encode`'s result."""
        return self.num_layers * (1 if self.stage == 3 else FEATURES_PER_LAYER)

    def fingerprint(self, arch: Architecture) -> str:
        """A sha256 over the layers' functional fingerprints (which include the size ids) and the layer count.

        Architectures computing the same functions with the same sizes (for example with commuted ``add`` operands)
        collide; anything else does not, within hash limits. Per-layer fingerprints are cached on the instance.
        """
        digest = hashlib.sha256(f"effbert-arch/v1;layers={arch.num_layers};".encode())
        for expr in _sized_exprs(arch):
            key = str(expr)
            layer = self._layer_fingerprints.get(key)
            if layer is None:
                layer = self._layer_fingerprints[key] = expr_fingerprint(expr)
            digest.update(f"{layer};".encode())
        return digest.hexdigest()

    # ---------------------------------------------------------------- seeds and references

    def _plain_at_winner_sizes(self) -> Architecture:
        return Architecture.from_size_ids(
            [str(vanilla())] * self.num_layers, self._winner_sizes, self.hidden, "vanilla"
        )

    def vanilla_reference(self) -> Architecture:
        """The vanilla GELU architecture of the same size, against which a stage's gain is reported.

        Stage 1: the vanilla seed (size id 1_1 everywhere); stages 2 and 3: plain GELU MLPs at the winner's sizes.
        """
        if self.stage == 1:
            return Architecture.from_size_ids(
                [str(vanilla())] * self.num_layers, [(1, 1)] * self.num_layers, self.hidden, "vanilla"
            )
        return self._plain_at_winner_sizes()

    def seeds(self) -> list[Architecture]:
        """The architectures a stage evaluates first.

        Stage 1: the vanilla GELU MLP with size id 1_1 in every layer; stage 2: the stage-1 winner and plain GELU
        MLPs at its sizes; stage 3: the stage-2 winner.

        Raises:
            ValueError: a seed is infeasible (for example the window is too tight); the message names the window.
        """
        if self.stage == 1:
            seeds = [self.vanilla_reference()]
        elif self.stage == 2:
            assert self.winner is not None
            seeds = [self.winner, self._plain_at_winner_sizes()]
        else:
            assert self.winner is not None
            seeds = [self.winner]
        for seed in seeds:
            problem = self.problem(seed)
            if problem is not None:
                window = "none" if self.window is None else str(self.window)
                raise ValueError(
                    f"stage {self.stage}: the seed {architecture_string(seed)!r} is infeasible: {problem} "
                    f"(parameter window {window})"
                )
        return seeds


def _sizes_text(sizes: Sequence[Size]) -> str:
    return ",".join(f"{s}_{r}" for s, r in sizes)


def stage1_space(
    hidden: int,
    num_layers: int,
    fixed_params: int,
    window: ParamWindow | None,
    accept: Callable[[Architecture], bool] | None = None,
    max_layer_tries: int = 1000,
    max_arch_tries: int = 1000,
) -> SearchSpace:
    """Stage 1: every layer's expression and size id, under a parameter window."""
    return SearchSpace(1, hidden, num_layers, fixed_params, window, None, accept, max_layer_tries, max_arch_tries)


def stage2_space(
    stage1_winner: Architecture,
    fixed_params: int,
    accept: Callable[[Architecture], bool] | None = None,
    max_layer_tries: int = 400,
    max_arch_tries: int = 1000,
) -> SearchSpace:
    """Stage 2: expressions only, sizes frozen to the stage-1 winner's (no window: the parameter count is fixed)."""
    return SearchSpace(
        2,
        stage1_winner.hidden_size,
        stage1_winner.num_layers,
        fixed_params,
        None,
        stage1_winner,
        accept,
        max_layer_tries,
        max_arch_tries,
    )


def stage3_space(
    stage2_winner: Architecture,
    fixed_params: int,
    window: ParamWindow | None,
    accept: Callable[[Architecture], bool] | None = None,
    max_arch_tries: int = 1000,
) -> SearchSpace:
    """Stage 3: size ids only, expressions fixed to the stage-2 winner's, under a parameter window."""
    return SearchSpace(
        3,
        stage2_winner.hidden_size,
        stage2_winner.num_layers,
        fixed_params,
        window,
        stage2_winner,
        accept,
        None,
        max_arch_tries,
    )
