"""Candidate samplers: random search, regularised evolution and the paper's LaNAS-style learned action space.

Contract of every `Sampler`: ``propose(history, count, rng, seen)`` depends only on its arguments (the history, the
state of ``rng`` and the fingerprints in ``seen``), never on state carried between calls, so a killed search resumes
by replaying its history. Every proposal is feasible (``space.problem(arch) is None``), its fingerprint is not in
``seen`` and differs from the other proposals of the same call, and the space's seeds not yet in ``seen`` come first.
``seen`` is read, never modified: the caller records what it evaluates. A call returns fewer than ``count`` proposals
only when no new candidate turns up (the space looks exhausted).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np

from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.search.space import SearchSpace

__all__ = [
    "STRATEGIES",
    "ClassifierNode",
    "Evaluated",
    "EvolutionSampler",
    "LanasSampler",
    "Proposal",
    "RandomSampler",
    "Sampler",
    "build_tree",
    "lanas_tree_height",
    "make_sampler",
]

STRATEGIES: tuple[str, ...] = ("lanas", "evolution", "random")
_MAX_RANDOM_TRIES = 1000


@dataclass(frozen=True)
class Evaluated:
    """An evaluated candidate.

    Attributes:
        arch: the architecture.
        fingerprint: its `SearchSpace.fingerprint`.
        fitness: its score; 0.0 for a failed candidate (which stays in the history).
    """

    arch: Architecture
    fingerprint: str
    fitness: float


@dataclass(frozen=True)
class Proposal:
    """A candidate to evaluate.

    Attributes:
        arch: the architecture.
        fingerprint: its `SearchSpace.fingerprint`.
        origin: how it was found: ``"seed"``, ``"random"``, ``"evolution"``, ``"lanas"`` or ``"lanas-fallback"``.
    """

    arch: Architecture
    fingerprint: str
    origin: str


class Sampler(Protocol):
    """Proposes new candidates from the evaluated history (see the module docstring for the contract)."""

    name: str

    def propose(
        self, history: Sequence[Evaluated], count: int, rng: random.Random, seen: set[str]
    ) -> list[Proposal]: ...


def _seed_proposals(space: SearchSpace, count: int, taken: set[str]) -> list[Proposal]:
    """The space's seeds whose fingerprints are not in ``taken`` (at most ``count``); adds them to ``taken``."""
    proposals: list[Proposal] = []
    for seed in space.seeds():
        if len(proposals) >= count:
            break
        fp = space.fingerprint(seed)
        if fp not in taken:
            taken.add(fp)
            proposals.append(Proposal(seed, fp, "seed"))
    return proposals


def _random_proposal(space: SearchSpace, rng: random.Random, taken: set[str]) -> Proposal | None:
    """A random feasible candidate not in ``taken`` (then added to it), or None after many duplicates."""
    for _ in range(_MAX_RANDOM_TRIES):
        arch = space.sample(rng)
        fp = space.fingerprint(arch)
        if fp not in taken:
            taken.add(fp)
            return Proposal(arch, fp, "random")
    return None


def _check_count(count: int) -> None:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")


class RandomSampler:
    """Random search: the seeds, then `SearchSpace.sample` until unique.

    Args:
        space: the search space.
    """

    name = "random"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def propose(self, history: Sequence[Evaluated], count: int, rng: random.Random, seen: set[str]) -> list[Proposal]:
        """Up to ``count`` new feasible candidates (seeds first, then random)."""
        _check_count(count)
        taken = set(seen)
        proposals = _seed_proposals(self.space, count, taken)
        while len(proposals) < count:
            proposal = _random_proposal(self.space, rng, taken)
            if proposal is None:
                break
            proposals.append(proposal)
        return proposals


