"""Training shared by every stage that trains: ``TrainingArguments`` from a params section (`arguments`), the
Trainer with held-out and span-QA evaluation (`trainers`), one resumable train call (`loop`), a finished phase saved
once, atomically and sealed (`phases`) and the history files (`history`)."""

from effbert.training.arguments import selection_arguments, training_arguments
from effbert.training.loop import TrainingOutcome, metrics_callback, train
from effbert.training.phases import finished_phase, save_finished_phase
from effbert.training.trainers import build_trainer

__all__ = [
    "TrainingOutcome",
    "build_trainer",
    "finished_phase",
    "metrics_callback",
    "save_finished_phase",
    "selection_arguments",
    "train",
    "training_arguments",
]
