"""Corpus-level GLUE and SQuAD metrics in plain numpy/python.

This module deliberately imports neither sklearn nor scipy, so tests can check it against them as independent
computations. GLUE metrics are on the [0, 1] scale (correlations in [-1, 1]); SQuAD metrics follow the official
evaluation script and are x100.

Degenerate inputs: the Matthews correlation is 0.0 when the predictions or the labels are constant, and Pearson and
Spearman correlations are 0.0 when either input is constant (the correlation is undefined there; 0.0 keeps
checkpoint selection and logging numeric). Empty inputs raise ValueError.
"""

from __future__ import annotations

import collections
import logging
import re
import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from effbert.data.tasks import get_task

logger = logging.getLogger(__name__)


def _pair(a: ArrayLike, b: ArrayLike, dtype: Any = None) -> tuple[NDArray[Any], NDArray[Any]]:
    x, y = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"expected 1-d inputs, got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"inputs differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("empty inputs")
    return x, y


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Share of predictions equal to the label.

    Raises:
        ValueError: empty, not 1-d, or different lengths (as every metric here).
    """
    p, y = _pair(preds, labels)
    return float(np.mean(p == y))


def f1_binary(preds: ArrayLike, labels: ArrayLike) -> float:
    """F1 of the positive class 1 (0.0 when there are no true or predicted positives)."""
    p, y = _pair(preds, labels)
    tp = int(np.sum((p == 1) & (y == 1)))
    fp = int(np.sum((p == 1) & (y != 1)))
    fn = int(np.sum((p != 1) & (y == 1)))
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def matthews_corr(preds: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation coefficient (multi-class form of Gorodkin); 0.0 if either side is constant."""
    p, y = _pair(preds, labels)
    classes, inverse = np.unique(np.concatenate([y, p]), return_inverse=True)
    k, n = len(classes), len(y)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (inverse[:n], inverse[n:]), 1.0)
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    correct = float(np.trace(confusion))
    cov_tp = correct * n - float(t_sum @ p_sum)
    cov_pp = n * n - float(p_sum @ p_sum)
    cov_tt = n * n - float(t_sum @ t_sum)
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation; 0.0 when either input is constant."""
    a, b = _pair(x, y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt(np.sum(a * a)) * np.sqrt(np.sum(b * b)))
    if denom == 0.0:
        return 0.0
    return float(np.clip(np.sum(a * b) / denom, -1.0, 1.0))


def _average_ranks(x: NDArray[Any]) -> NDArray[np.float64]:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation with average ranks for ties; 0.0 when either input is constant."""
    a, b = _pair(x, y, dtype=np.float64)
    return pearson(_average_ranks(a), _average_ranks(b))


_METRIC_FUNCS = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "matthews_corr": matthews_corr,
    "pearson": pearson,
    "spearman": spearman,
}


def glue_metrics(task: str, preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The metrics of ``get_task(task).metrics`` on one split.

    Args:
        task: GLUE task id. For MNLI only ``accuracy`` is returned; the caller renames the mismatched split's
            value to ``accuracy_mm``.
        preds: class ids (scores for STS-B), 1-d.
        labels: gold class ids (scores for STS-B), 1-d.

    Returns:
        Metric name -> Python float, in the task's report order, on the [0, 1] scale.

    Raises:
        ValueError: a SQuAD task, or empty/mismatched inputs.
    """
    spec = get_task(task)
    if spec.is_squad:
        raise ValueError(f"{task} is a SQuAD task; use squad_metrics")
    return {name: float(_METRIC_FUNCS[name](preds, labels)) for name in spec.metrics if name != "accuracy_mm"}


# --- SQuAD -------------------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation, drop the articles a/an/the, collapse white space (official SQuAD)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def _token_f1(gold: str, pred: str, version_2: bool) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if version_2 and (not gold_toks or not pred_toks):
        return float(gold_toks == pred_toks)  # v2: an empty answer scores 1 only against an empty gold
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _gold_answers(example: dict[str, Any], version_2: bool) -> list[str]:
    texts: Sequence[str] = example["answers"]["text"]
    if version_2:
        kept = [t for t in texts if normalize_answer(t)]
        return kept or [""]
    return list(texts) or [""]


def squad_metrics(
    predictions: dict[str, str],
    examples: list[dict[str, Any]],
    version_2: bool,
    null_odds: dict[str, float] | None = None,
    null_threshold: float = 0.0,
) -> dict[str, float]:
    """Official SQuAD v1.1 / v2.0 evaluation: EM and token F1, max over gold answers, mean x100.

    Args:
        predictions: question id -> answer text ("" for no answer). A missing question scores 0 (and is logged).
        examples: questions as returned by :func:`effbert.data.squad.read_squad`.
        version_2: v2.0 semantics: unanswerable questions have gold ``[""]``, and HasAns/NoAns breakdowns.
        null_odds: question id -> null score minus best span score; a prediction whose value is above
            ``null_threshold`` is replaced by "" before scoring (ids not in the dict are left as predicted).
        null_threshold: see ``null_odds``.

    Returns:
        ``exact_match`` and ``f1``; with ``version_2`` also ``HasAns_exact``, ``HasAns_f1``, ``HasAns_total``,
        ``NoAns_exact``, ``NoAns_f1`` and ``NoAns_total`` (exact/f1 are 0.0 for a group with no questions).

    Raises:
        ValueError: ``examples`` is empty.
    """
    if not examples:
        raise ValueError("no examples to score")
    exact: dict[bool, list[float]] = {True: [], False: []}
    f1: dict[bool, list[float]] = {True: [], False: []}
    missing = 0
    for ex in examples:
        qid = ex["id"]
        gold = _gold_answers(ex, version_2)
        has_ans = bool(ex["answers"]["text"])  # as the official script: by the raw answer list
        if qid not in predictions:
            missing += 1
            exact[has_ans].append(0.0)
            f1[has_ans].append(0.0)
            continue
        pred = predictions[qid]
        if null_odds is not None and null_odds.get(qid, float("-inf")) > null_threshold:
            pred = ""
        exact[has_ans].append(max(_exact(g, pred) for g in gold))
        f1[has_ans].append(max(_token_f1(g, pred, version_2) for g in gold))
    if missing:
        logger.warning("%d of %d questions have no prediction and score 0", missing, len(examples))

    def mean100(values: list[float]) -> float:
        return 100.0 * sum(values) / len(values) if values else 0.0

    result = {
        "exact_match": mean100(exact[True] + exact[False]),
        "f1": mean100(f1[True] + f1[False]),
    }
    if version_2:
        for name, key in (("HasAns", True), ("NoAns", False)):
            result[f"{name}_exact"] = mean100(exact[key])
            result[f"{name}_f1"] = mean100(f1[key])
            result[f"{name}_total"] = float(len(exact[key]))
    return result
