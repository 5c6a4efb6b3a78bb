"""Metrics checked against sklearn/scipy (independent implementations) and hand-computed SQuAD cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from effbert.data.tasks import TASKS
from effbert.eval.metrics import (
    accuracy,
    f1_binary,
    glue_metrics,
    matthews_corr,
    normalize_answer,
    pearson,
    spearman,
    squad_metrics,
)


def _label_pairs(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, k, n))
    return preds, labels


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("n", "k"), [(7, 2), (500, 2), (300, 3), (50, 5)])
def test_classification_metrics_match_sklearn(seed: int, n: int, k: int) -> None:
    preds, labels = _label_pairs(seed, n, k)
    assert accuracy(preds, labels) == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)
    assert matthews_corr(preds, labels) == pytest.approx(skm.matthews_corrcoef(labels, preds), abs=1e-12)
    if k == 2:
        assert f1_binary(preds, labels) == pytest.approx(skm.f1_score(labels, preds, zero_division=0.0), abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_correlations_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=200)
    y = 0.5 * x + rng.normal(size=200)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    # tie-heavy: STS-B-like scores on a 0..5 grid of halves
    a = rng.integers(0, 11, 150) / 2
    b = np.clip(a + rng.integers(-2, 3, 150) / 2, 0, 5)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    assert spearman(a.astype(int), b) == pytest.approx(stats.spearmanr(a.astype(int), b)[0], abs=1e-12)


def test_hand_computed_and_types() -> None:
    preds, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert accuracy(preds, labels) == 0.6
    assert f1_binary(preds, labels) == pytest.approx(2 / 3)  # tp=2 fp=1 fn=1
    assert matthews_corr(preds, labels) == pytest.approx((2 * 1 - 1 * 1) / np.sqrt(3 * 2 * 3 * 2))
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(stats.spearmanr([1, 2, 2, 3], [1, 2, 3, 4])[0])
    for value in (accuracy(preds, labels), matthews_corr(preds, labels), pearson(preds, labels)):
        assert type(value) is float


def test_degenerate_inputs() -> None:
    assert matthews_corr([1, 1, 1], [0, 1, 0]) == 0.0  # constant predictions
    assert matthews_corr([0, 1, 0], [1, 1, 1]) == 0.0  # constant labels
    assert pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
    assert spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]) == 0.0
    assert f1_binary([0, 0], [0, 0]) == 0.0
    assert matthews_corr([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    for fn in (accuracy, f1_binary, matthews_corr, pearson, spearman):
        with pytest.raises(ValueError, match="empty"):
            fn([], [])
        with pytest.raises(ValueError, match="length"):
            fn([1, 0], [1])


@pytest.mark.parametrize("task", [t for t, spec in TASKS.items() if not spec.is_squad])
def test_glue_metrics_names(task: str) -> None:
    preds, labels = _label_pairs(0, 100, len(TASKS[task].labels) or 2)
    result = glue_metrics(task, preds, labels)
    expected = [m for m in TASKS[task].metrics if m != "accuracy_mm"]
    assert list(result) == expected
    assert all(type(v) is float and -1.0 <= v <= 1.0 for v in result.values())
    if task == "mrpc":
        assert result["f1"] == pytest.approx(skm.f1_score(labels, preds))


def test_glue_metrics_rejects_squad() -> None:
    with pytest.raises(ValueError, match="squad_metrics"):
        glue_metrics("squad_v1", [1], [1])


# --- SQuAD ----------------------------------------------------------------------------------------------------


def _ex(qid: str, *answers: str) -> dict[str, Any]:
    return {
        "id": qid,
        "answers": {"text": list(answers), "answer_start": [0] * len(answers)},
        "is_impossible": not answers,
    }


def test_normalize_answer() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("  an apple, a Pear and THE plum. ") == "apple pear and plum"
    assert normalize_answer("Theory of anything") == "theory of anything"  # articles only as whole words
    assert normalize_answer("the") == ""


def test_squad_v1_em_f1_max_over_gold() -> None:
    examples = [_ex("a", "Denver Broncos", "The Denver Broncos"), _ex("b", "in 1889", "1889"), _ex("c", "Paris")]
    preds = {"a": "the denver broncos.", "b": "built in the year 1889", "c": "London"}
    result = squad_metrics(preds, examples, version_2=False)
    # a: EM 1, F1 1. b: EM 0; F1 vs "in 1889": p=2/4 r=2/2 -> 2/3; vs "1889": p=1/4 r=1 -> 0.4. c: 0, 0.
    assert result == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3})


def test_squad_token_f1_counts_repeats() -> None:
    # common tokens are a multiset intersection: "x y y z" vs "w y y" -> 2 common; p=2/4 r=2/3
    result = squad_metrics({"q": "x y y z"}, [_ex("q", "w y y")], version_2=False)
    assert result["f1"] == pytest.approx(100 * 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert result["exact_match"] == 0.0


def test_squad_missing_prediction_scores_zero() -> None:
    result = squad_metrics({"a": "x"}, [_ex("a", "x"), _ex("b", "y")], version_2=False)
    assert result == {"exact_match": 50.0, "f1": 50.0}


def test_squad_v2_breakdown_and_threshold() -> None:
    examples = [_ex("h1", "Paris"), _ex("h2", "1889"), _ex("n1"), _ex("n2")]
    preds = {"h1": "Paris", "h2": "in 1889", "n1": "", "n2": "something"}
    result = squad_metrics(preds, examples, version_2=True)
    assert result == pytest.approx(
        {
            "exact_match": 50.0,
            "f1": 100 * (1 + 2 / 3 + 1 + 0) / 4,
            "HasAns_exact": 50.0,
            "HasAns_f1": 100 * (1 + 2 / 3) / 2,
            "HasAns_total": 2.0,
            "NoAns_exact": 50.0,
            "NoAns_f1": 50.0,
            "NoAns_total": 2.0,
        }
    )
    odds = {"h1": 0.5, "h2": -1.0, "n1": 3.0, "n2": 0.2}
    # threshold 0.3: h1 (0.5) becomes "" -> wrong; n2 (0.2) keeps its answer -> wrong
    result = squad_metrics(preds, examples, version_2=True, null_odds=odds, null_threshold=0.3)
    assert result["HasAns_exact"] == 0.0 and result["HasAns_f1"] == pytest.approx(100 * (2 / 3) / 2)
    assert result["NoAns_exact"] == 50.0
    # threshold 0.1: n2 becomes "" too -> all NoAns right
    result = squad_metrics(preds, examples, version_2=True, null_odds=odds, null_threshold=0.1)
    assert result["NoAns_exact"] == 100.0 and result["NoAns_f1"] == 100.0
    assert result["exact_match"] == 50.0


def test_squad_v2_empty_prediction_vs_answer_and_no_groups() -> None:
    result = squad_metrics({"h": ""}, [_ex("h", "Paris")], version_2=True)
    assert result["exact_match"] == 0.0 and result["f1"] == 0.0
    assert result["NoAns_total"] == 0.0 and result["NoAns_exact"] == 0.0
    with pytest.raises(ValueError, match="no examples"):
        squad_metrics({}, [], version_2=True)
