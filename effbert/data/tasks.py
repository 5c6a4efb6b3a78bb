"""The fixed registry of GLUE and SQuAD tasks: file layout, columns, label lists and metrics.

Label lists are fixed here, once, and checked when data is read, so a teacher and a student can never
disagree on label order (a known TinyBERT bug came from MNLI label order differing between them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from effbert.errors import ParamsError

TaskKind = Literal["classification", "regression", "span"]


@dataclass(frozen=True)
class TaskSpec:
    """Everything the loaders, models and metrics need to know about one task.

    Attributes:
        name: task id used in params and paths (``sst2``).
        kind: ``classification``, ``regression`` (STS-B) or ``span`` (SQuAD).
        folder: folder name in a GLUE download (``SST-2``) or None for SQuAD.
        labels: the fixed label list; a label's index is its class id. Empty for regression and span.
        dev_splits: evaluation split name -> file name (MNLI has ``dev`` and ``dev_mm``).
        test_splits: test split name -> file name. SQuAD's official test set is hidden (CodaLab runs the model on
            it, in the dev file format); its ``test`` file is read only when a user has it.
        metrics: metric names reported for the task, in report order.
        submission_names: test split -> file name the GLUE server expects.
        hub: (dataset path, config name) on the datasets hub.
    """

    name: str
    kind: TaskKind
    folder: str | None
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    hub: tuple[str, str | None]
    train_file: str = "train.tsv"
    dev_splits: dict[str, str] = field(default_factory=lambda: {"dev": "dev.tsv"})
    test_splits: dict[str, str] = field(default_factory=lambda: {"test": "test.tsv"})
    submission_names: dict[str, str] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        """Width of the model's output layer (1 for regression, 2 for span start/end)."""
        if self.kind == "regression":
            return 1
        if self.kind == "span":
            return 2
        return len(self.labels)

    @property
    def is_squad(self) -> bool:
        return self.kind == "span"


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

# One task per entry, kept as a table (easier to read than one argument per line).
# fmt: off
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("cola", "classification", "CoLA", _BINARY, ("matthews_corr",), ("nyu-mll/glue", "cola"),
                 submission_names={"test": "CoLA.tsv"}),
        TaskSpec("sst2", "classification", "SST-2", _BINARY, ("accuracy",), ("nyu-mll/glue", "sst2"),
                 submission_names={"test": "SST-2.tsv"}),
        TaskSpec("mrpc", "classification", "MRPC", _BINARY, ("f1", "accuracy"), ("nyu-mll/glue", "mrpc"),
                 submission_names={"test": "MRPC.tsv"}),
        TaskSpec("stsb", "regression", "STS-B", (), ("pearson", "spearman"), ("nyu-mll/glue", "stsb"),
                 submission_names={"test": "STS-B.tsv"}),
        TaskSpec("qqp", "classification", "QQP", _BINARY, ("f1", "accuracy"), ("nyu-mll/glue", "qqp"),
                 submission_names={"test": "QQP.tsv"}),
        TaskSpec("mnli", "classification", "MNLI", ("contradiction", "entailment", "neutral"),
                 ("accuracy", "accuracy_mm"), ("nyu-mll/glue", "mnli"),
                 dev_splits={"dev": "dev_matched.tsv", "dev_mm": "dev_mismatched.tsv"},
                 test_splits={"test": "test_matched.tsv", "test_mm": "test_mismatched.tsv",
                              "test_ax": "../diagnostic/diagnostic.tsv"},
                 submission_names={"test": "MNLI-m.tsv", "test_mm": "MNLI-mm.tsv", "test_ax": "AX.tsv"}),
        TaskSpec("qnli", "classification", "QNLI", _NLI2, ("accuracy",), ("nyu-mll/glue", "qnli"),
                 submission_names={"test": "QNLI.tsv"}),
        TaskSpec("rte", "classification", "RTE", _NLI2, ("accuracy",), ("nyu-mll/glue", "rte"),
                 submission_names={"test": "RTE.tsv"}),
        TaskSpec("wnli", "classification", "WNLI", _BINARY, ("accuracy",), ("nyu-mll/glue", "wnli"),
                 submission_names={"test": "WNLI.tsv"}),
        TaskSpec("squad_v1", "span", None, (), ("exact_match", "f1"), ("rajpurkar/squad", None),
                 train_file="train-v1.1.json", dev_splits={"dev": "dev-v1.1.json"},
                 test_splits={"test": "test-v1.1.json"}),
        TaskSpec("squad_v2", "span", None, (), ("exact_match", "f1"), ("rajpurkar/squad_v2", None),
                 train_file="train-v2.0.json", dev_splits={"dev": "dev-v2.0.json"},
                 test_splits={"test": "test-v2.0.json"}),
    ]
}
# fmt: on

# The diagnostic set (AX) has no task of its own: it is predicted with the MNLI model.
AX_FOLDER = "diagnostic"


def get_task(name: str) -> TaskSpec:
    """Return the spec of task ``name`` or raise a ParamsError listing the known task ids."""
    try:
        return TASKS[name]
    except KeyError:
        raise ParamsError(f"unknown task {name!r}; known tasks: {' '.join(TASKS)}") from None


SELECTION = "selection"
"""The name of the selection score among a stage's metrics (what the Trainer's ``metric_for_best_model`` names)."""


def selection_score(task: str, metrics: dict[str, float]) -> float:
    """One number per task for checkpoint selection, as the paper's code defines it.

    accuracy (MNLI matched, QNLI, SST-2, RTE, WNLI), MCC (CoLA), (acc+F1)/2 (MRPC, QQP),
    (Pearson+Spearman)/2 (STS-B), (EM+F1)/2 (SQuAD).
    """
    if task in ("mrpc", "qqp"):
        return (metrics["accuracy"] + metrics["f1"]) / 2
    if task == "stsb":
        return (metrics["pearson"] + metrics["spearman"]) / 2
    if task.startswith("squad"):
        return (metrics["exact_match"] + metrics["f1"]) / 2
    if task == "cola":
        return metrics["matthews_corr"]
    return metrics["accuracy"]
