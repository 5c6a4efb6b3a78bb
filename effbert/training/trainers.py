"""The Hugging Face Trainer every effbert training stage uses, with what it lacks: held-out evaluation in dataset
order, span-QA evaluation that maps window logits back to answers, and a place for a KD mixin.

The Trainer brings checkpoint/resume, distributed training, bf16 autocast and callbacks.
"""

from __future__ import annotations

from typing import Any

from effbert.data.tasks import TaskSpec
from effbert.eval.scoring import classification_metrics, span_metrics


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
