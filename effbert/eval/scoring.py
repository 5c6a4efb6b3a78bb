"""Scores of a model's outputs on a task: predictions from logits, the Trainer's held-out metrics, span-QA metrics
from window logits, and the selection score on a held-out slice (no file or tracking I/O).

The selection score (named `effbert.data.tasks.SELECTION`, computed by `effbert.data.tasks.selection_score`) is what
every training stage selects its checkpoint by, on the held-out slice of *train* (never dev), and what the search's
proxy calls fitness.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from effbert.data.qa_features import postprocess_predictions
from effbert.data.tasks import SELECTION, TaskSpec, selection_score
from effbert.eval.metrics import glue_metrics, squad_metrics


def logits_to_predictions(spec: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification, the squeezed score for regression."""
    if spec.kind == "regression":
        return logits.reshape(-1).astype(float)
    return np.asarray(logits).argmax(axis=-1)


def classification_metrics(spec: TaskSpec) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` for the Trainer: corpus-level task metrics plus the selection score."""

    def compute(pred: Any) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        metrics = glue_metrics(spec.name, logits_to_predictions(spec, logits), pred.label_ids)
        return {**metrics, SELECTION: selection_score(spec.name, metrics)}

    return compute


def span_metrics(
    spec: TaskSpec,
    examples: Any,
    features: Any,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    null_threshold: float = 0.0,
) -> tuple[dict[str, float], dict[str, str]]:
    """SQuAD metrics (official semantics) from window logits; returns (metrics, predictions)."""
    version_2 = spec.name == "squad_v2"
    predictions, null_odds = postprocess_predictions(
        examples,
        features,
        start_logits,
        end_logits,
        n_best=n_best,
        max_answer_length=max_answer_length,
        version_2=version_2,
        null_threshold=null_threshold,
    )
    rows = examples.to_list() if hasattr(examples, "to_list") else list(examples)
    metrics = squad_metrics(
        predictions,
        rows,
        version_2=version_2,
        null_odds=null_odds if version_2 else None,
        null_threshold=null_threshold,
    )
    return {**metrics, SELECTION: selection_score(spec.name, metrics)}, predictions


def heldout_score(
    model: Any, dataset: Any, tokenizer: Any, spec: TaskSpec, batch_size: int, device: str, *, bf16: bool = False
) -> float:
    """The task's selection score of ``model`` on a (classification or regression) held-out dataset (with ``bf16``:
    under bf16 autocast)."""
    from effbert.eval.inference import predict_logits

    logits = predict_logits(model, dataset, tokenizer, batch_size, device, bf16=bf16)[0]
    metrics = glue_metrics(spec.name, logits_to_predictions(spec, logits), dataset["label"])
    return float(selection_score(spec.name, metrics))
