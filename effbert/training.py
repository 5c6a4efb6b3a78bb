"""Hugging Face Trainer wiring for task fine-tuning: selection metrics on the held-out slice, span-QA eval.

The Trainer brings checkpoint/resume, distributed training, bf16 autocast and callbacks; this module only adds
what it lacks: a checkpoint-selection score computed on the held-out slice of *train* (never dev), and span-QA
evaluation that maps window logits back to answer strings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from effbert.data.qa_features import postprocess_predictions
from effbert.data.tasks import TaskSpec, selection_score
from effbert.eval.metrics import glue_metrics, squad_metrics

SELECTION = "selection"


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


def make_trainer(
    spec: TaskSpec,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    heldout: Any,
    heldout_examples: Any | None,
    *,
    output_dir: Path,
    seed: int,
    learning_rate: float,
    epochs: float,
    batch_size: int,
    eval_batch_size: int,
    warmup_ratio: float,
    weight_decay: float,
    max_grad_norm: float,
    eval_steps: int,
    save_total_limit: int,
    bf16: bool,
    group_by_length: bool = False,
    callbacks: list[Any] | None = None,
) -> Any:
    """A Trainer that evaluates on ``heldout`` every ``eval_steps`` and keeps the best checkpoint."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

    args = TrainingArguments(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size,
        warmup_steps=warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=SELECTION,
        greater_is_better=True,
        logging_steps=max(1, min(10, eval_steps)),
        bf16=bf16 and torch.cuda.is_available(),
        report_to="none",
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        disable_tqdm=False,
    )
    common: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": train_dataset,
        "eval_dataset": heldout,
        "processing_class": tokenizer,
        "callbacks": callbacks,
    }

    class OrderedEvalTrainer(Trainer):
        """Evaluates in dataset order: with length-grouped training batches the Trainer would also shuffle the
        evaluation set, which misaligns span-QA window logits with their features."""

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            return torch.utils.data.SequentialSampler(eval_dataset)

    if spec.kind != "span":
        return OrderedEvalTrainer(
            **common, data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=classification_metrics(spec)
        )

    class SpanQATrainer(OrderedEvalTrainer):
        """Evaluates span QA by turning window logits into answers (the Trainer has no labels for that)."""

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
        ) -> dict[str, float]:
            dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
            output = self.predict(dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)  # type: ignore[arg-type]
            heads: Any = output.predictions  # (start_logits, end_logits)
            start, end = heads[0], heads[1]
            metrics, _ = span_metrics(spec, heldout_examples, dataset, start, end)
            metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in metrics.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return SpanQATrainer(**common, data_collator=default_data_collator)
