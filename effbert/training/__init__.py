"""Training shared by every stage that trains: ``TrainingArguments`` from a params section (`arguments`), the
Trainer with held-out and span-QA evaluation (`trainers`), one resumable train call (`loop`) and the history files
(`history`)."""

from effbert.training.arguments import selection_arguments, training_arguments
from effbert.training.loop import TrainingOutcome, metrics_callback, train
from effbert.training.trainers import build_trainer

__all__ = [
    "TrainingOutcome",
    "build_trainer",
    "metrics_callback",
    "selection_arguments",
    "train",
    "training_arguments",
]
