"""Samplers: validity, uniqueness and purity of proposals, regularised evolution, the LaNAS classifier tree."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from effbert.methods.efficientbert.search import (
    STRATEGIES,
    ClassifierNode,
    Evaluated,
    EvolutionSampler,
    LanasSampler,
    Proposal,
    RandomSampler,
    Sampler,
    SearchSpace,
    architecture_string,
    build_tree,
    frame_params,
    lanas_tree_height,
    make_sampler,
    scaled_param_window,
    stage1_space,
)

HIDDEN = 32
LAYERS = 2


def fake_fitness(arch: object) -> float:
    """A deterministic, partly learnable fitness: GELU layers score, plus hash noise from the architecture string."""
    text = architecture_string(arch)  # type: ignore[arg-type]
    noise = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32
    return 0.5 + 0.2 * text.count("gelu") + 0.05 * noise


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    fixed, max_mlp = frame_params(HIDDEN, LAYERS, 100, 16, 64, 2, 48, 4)
    return stage1_space(HIDDEN, LAYERS, fixed, scaled_param_window(fixed, max_mlp), max_layer_tries=200)


def sampler_for(strategy: str, space: SearchSpace) -> Sampler:
    return make_sampler(
        strategy, space, n_init=6, refit_every=4, population_size=5, tournament_size=2, seed=0, tree_height=1
    )


def evaluate(space: SearchSpace, proposals: list[Proposal]) -> list[Evaluated]:
    return [Evaluated(p.arch, p.fingerprint, fake_fitness(p.arch)) for p in proposals]


def run_search(sampler: Sampler, space: SearchSpace, rounds: int, count: int, seed: int) -> list[list[Proposal]]:
    """Propose, check and evaluate ``rounds`` batches; returns the batches."""
    rng = random.Random(seed)
    history: list[Evaluated] = []
    seen: set[str] = set()
    batches = []
    for _ in range(rounds):
        seen_before = set(seen)
        proposals = sampler.propose(history, count, rng, seen)
        assert seen == seen_before, "propose must not modify seen"
        assert len(proposals) == count
        fingerprints = [p.fingerprint for p in proposals]
        assert len(set(fingerprints)) == len(fingerprints)
        for proposal in proposals:
            assert space.problem(proposal.arch) is None
            assert proposal.fingerprint == space.fingerprint(proposal.arch)
            assert proposal.fingerprint not in seen
        seen.update(fingerprints)
        history.extend(evaluate(space, proposals))
        batches.append(proposals)
    return batches


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_proposals_valid_unique_and_seeded(strategy: str, space: SearchSpace) -> None:
    sampler = sampler_for(strategy, space)
    assert sampler.name == strategy
    batches = run_search(sampler, space, rounds=4, count=3, seed=1)
    first = batches[0][0]
    assert first.origin == "seed" and first.arch == space.seeds()[0]
    assert sum(p.origin == "seed" for batch in batches for p in batch) == 1
    origins = {p.origin for batch in batches for p in batch}
    expected = {"random": {"seed", "random"}, "evolution": {"seed", "random", "evolution"}}
    if strategy in expected:
        assert origins == expected[strategy]
    else:
        assert origins <= {"seed", "random", "lanas", "lanas-fallback"} and origins & {"lanas", "lanas-fallback"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_proposals_are_a_pure_function_of_the_history(strategy: str, space: SearchSpace) -> None:
    rng = random.Random(3)
    history: list[Evaluated] = []
    seen: set[str] = set()
    sampler = sampler_for(strategy, space)
    for _ in range(3):
        proposals = sampler.propose(history, 3, rng, seen)
        seen.update(p.fingerprint for p in proposals)
        history.extend(evaluate(space, proposals))
    state = random.Random(99).getstate()
    again = []
    for instance in (sampler, sampler_for(strategy, space), sampler):  # a fresh instance must agree
        rng.setstate(state)
        again.append(instance.propose(history, 3, rng, seen))
    assert again[0] == again[1] == again[2]
    assert all(p.fingerprint not in seen for p in again[0])


def test_seeds_come_first_and_only_once(space: SearchSpace) -> None:
    sampler = RandomSampler(space)
    (seed,) = space.seeds()
    proposals = sampler.propose([], 1, random.Random(0), set())
    assert [(p.arch, p.origin) for p in proposals] == [(seed, "seed")]
    later = sampler.propose([], 3, random.Random(0), {space.fingerprint(seed)})
    assert all(p.origin == "random" for p in later)


def test_evolution_population_ages(space: SearchSpace) -> None:
    sampler = EvolutionSampler(space, population_size=4, tournament_size=2)
    rng = random.Random(5)
    history: list[Evaluated] = []
    seen: set[str] = set()
    for step in range(10):
        proposals = sampler.propose(history, 1, rng, seen)
        if len(history) < 4:
            assert proposals[0].origin in ("seed", "random")
        else:
            assert proposals[0].origin == "evolution"
        seen.update(p.fingerprint for p in proposals)
        history.extend(evaluate(space, proposals))
        population = sampler.population(history)
        assert len(population) == min(step + 1, 4)
        assert population == history[-4:]
    with pytest.raises(ValueError, match="tournament_size"):
        EvolutionSampler(space, population_size=2, tournament_size=3)


def test_evolution_child_descends_from_tournament_winner(space: SearchSpace) -> None:
    sampler = EvolutionSampler(space, population_size=3, tournament_size=3)
    rng = random.Random(8)
    archs = [space.sample(rng) for _ in range(3)]
    history = [Evaluated(a, space.fingerprint(a), f) for a, f in zip(archs, (0.1, 0.9, 0.0), strict=True)]
    seen = {space.fingerprint(s) for s in space.seeds()} | {item.fingerprint for item in history}
    (child,) = sampler.propose(history, 1, rng, seen)
    differing = [i for i in range(LAYERS) if child.arch.layers[i] != archs[1].layers[i]]
    assert child.origin == "evolution" and len(differing) == 1


def constructed_data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.integers(0, 10, size=(n, 3)).astype(np.float64)
    return features, features[:, 0] * 1.0


def test_build_tree_splits_at_the_median() -> None:
    features, fitness = constructed_data()
    root = build_tree(features, fitness, height=2, seed=0, num_boost_round=50)
    assert root.median == np.median(fitness) and not root.is_leaf
    assert root.good is not None and root.bad is not None
    np.testing.assert_array_equal(root.good.indices, np.flatnonzero(fitness >= root.median))
    np.testing.assert_array_equal(root.bad.indices, np.flatnonzero(fitness < root.median))
    assert root.good.median == np.median(fitness[root.good.indices])
    assert root.best_child() is root.good and len(root.path()) == 3
    good_point, bad_point = [9.0, 5.0, 5.0], [0.0, 5.0, 5.0]
    assert root.good_path(good_point)
    assert not root.good_path(bad_point)
    assert root.predict(good_point) >= 0.5 > root.predict(bad_point)


def test_build_tree_tiny_and_degenerate_data() -> None:
    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    tiny = build_tree(features, np.array([0.1, 0.2, 0.3, 0.4]), height=1, seed=0, num_boost_round=20)
    assert not tiny.is_leaf and tiny.good_path([3.0]) and not tiny.good_path([0.0])
    flat = build_tree(features, np.full(4, 0.5), height=3)
    assert flat.is_leaf and flat.good_path([0.0])
    single = build_tree(features[:1], np.array([0.3]), height=2)
    assert single.is_leaf and isinstance(single, ClassifierNode)
    assert build_tree(features, np.arange(4.0), height=0).is_leaf
    with pytest.raises(ValueError, match="need features"):
        build_tree(features, np.arange(3.0), height=1)


def test_build_tree_is_deterministic() -> None:
    features, fitness = constructed_data()
    noisy = fitness + np.random.default_rng(1).normal(size=fitness.shape)
    a, b = (build_tree(features, noisy, height=2, seed=3, num_boost_round=30) for _ in range(2))
    probe = np.random.default_rng(2).integers(0, 10, size=(20, 3))
    assert [a.good_path(x) for x in probe] == [b.good_path(x) for x in probe]


def test_lanas_tree_height_rule() -> None:
    assert [lanas_tree_height(n) for n in (0, 400, 401, 800, 1600, 3200, 3201)] == [1, 1, 2, 2, 3, 4, 5]


def test_lanas_refits_only_at_multiples_of_refit_every(space: SearchSpace) -> None:
    sampler = LanasSampler(space, n_init=6, refit_every=4, tree_height=1, num_boost_round=20)
    rng = random.Random(4)
    archs = [space.sample(rng) for _ in range(14)]
    history = [Evaluated(a, space.fingerprint(a), fake_fitness(a)) for a in archs]
    assert sampler.training_history(history[:11]) == history[:8]
    probe = np.array([space.encode(space.sample(rng)) for _ in range(30)], dtype=np.float64)

    def decisions(tree: ClassifierNode) -> tuple[float, ...]:
        return (tree.median, *(tree.predict(x) for x in probe))

    fresh = [
        decisions(LanasSampler(space, 6, 4, tree_height=1, num_boost_round=20).fit_tree(history[:n]))
        for n in range(8, 15)
    ]
    assert fresh[0] == fresh[1] == fresh[2] == fresh[3]  # lengths 8..11 fit on the first 8
    assert fresh[4] == fresh[5] == fresh[6]  # lengths 12..14 fit on the first 12
    assert fresh[3] != fresh[4]
    assert sampler.fit_tree(history[:9]) is sampler.fit_tree(history[:10])  # memoised, same training data


def test_lanas_proposes_guided_candidates_after_n_init(space: SearchSpace) -> None:
    sampler = LanasSampler(space, n_init=8, refit_every=4, tree_height=1, num_boost_round=30, max_tries=2000)
    rng = random.Random(6)
    history: list[Evaluated] = []
    seen: set[str] = set()
    while len(history) < 8:
        proposals = sampler.propose(history, 4, rng, seen)
        assert all(p.origin in ("seed", "random") for p in proposals)
        seen.update(p.fingerprint for p in proposals)
        history.extend(evaluate(space, proposals))
    guided = sampler.propose(history, 8, rng, seen)
    assert sum(p.origin == "lanas" for p in guided) >= 6
    tree = sampler.fit_tree(history)
    assert all(tree.good_path(space.encode(p.arch)) for p in guided if p.origin == "lanas")
    accepted = [tree.good_path(space.encode(space.sample(rng))) for _ in range(40)]
    assert 0 < sum(accepted) < len(accepted)  # the path filters: it rejects part of the random candidates


def test_make_sampler(space: SearchSpace) -> None:
    assert isinstance(sampler_for("random", space), RandomSampler)
    assert isinstance(sampler_for("evolution", space), EvolutionSampler)
    lanas = sampler_for("lanas", space)
    assert isinstance(lanas, LanasSampler) and lanas.n_init == 6 and lanas.refit_every == 4
    with pytest.raises(ValueError, match="unknown search strategy 'bayes'; allowed: lanas, evolution, random"):
        sampler_for("bayes", space)