class EvolutionSampler:
    """Regularised (ageing) evolution, Real et al. 2019.

    While the history is shorter than ``population_size`` the proposals are random. After that the population is the
    last ``population_size`` entries of the history (the oldest dies), and every proposal is the `SearchSpace.mutate`
    child of the fittest of ``tournament_size`` members drawn uniformly without replacement; a child whose
    fingerprint is taken is redrawn. When no new child turns up, a random candidate is proposed instead.

    Args:
        space: the search space.
        population_size: the population size P.
        tournament_size: the tournament size S (1 <= S <= P).

    Raises:
        ValueError: invalid sizes.
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, population_size: int, tournament_size: int, max_tries: int = 100) -> None:
        if population_size < 1 or not 1 <= tournament_size <= population_size:
            raise ValueError(
                f"need population_size >= 1 and 1 <= tournament_size <= population_size, got "
                f"population_size={population_size}, tournament_size={tournament_size}"
            )
        self.space = space
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.max_tries = max_tries

    def population(self, history: Sequence[Evaluated]) -> list[Evaluated]:
        """The living population: the last ``population_size`` entries of the history."""
        return list(history[-self.population_size :])

    def _child(self, population: Sequence[Evaluated], rng: random.Random, taken: set[str]) -> Proposal | None:
        for _ in range(self.max_tries):
            contestants = rng.sample(list(population), self.tournament_size)
            parent = max(contestants, key=lambda member: member.fitness)
            try:
                child = self.space.mutate(parent.arch, rng)
            except ValueError:
                continue
            fp = self.space.fingerprint(child)
            if fp not in taken:
                taken.add(fp)
                return Proposal(child, fp, "evolution")
        return None

    def propose(self, history: Sequence[Evaluated], count: int, rng: random.Random, seen: set[str]) -> list[Proposal]:
        """Up to ``count`` new feasible candidates (seeds first, then random or evolved)."""
        _check_count(count)
        taken = set(seen)
        proposals = _seed_proposals(self.space, count, taken)
        evolve = len(history) >= self.population_size
        population = self.population(history)
        while len(proposals) < count:
            proposal = self._child(population, rng, taken) if evolve else None
            if proposal is None:
                proposal = _random_proposal(self.space, rng, taken)
            if proposal is None:
                break
            proposals.append(proposal)
        return proposals


@dataclass(eq=False)
class ClassifierNode:
    """A node of the LaNAS surrogate tree.

    Attributes:
        indices: the indices (into the arrays given to `build_tree`) of the samples in this node.
        median: the median fitness of those samples (nan for an empty node).
        booster: the LightGBM classifier of "fitness >= median"; None for a leaf (which accepts everything).
        good: the child holding the samples with fitness >= median (None for a leaf).
        bad: the child holding the samples with fitness < median (None for a leaf).
    """

    indices: np.ndarray
    median: float
    booster: Any = None
    good: ClassifierNode | None = None
    bad: ClassifierNode | None = None

    @property
    def is_leaf(self) -> bool:
        """Whether this node has no classifier."""
        return self.booster is None

    def predict(self, x: Sequence[float] | np.ndarray) -> float:
        """The classifier's probability that ``x`` is good (1.0 at a leaf)."""
        if self.booster is None:
            return 1.0
        row = np.asarray(x, dtype=np.float64).reshape(1, -1)
        return float(self.booster.predict(row)[0])

    def best_child(self) -> ClassifierNode | None:
        """The child with the larger median (the good half; None at a leaf)."""
        if self.good is None or self.bad is None:
            return None
        return self.bad if self.bad.median > self.good.median else self.good

    def path(self) -> list[ClassifierNode]:
        """The nodes from this one to the best leaf, always following `best_child`."""
        nodes: list[ClassifierNode] = [self]
        child = self.best_child()
        while child is not None:
            nodes.append(child)
            child = child.best_child()
        return nodes

    def good_path(self, x: Sequence[float] | np.ndarray) -> bool:
        """Whether every classifier on the path to the best leaf predicts "good" (probability >= 0.5) for ``x``."""
        return all(node.predict(x) >= 0.5 for node in self.path() if not node.is_leaf)


def _train_classifier(features: np.ndarray, labels: np.ndarray, seed: int, num_boost_round: int) -> Any:
    params = {
        "objective": "binary",
        "num_leaves": 4,
        "learning_rate": 0.1,
        "min_data_in_leaf": 1,
        "min_data_in_bin": 1,
        "min_sum_hessian_in_leaf": 1e-6,
        "feature_pre_filter": False,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": seed,
        "verbose": -1,
    }
    dataset = lgb.Dataset(features, label=labels.astype(np.float64), params=params, free_raw_data=True)
    return lgb.train(params, dataset, num_boost_round=num_boost_round)


