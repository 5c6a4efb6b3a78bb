"""Dev-set evaluation of a task model: corpus-level metrics and the predictions file of every dev split (the files'
texts are returned, not written)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from effbert.data.prepared import EvalSplit
from effbert.data.tasks import SELECTION, TaskSpec, selection_score
from effbert.eval.inference import predict_logits
from effbert.eval.metrics import glue_metrics
from effbert.eval.scoring import logits_to_predictions, span_metrics
from effbert.eval.submission import prediction_text
from effbert.params import EvaluateParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevEvaluation:
    """Metrics of every dev split (names suffixed ``_mm`` for MNLI mismatched), rows per split and the prediction
    files (name -> text: ``predictions.tsv`` with ``index prediction label`` in dev-file order, or SQuAD's
    ``predictions.json``)."""

    metrics: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def record(self, task: str, model_name: str) -> dict[str, Any]:
        """The ``metrics.json`` record of the ``evaluate`` stage (with the task's selection score)."""
        return {
            "task": task,
            "model": model_name,
            "split": "dev",
            "rows": self.rows,
            "metrics": self.metrics,
            "score": selection_score(task, self.metrics),
        }


def dev_prediction_text(spec: TaskSpec, value: Any) -> str:
    """A dev prediction as the training files spell labels; an STS-B score unclipped at full precision (the shortest
    text that reads back as the same float), so the metrics recomputed from the file equal ``metrics.json``."""
    if spec.kind == "regression":
        return repr(float(value))
    return prediction_text(spec, value)


def _glue_split(spec: TaskSpec, split: EvalSplit, logits: Any) -> tuple[dict[str, float], str]:
    preds = logits_to_predictions(spec, logits)
    labels = split.features["label"]
    metrics = glue_metrics(spec.name, preds, labels)
    if "label_text" in split.features.column_names:  # the gold label exactly as the dev file spells it
        gold = list(split.features["label_text"])
    else:  # data prepared before label_text existed: the parsed label, at full precision
        gold = [dev_prediction_text(spec, y) for y in labels]
    lines = ["index\tprediction\tlabel"]
    rows = zip(split.features["idx"], preds, gold, strict=True)
    lines += [f"{idx}\t{dev_prediction_text(spec, p)}\t{y}" for idx, p, y in rows]
    return metrics, "\n".join(lines) + "\n"


def majority_baseline(spec: TaskSpec, train_labels: Sequence[Any], splits: Sequence[EvalSplit]) -> dict[str, Any]:
    """What a model that ignores its input scores on the dev splits: the most frequent training label for every row
    (regression: the training mean; its correlations are 0 by the metrics' constant-input rule).

    Returns:
        ``{"prediction", "metrics", "score"}`` (names suffixed ``_mm`` for MNLI mismatched), like an evaluation.

    Raises:
        ValueError: a span task (extractive QA has no majority class) or no training label.
    """
    import numpy as np

    if spec.kind == "span" or not len(train_labels):
        raise ValueError(f"{spec.name}: no majority-class baseline for a span task or without training labels")
    labels = np.asarray(train_labels)
    if spec.kind == "regression":
        constant: Any = float(labels.mean())
        shown = f"{constant:.4f}"
    else:
        values, counts = np.unique(labels, return_counts=True)
        constant = int(values[np.argmax(counts)])  # ties: the smallest class id
        shown = spec.labels[constant]
    metrics: dict[str, float] = {}
    for split in splits:
        suffix = "" if split.name == "dev" else "_" + split.name.removeprefix("dev_")
        gold = split.features["label"]
        split_metrics = glue_metrics(spec.name, [constant] * len(gold), gold)
        metrics.update({f"{k}{suffix}": v for k, v in split_metrics.items()})
    return {"prediction": shown, "metrics": metrics, "score": selection_score(spec.name, metrics)}


def evaluate_dev(
    model: Any,
    tokenizer: Any,
    spec: TaskSpec,
    splits: Sequence[EvalSplit],
    hp: EvaluateParams,
    device: str,
    *,
    bf16: bool = False,
) -> DevEvaluation:
    """Run ``model`` over every dev split of ``spec`` and score it with the official metrics.

    Args:
        model: the task model (classification/regression or span QA head).
        tokenizer: its tokenizer (pads the batches).
        spec: the task.
        splits: the task's prepared dev splits (`effbert.data.prepared.eval_splits`).
        hp: the ``evaluate`` params section (batch size, SQuAD post-processing).
        device: where the forward passes run.
        bf16: run them under bf16 autocast.
    """
    result = DevEvaluation()
    for split in splits:
        heads = predict_logits(model, split.features, tokenizer, hp.batch_size, device, bf16=bf16)
        suffix = "" if split.name == "dev" else "_" + split.name.removeprefix("dev_")
        if spec.is_squad:
            split_metrics, answers = span_metrics(
                spec,
                split.examples,
                split.features,
                heads[0],
                heads[1],
                n_best=hp.n_best,
                max_answer_length=hp.max_answer_length,
                null_threshold=hp.null_threshold,
            )
            split_metrics.pop(SELECTION)
            result.files[f"predictions{suffix}.json"] = json.dumps(answers, indent=1) + "\n"
            result.rows[split.name] = len(split.examples)
        else:
            split_metrics, text = _glue_split(spec, split, heads[0])
            result.files[f"predictions{suffix}.tsv"] = text
            result.rows[split.name] = len(split.features)
        result.metrics.update({f"{k}{suffix}": v for k, v in split_metrics.items()})
    return result
