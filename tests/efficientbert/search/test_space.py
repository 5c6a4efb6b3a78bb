"""Search spaces of the three stages: architecture strings, parameter windows, sampling, mutation, features."""

from __future__ import annotations

import random

import pytest

from effbert.methods.efficientbert.architecture import Architecture, load_architecture
from effbert.methods.efficientbert.expr import ALL_SIZES, mlp_params, parse, strip_sizes
from effbert.methods.efficientbert.search import (
    FEATURES_PER_LAYER,
    NODE_VOCAB,
    PAPER_FRAME,
    ParamWindow,
    SearchSpace,
    architecture_string,
    frame_params,
    parse_architecture_string,
    scaled_param_window,
    stage1_space,
    stage2_space,
    stage3_space,
)

HIDDEN = 32
LAYERS = 3
SMALL_FRAME = {
    "hidden": HIDDEN,
    "num_layers": LAYERS,
    "vocab_size": 100,
    "embedding_size": 16,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "fit_dense_size": 48,
    "max_units": 4,
}
VANILLA = "linear(gelu(linear(x,wb1)),wb2)"


def small_stage1(**kwargs: object) -> SearchSpace:
    fixed, max_mlp = frame_params(**SMALL_FRAME)
    return stage1_space(HIDDEN, LAYERS, fixed, scaled_param_window(fixed, max_mlp), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def space1() -> SearchSpace:
    return small_stage1()


@pytest.fixture(scope="module")
def winner(space1: SearchSpace) -> Architecture:
    return space1.sample(random.Random(7))


def test_architecture_string_round_trip() -> None:
    arch = Architecture.from_size_ids([VANILLA, "tanh(linear(gelu(linear(x,wb1)),wb2))"], [(1, 1), (4, 2)], 540)
    text = architecture_string(arch)
    assert text == "linear1_1(gelu(linear1_1(x,wb1)),wb2) | tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))"
    assert parse_architecture_string(text, 540, "custom") == arch
    paper = load_architecture("efficientbert")
    assert parse_architecture_string(architecture_string(paper), 540, paper.name) == paper


def test_parse_architecture_string_needs_size_ids() -> None:
    with pytest.raises(ValueError, match=r"layer 2 .* carries no size id"):
        parse_architecture_string(f"linear1_1(gelu(linear1_1(x,wb1)),wb2) | {VANILLA}", 540)


def test_param_window() -> None:
    window = ParamWindow(3_170_000, 4_170_000)
    assert str(window) == "[3.17M, 4.17M]"
    assert window.contains(3_170_000) and window.contains(4_170_000) and not window.contains(4_170_001)
    with pytest.raises(ValueError, match="low <= high"):
        ParamWindow(2, 1)


def test_paper_window_and_vanilla_seed() -> None:
    fixed, max_mlp = frame_params(**PAPER_FRAME)
    assert max_mlp == 6 * mlp_params(540, 4, 1)
    window = scaled_param_window(fixed, max_mlp)
    assert (window.low, window.high) == (15_000_000, 16_000_000)
    space = stage1_space(540, 6, fixed, window)
    (seed,) = space.seeds()
    assert space.params(seed) == 15_338_844  # the reference's 15.34M
    assert space.problem(seed) is None
    paper = load_architecture("efficientbert")
    assert round(space.params(paper) / 1e4) == 1574  # 15.74M
    assert space.problem(paper) is None


def test_scaled_window_contains_small_vanilla_seed(space1: SearchSpace) -> None:
    (seed,) = space1.seeds()
    assert seed.size_ids == [(1, 1)] * LAYERS
    assert space1.window is not None and space1.window.contains(space1.params(seed))
    assert space1.vanilla_reference() == seed


def test_stage1_sample_feasible_and_reproducible(space1: SearchSpace) -> None:
    first = [space1.sample(random.Random(3)) for _ in range(2)]
    assert first[0] == first[1]
    rng = random.Random(11)
    samples = [space1.sample(rng) for _ in range(15)]
    for arch in samples:
        assert space1.problem(arch) is None
        assert arch.num_layers == LAYERS and arch.hidden_size == HIDDEN
        assert parse_architecture_string(architecture_string(arch), HIDDEN) == arch.__class__.from_size_ids(
            arch.exprs, arch.size_ids, HIDDEN, "candidate"
        )
    assert len({architecture_string(a) for a in samples}) > 10
    assert len({size for a in samples for size in a.size_ids}) > 3


def test_stage2_sample_freezes_sizes(winner: Architecture) -> None:
    fixed, _ = frame_params(**SMALL_FRAME)
    space = stage2_space(winner, fixed)
    assert space.window is None and space.max_layer_tries == 400
    rng = random.Random(5)
    samples = [space.sample(rng) for _ in range(10)]
    for arch in samples:
        assert space.problem(arch) is None
        assert arch.size_ids == winner.size_ids
    assert len({architecture_string(a) for a in samples}) > 5
    assert [space.sample(random.Random(1)) for _ in range(2)] == [space.sample(random.Random(1))] * 2
    seeds = space.seeds()
    assert seeds[0] == winner
    assert [str(strip_sizes(parse(e))) for e in seeds[1].exprs] == [VANILLA] * LAYERS
    assert seeds[1].size_ids == winner.size_ids and space.vanilla_reference() == seeds[1]
    other = Architecture.from_size_ids(winner.exprs, [(1, 1)] * LAYERS, HIDDEN)
    if other.size_ids != winner.size_ids:
        assert "frozen" in (space.problem(other) or "")


def test_stage3_sample_fixes_expressions(winner: Architecture) -> None:
    fixed, max_mlp = frame_params(**SMALL_FRAME)
    space = stage3_space(winner, fixed, scaled_param_window(fixed, max_mlp))
    assert space.seeds() == [winner]
    rng = random.Random(9)
    samples = [space.sample(rng) for _ in range(20)]
    plain = [strip_sizes(parse(e)) for e in winner.exprs]
    for arch in samples:
        assert space.problem(arch) is None
        assert [strip_sizes(parse(e)) for e in arch.exprs] == plain
    assert len({tuple(a.size_ids) for a in samples}) > 3
    changed = Architecture.from_size_ids([VANILLA] * LAYERS, winner.size_ids, HIDDEN)
    if [strip_sizes(parse(e)) for e in changed.exprs] != plain:
        assert "fixed expressions" in (space.problem(changed) or "")


def test_mutate_keeps_feasibility(space1: SearchSpace, winner: Architecture) -> None:
    fixed, max_mlp = frame_params(**SMALL_FRAME)
    spaces = [space1, stage2_space(winner, fixed), stage3_space(winner, fixed, scaled_param_window(fixed, max_mlp))]
    rng = random.Random(2)
    for space in spaces:
        for _ in range(5):
            child = space.mutate(winner, rng)
            assert space.problem(child) is None
            assert space.fingerprint(child) != space.fingerprint(winner)
            changed = [i for i in range(LAYERS) if child.layers[i] != winner.layers[i]]
            assert len(changed) == 1
            if space.stage == 2:
                assert child.size_ids == winner.size_ids
            if space.stage == 3:
                assert child.exprs[changed[0]] != winner.exprs[changed[0]]
                assert [strip_sizes(parse(e)) for e in child.exprs] == [strip_sizes(parse(e)) for e in winner.exprs]


def test_encode(space1: SearchSpace, winner: Architecture) -> None:
    fixed, max_mlp = frame_params(**SMALL_FRAME)
    (seed,) = space1.seeds()
    features = space1.encode(seed)
    assert len(features) == LAYERS * FEATURES_PER_LAYER == space1.feature_length()
    sized = NODE_VOCAB.index("linear1_1")
    layer = [sized, NODE_VOCAB.index("gelu"), sized, 0, 1, 2] + [-1] * (FEATURES_PER_LAYER - 6)
    assert features == layer * LAYERS
    rng = random.Random(4)
    for arch in [space1.sample(rng) for _ in range(10)]:
        assert all(-1 <= v < len(NODE_VOCAB) for v in space1.encode(arch))
    stage2 = stage2_space(winner, fixed)
    features2 = stage2.encode(winner)
    assert len(features2) == LAYERS * FEATURES_PER_LAYER
    assert NODE_VOCAB.index("linear") in features2 and max(features2) == NODE_VOCAB.index("linear")
    stage3 = stage3_space(winner, fixed, scaled_param_window(fixed, max_mlp))
    assert stage3.encode(winner) == [ALL_SIZES.index(size) for size in winner.size_ids]
    assert stage3.feature_length() == LAYERS
    assert all(0 <= v < 16 for arch in [stage3.sample(rng) for _ in range(10)] for v in stage3.encode(arch))


def test_fingerprint(space1: SearchSpace) -> None:
    def arch(first: str, size: tuple[int, int] = (1, 1)) -> Architecture:
        return Architecture.from_size_ids([first, VANILLA, VANILLA], [size, (1, 1), (1, 1)], HIDDEN)

    a = arch("linear(gelu(add(linear(x,wb1),tanh(x))),wb2)")
    b = arch("linear(gelu(add(tanh(x),linear(x,wb1))),wb2)")
    assert a != b and space1.fingerprint(a) == space1.fingerprint(b)
    assert space1.fingerprint(a) != space1.fingerprint(arch("linear(gelu(add(linear(x,wb1),tanh(x))),wb2)", (2, 1)))
    assert space1.fingerprint(a) != space1.fingerprint(arch(VANILLA))
    assert space1.fingerprint(a) == small_stage1().fingerprint(a)  # deterministic across instances
    two = Architecture.from_size_ids([VANILLA] * 2, [(1, 1)] * 2, HIDDEN)
    assert space1.fingerprint(two) != space1.fingerprint(arch(VANILLA))


def test_infeasible_window_raises() -> None:
    fixed, _ = frame_params(**SMALL_FRAME)
    tight = ParamWindow(fixed + 10, fixed + 20)
    space = stage1_space(HIDDEN, LAYERS, fixed, tight, max_layer_tries=5, max_arch_tries=20)
    with pytest.raises(ValueError, match=r"seed .* infeasible: .* outside the window"):
        space.seeds()
    with pytest.raises(ValueError, match=r"no feasible random architecture within 20 tries.*window"):
        space.sample(random.Random(0))


def test_accept_constraint() -> None:
    space = small_stage1(accept=lambda arch: arch.size_ids[0][0] == 1)
    rng = random.Random(0)
    for _ in range(5):
        assert space.sample(rng).size_ids[0][0] == 1
    fixed, max_mlp = frame_params(**SMALL_FRAME)
    never = stage1_space(HIDDEN, LAYERS, fixed, scaled_param_window(fixed, max_mlp), accept=lambda arch: False)
    assert never.problem(never.vanilla_reference()) == "rejected by the extra constraint"


def test_space_arguments() -> None:
    fixed, _ = frame_params(**SMALL_FRAME)
    with pytest.raises(ValueError, match="stage must be"):
        SearchSpace(4, HIDDEN, LAYERS, fixed, None)
    with pytest.raises(ValueError, match="needs a previous winner"):
        SearchSpace(2, HIDDEN, LAYERS, fixed, None)
    with pytest.raises(ValueError, match="equal widths"):
        SearchSpace(1, 8, LAYERS, fixed, None)
