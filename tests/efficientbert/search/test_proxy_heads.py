"""Proxy evaluation: every candidate gets a fresh pooler and classifier from the seed; the data-prefix rule."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from effbert.data.prepared import head_rows
from effbert.data.tasks import get_task
from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.configuration_effbert import VANILLA_EXPR
from effbert.methods.efficientbert.modeling_effbert import EffBertModel
from effbert.methods.efficientbert.search.proxy import with_fresh_head
from effbert.methods.efficientbert.supernet import materialize, supernet_config


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread: None) -> None:
    """Tiny models: torch single-threaded (the shared fixture of tests/conftest.py)."""


def tiny_body(seed: int = 0) -> EffBertModel:
    torch.manual_seed(seed)
    return EffBertModel(
        supernet_config(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, vocab_size=60, embedding_size=8)
    )


def head_weights(model: Any) -> dict[str, torch.Tensor]:
    """Copies of the fresh head's tensors: pooler and classifier."""
    pooler = model.effbert.pooler.dense
    return {
        "pooler.weight": pooler.weight.detach().clone(),
        "pooler.bias": pooler.bias.detach().clone(),
        "classifier.weight": model.classifier.weight.detach().clone(),
        "classifier.bias": model.classifier.bias.detach().clone(),
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_the_head_wraps_the_given_body() -> None:
    body = tiny_body()
    embeddings = body.embeddings.word_embeddings.weight.detach().clone()
    model = with_fresh_head(body, get_task("sst2"), seed=1)
    assert model.effbert is body
    assert model.num_labels == 2 and model.classifier.out_features == 2
    assert model.config.problem_type == "single_label_classification"
    assert torch.equal(body.embeddings.word_embeddings.weight, embeddings)  # the body keeps its weights
    assert body.pooler is not None
    names = {name for name, _ in model.named_parameters()}
    assert "effbert.pooler.dense.weight" in names and "classifier.weight" in names
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[2, 7, 9, 3]])).logits
    assert logits.shape == (1, 2)


def test_the_fresh_head_depends_on_the_seed_only() -> None:
    spec = get_task("sst2")
    first = head_weights(with_fresh_head(tiny_body(0), spec, seed=7))
    # another body (other weights, same frame) gets the same fresh head
    assert_same(first, head_weights(with_fresh_head(tiny_body(1), spec, seed=7)))
    # nothing leaks from a previous candidate: train (here: perturb) its head, then build the next one on the body
    body = tiny_body(2)
    previous = with_fresh_head(body, spec, seed=7)
    with torch.no_grad():
        previous.classifier.weight.add_(1.0)
        previous.effbert.pooler.dense.weight.mul_(-3.0)
        previous.effbert.pooler.dense.bias.add_(0.5)
    following = with_fresh_head(body, spec, seed=7)
    assert_same(first, head_weights(following))
    assert following.classifier is not previous.classifier
    # the global RNG state before the call does not matter either
    torch.manual_seed(12345)
    torch.rand(100)
    assert_same(first, head_weights(with_fresh_head(tiny_body(3), spec, seed=7)))


def test_the_fresh_head_does_not_depend_on_the_candidate_architecture() -> None:
    spec = get_task("sst2")
    supernet = tiny_body(0)
    small = materialize(supernet, Architecture.from_size_ids([VANILLA_EXPR] * 2, [(1, 1), (2, 2)], 16, "small"))
    large = materialize(supernet, Architecture.from_size_ids([VANILLA_EXPR] * 2, [(4, 1), (3, 4)], 16, "large"))
    assert_same(head_weights(with_fresh_head(small, spec, seed=7)), head_weights(with_fresh_head(large, spec, seed=7)))


def test_another_seed_gives_another_head() -> None:
    spec = get_task("sst2")
    a = head_weights(with_fresh_head(tiny_body(), spec, seed=7))
    b = head_weights(with_fresh_head(tiny_body(), spec, seed=8))
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
    assert not torch.equal(a["pooler.weight"], b["pooler.weight"])


def test_regression_task_gets_one_output() -> None:
    model = with_fresh_head(tiny_body(), get_task("stsb"), seed=0)
    assert model.num_labels == 1 and model.classifier.out_features == 1
    assert model.config.problem_type == "regression"
    model.eval()
    out = model(input_ids=torch.tensor([[2, 7, 3]]), labels=torch.tensor([2.5]))
    assert out.logits.shape == (1, 1)
    assert torch.isfinite(out.loss)


def test_three_class_task_gets_three_outputs() -> None:
    model = with_fresh_head(tiny_body(), get_task("mnli"), seed=0)
    assert model.classifier.out_features == 3


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [
        (100, 0.1, 10),
        (100, 0.109, 10),  # floor, not round
        (99, 0.5, 49),
        (10, 1.0, 10),
        (7, 0.01, 1),  # at least one row
        (1, 0.0, 1),
        (0, 0.5, 1),
        (1000, 0.999, 999),
    ],
)
def test_head_prefix_floors_and_keeps_at_least_one_row(n: int, fraction: float, expected: int) -> None:
    assert head_rows(n, fraction) == expected