def build_tree(
    features: np.ndarray, fitness: np.ndarray, height: int, seed: int = 0, num_boost_round: int = 100
) -> ClassifierNode:
    """Fit the LaNAS surrogate: a binary tree of LightGBM classifiers splitting the samples at their median fitness.

    Every internal node trains a binary classifier of "fitness >= median of this node's samples" and hands the
    samples with fitness >= median (by their true label) to its ``good`` child and the rest to its ``bad`` child. A
    node at depth ``height``, with fewer than 2 samples, or whose labels are all equal is a leaf that accepts
    everything. Unlike the paper (80/20 splits, hyperopt-tuned hyper-parameters, retraining until the validation error
    is below 0.5) each classifier is trained once on all of its node's samples with fixed parameters (``num_leaves``
    4, learning rate 0.1, ``num_boost_round`` rounds), deterministically.

    Args:
        features: ``(n, d)`` sample features (`SearchSpace.encode`).
        fitness: ``(n,)`` fitness values.
        height: the tree height (0: a single accepting leaf).
        seed: LightGBM's seed.
        num_boost_round: boosting rounds of every classifier.

    Returns:
        The root node.

    Raises:
        ValueError: mismatched shapes or a negative height.
    """
    features = np.asarray(features, dtype=np.float64)
    fitness = np.asarray(fitness, dtype=np.float64)
    if features.ndim != 2 or fitness.shape != (features.shape[0],):
        raise ValueError(f"need features (n, d) and fitness (n,), got {features.shape} and {fitness.shape}")
    if height < 0:
        raise ValueError(f"height must be >= 0, got {height}")

    def node(indices: np.ndarray, depth: int) -> ClassifierNode:
        median = float(np.median(fitness[indices])) if len(indices) else float("nan")
        labels = fitness[indices] >= median
        if depth >= height or len(indices) < 2 or labels.all() or not labels.any():
            return ClassifierNode(indices, median)
        booster = _train_classifier(features[indices], labels, seed, num_boost_round)
        good, bad = node(indices[labels], depth + 1), node(indices[~labels], depth + 1)
        return ClassifierNode(indices, median, booster, good, bad)

    return node(np.arange(len(fitness)), 0)


def lanas_tree_height(samples: int) -> int:
    """The paper's tree height: 1 up to 400 samples, 2 up to 800, 3 up to 1600, 4 up to 3200, 5 beyond."""
    for height, limit in enumerate((400, 800, 1600, 3200), start=1):
        if samples <= limit:
            return height
    return 5


