"""Stage ``evaluate`` (per model and task): corpus-level dev metrics and dev predictions.

Output ``results/eval/<model>/<task>/``: ``metrics.json``, ``predictions.tsv`` (``index prediction label`` in
dev-file row order; MNLI adds ``predictions_mm.tsv``) or ``predictions.json`` ({id: answer} for SQuAD), the log
and ``lineage.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from effbert.data.tasks import TaskSpec, get_task, selection_score
from effbert.eval.metrics import glue_metrics
from effbert.inference import predict_logits
from effbert.models.teacher import load_task_model, load_tokenizer
from effbert.params import Params
from effbert.stages.common import device, seed_everything
from effbert.submission import prediction_text
from effbert.training import logits_to_predictions, span_metrics

log = logging.getLogger(__name__)


def _label_text(spec: TaskSpec, value: Any) -> str:
    """A dev prediction or gold label as the training files spell it (STS-B: unclipped, 4 decimals)."""
    return "" if value is None else prediction_text(spec, value, clip=False, decimals=4)


def run(params: Params, task: str, model_name: str, model_dir: Path, data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Evaluate ``model_dir`` on every dev split of ``task``; write metrics and predictions into ``out_dir``."""
    import datasets

    spec = get_task(task)
    hp = params.evaluate
    seed_everything(params.seed)
    model = load_task_model(str(model_dir), spec)
    tokenizer = load_tokenizer(str(model_dir))
    metrics: dict[str, Any] = {}
    rows: dict[str, int] = {}
    for split in spec.dev_splits:
        features = datasets.load_from_disk(str(data_dir / split))
        heads = predict_logits(model, features, tokenizer, hp.batch_size, device())
        suffix = "" if split == "dev" else "_" + split.removeprefix("dev_")
        if spec.is_squad:
            examples = datasets.load_from_disk(str(data_dir / f"{split}_examples"))
            split_metrics, answers = span_metrics(
                spec,
                examples,
                features,
                heads[0],
                heads[1],
                n_best=hp.n_best,
                max_answer_length=hp.max_answer_length,
                null_threshold=hp.null_threshold,
            )
            split_metrics.pop("selection")
            (out_dir / f"predictions{suffix}.json").write_text(json.dumps(answers, indent=1) + "\n", encoding="utf-8")
            rows[split] = len(examples)
        else:
            preds = logits_to_predictions(spec, heads[0])
            labels = features["label"]
            split_metrics = glue_metrics(task, preds, labels)
            lines = ["index\tprediction\tlabel"]
            lines += [
                f"{idx}\t{_label_text(spec, p)}\t{_label_text(spec, y)}"
                for idx, p, y in zip(features["idx"], preds, labels, strict=True)
            ]
            (out_dir / f"predictions{suffix}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            rows[split] = len(features)
        metrics.update({f"{k}{suffix}": v for k, v in split_metrics.items()})
    record = {
        "task": task,
        "model": model_name,
        "split": "dev",
        "rows": rows,
        "metrics": metrics,
        "score": selection_score(task, metrics),
    }
    (out_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("%s on %s dev: %s", model_name, task, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return record
