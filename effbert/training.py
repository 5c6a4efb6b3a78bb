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


def training_arguments(
    *,
    output_dir: Path,
    seed: int,
    learning_rate: float,
    epochs: float,
    batch_size: int,
    warmup_ratio: float,
    weight_decay: float,
    max_grad_norm: float,
    save_steps: int,
    save_total_limit: int,
    bf16: bool,
    group_by_length: bool = False,
    eval_batch_size: int | None = None,
    select_on_heldout: bool = True,
    label_names: list[str] | None = None,
) -> Any:
    """The ``TrainingArguments`` every effbert training stage uses (AdamW, linear warm-up and decay, seeded).

    With ``select_on_heldout`` the Trainer evaluates on the held-out slice every ``save_steps``, keeps the best
    checkpoint by :data:`SELECTION` and loads it at the end; without it (task-agnostic distillation) it only saves
    a resumable checkpoint every ``save_steps``.
    """
    import torch
    from transformers import TrainingArguments

    selection: dict[str, Any] = (
        {
            "eval_strategy": "steps",
            "eval_steps": save_steps,
            "load_best_model_at_end": True,
            "metric_for_best_model": SELECTION,
            "greater_is_better": True,
            "per_device_eval_batch_size": eval_batch_size or batch_size,
        }
        if select_on_heldout
        else {"eval_strategy": "no"}
    )
    return TrainingArguments(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        warmup_steps=warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        lr_scheduler_type="linear",
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        logging_steps=max(1, min(10, save_steps)),
        bf16=bf16 and torch.cuda.is_available(),
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        disable_tqdm=False,
        label_names=label_names,
        **selection,
    )


def _trainer_classes() -> tuple[type, type]:
    """``HeldoutTrainer`` and ``SpanQATrainer``, built on first use so that importing this module stays light."""
    import torch
    from transformers import Trainer

    class HeldoutTrainer(Trainer):
        """Evaluates in dataset order: with length-grouped training batches the Trainer would also shuffle the
        evaluation set, which misaligns span-QA window logits with their features."""

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            return torch.utils.data.SequentialSampler(eval_dataset)

    class SpanQATrainer(HeldoutTrainer):
        """Evaluates span QA by turning window logits into answers (the Trainer has no labels for that).

        Needs ``span_spec`` (the task) and ``span_examples`` (the held-out examples the features came from).
        """

        span_spec: TaskSpec
        span_examples: Any

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
        ) -> dict[str, float]:
            dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
            output = self.predict(dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)  # type: ignore[arg-type]
            heads: Any = output.predictions  # (start_logits, end_logits)
            start, end = heads[0], heads[1]
            metrics, _ = span_metrics(self.span_spec, self.span_examples, dataset, start, end)
            metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in metrics.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return HeldoutTrainer, SpanQATrainer


def build_trainer(
    spec: TaskSpec | None,
    model: Any,
    tokenizer: Any,
    args: Any,
    train_dataset: Any,
    heldout: Any | None = None,
    heldout_examples: Any | None = None,
    callbacks: list[Any] | None = None,
    mixin: type | None = None,
) -> Any:
    """A Trainer for ``spec`` (None: task-agnostic, no evaluation) with the right collator and held-out metrics.

    Args:
        spec: the task, or None for raw-text (corpus) training.
        model: the model the Trainer optimises.
        tokenizer: pads batches (classification, corpus); span-QA features are already padded.
        args: from :func:`training_arguments`.
        train_dataset: tokenised training rows.
        heldout: held-out features for checkpoint selection (None without selection).
        heldout_examples: span QA only: the held-out examples the features come from.
        callbacks: extra ``TrainerCallback`` objects.
        mixin: a class placed first in the Trainer's bases (e.g. one that overrides ``compute_loss``).
    """
    from transformers import DataCollatorWithPadding, default_data_collator

    heldout_trainer, span_trainer = _trainer_classes()
    base = span_trainer if spec is not None and spec.kind == "span" else heldout_trainer
    cls = type(f"{mixin.__name__}{base.__name__}", (mixin, base), {}) if mixin is not None else base
    kwargs: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": train_dataset,
        "eval_dataset": heldout,
        "processing_class": tokenizer,
        "callbacks": callbacks,
    }
    if spec is not None and spec.kind == "span":
        trainer = cls(**kwargs, data_collator=default_data_collator)
        trainer.span_spec, trainer.span_examples = spec, heldout_examples
        return trainer
    metrics = classification_metrics(spec) if spec is not None and heldout is not None else None
    return cls(**kwargs, data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=metrics)


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
    """A fine-tuning Trainer that evaluates on ``heldout`` every ``eval_steps`` and keeps the best checkpoint."""
    args = training_arguments(
        output_dir=output_dir,
        seed=seed,
        learning_rate=learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        save_steps=eval_steps,
        save_total_limit=save_total_limit,
        bf16=bf16,
        group_by_length=group_by_length,
    )
    return build_trainer(spec, model, tokenizer, args, train_dataset, heldout, heldout_examples, callbacks)