class LanasSampler:
    """The paper's learned action space (LaNAS-style).

    Until ``n_init`` candidates are evaluated the proposals are random. Then a `build_tree` surrogate is fitted on
    ``history[: (len(history) // refit_every) * refit_every]`` (so it changes only every ``refit_every`` evaluations
    and stays a pure function of the history), and random candidates are drawn until every classifier on the path
    to the best leaf accepts one that is new (origin ``"lanas"``); after ``max_tries`` draws the first new random
    candidate is taken instead (origin ``"lanas-fallback"``). The fitted tree is memoised by its training data, which
    saves time without changing any result.

    Args:
        space: the search space.
        n_init: evaluated samples of the random phase (the paper uses 80).
        refit_every: evaluations between refits (the paper uses 10).
        tree_height: a fixed tree height, or None for the paper's rule (`lanas_tree_height`).
        max_tries: draws per proposal before the fallback (the paper uses 20000).
        num_boost_round: boosting rounds of every classifier.
        seed: LightGBM's seed.

    Raises:
        ValueError: invalid arguments.
    """

    name = "lanas"

    def __init__(
        self,
        space: SearchSpace,
        n_init: int,
        refit_every: int,
        tree_height: int | None = None,
        max_tries: int = 20000,
        num_boost_round: int = 100,
        seed: int = 0,
    ) -> None:
        if n_init < 0 or refit_every < 1 or max_tries < 1 or num_boost_round < 1:
            raise ValueError(
                f"need n_init >= 0, refit_every >= 1, max_tries >= 1, num_boost_round >= 1, got n_init={n_init}, "
                f"refit_every={refit_every}, max_tries={max_tries}, num_boost_round={num_boost_round}"
            )
        if tree_height is not None and tree_height < 0:
            raise ValueError(f"tree_height must be >= 0 or None, got {tree_height}")
        self.space = space
        self.n_init = n_init
        self.refit_every = refit_every
        self.tree_height = tree_height
        self.max_tries = max_tries
        self.num_boost_round = num_boost_round
        self.seed = seed
        self._memo: tuple[tuple[Any, ...], ClassifierNode] | None = None

    def training_history(self, history: Sequence[Evaluated]) -> list[Evaluated]:
        """The part of the history the tree is fitted on: its first multiple of ``refit_every`` entries."""
        return list(history[: (len(history) // self.refit_every) * self.refit_every])

    def fit_tree(self, history: Sequence[Evaluated]) -> ClassifierNode:
        """The surrogate tree for this history (memoised by the training data)."""
        train = self.training_history(history)
        height = self.tree_height if self.tree_height is not None else lanas_tree_height(len(train))
        key = (height, *((item.arch.hidden_size, item.arch.layers, item.fitness) for item in train))
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        width = self.space.feature_length()
        features = np.array([self.space.encode(item.arch) for item in train], dtype=np.float64).reshape(-1, width)
        fitness = np.array([item.fitness for item in train], dtype=np.float64)
        tree = build_tree(features, fitness, height, self.seed, self.num_boost_round)
        self._memo = (key, tree)
        return tree

    def _guided(self, tree: ClassifierNode, rng: random.Random, taken: set[str]) -> Proposal | None:
        fallback: Proposal | None = None
        for _ in range(self.max_tries):
            arch = self.space.sample(rng)
            if tree.good_path(self.space.encode(arch)):
                fp = self.space.fingerprint(arch)
                if fp not in taken:
                    taken.add(fp)
                    return Proposal(arch, fp, "lanas")
            elif fallback is None:
                fp = self.space.fingerprint(arch)
                if fp not in taken:
                    fallback = Proposal(arch, fp, "lanas-fallback")
        if fallback is not None:
            taken.add(fallback.fingerprint)
        return fallback

    def propose(self, history: Sequence[Evaluated], count: int, rng: random.Random, seen: set[str]) -> list[Proposal]:
        """Up to ``count`` new feasible candidates (seeds first, then random or tree-guided)."""
        _check_count(count)
        taken = set(seen)
        proposals = _seed_proposals(self.space, count, taken)
        tree = self.fit_tree(history) if len(history) >= self.n_init and count > len(proposals) else None
        while len(proposals) < count:
            proposal = self._guided(tree, rng, taken) if tree is not None else _random_proposal(self.space, rng, taken)
            if proposal is None:
                break
            proposals.append(proposal)
        return proposals


def make_sampler(
    strategy: str,
    space: SearchSpace,
    *,
    n_init: int,
    refit_every: int,
    population_size: int,
    tournament_size: int,
    seed: int,
    tree_height: int | None = None,
) -> Sampler:
    """The sampler of a strategy name.

    Args:
        strategy: one of `STRATEGIES`: ``"lanas"``, ``"evolution"`` or ``"random"``.
        space: the search space.
        n_init: LaNAS's random-phase length.
        refit_every: LaNAS's refit interval.
        population_size: evolution's population size.
        tournament_size: evolution's tournament size.
        seed: LaNAS's LightGBM seed.
        tree_height: LaNAS's fixed tree height, or None for the paper's rule.

    Raises:
        ValueError: an unknown strategy (the message lists the allowed ones) or invalid parameters.
    """
    if strategy == "lanas":
        return LanasSampler(space, n_init, refit_every, tree_height=tree_height, seed=seed)
    if strategy == "evolution":
        return EvolutionSampler(space, population_size, tournament_size)
    if strategy == "random":
        return RandomSampler(space)
    raise ValueError(f"unknown search strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
