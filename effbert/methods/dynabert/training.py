"""DynaBERT's training (Hou et al., 2020; reference sections 3 and 15) as functions of the ``dynabert`` params section,
models and data.

1. The student is a copy of the fine-tuned teacher, rewired once (`subnetworks.rewire`) by head and neuron importance
   computed on the first ``importance_examples`` rows of the *held-out slice of train* (the official code uses dev),
   gradients cleared between batches.
2. Width phase (``dynabert.width``): every width of ``widths`` at full depth distils from the fine-tuned teacher in
   one step (`adaptive.AdaptiveDistiller`, hidden-state weight ``width_hidden_weight``).
3. Depth phase (``dynabert.depth``): the whole ``widths x depths`` grid distils from a frozen copy of the width
   phase's model at full size (hidden-state weight ``depth_hidden_weight``; student state ``j`` against the teacher
   layer it was kept from).

Each phase evaluates the held-out slice every ``eval_steps`` and keeps the checkpoint with the best **mean selection
score over its grid** (every sub-network counts, as the official code's sum of dev scores; the full-size model's own
metrics are logged under the task's metric names, each grid point's as ``w<width>_d<depth>_<metric>``). A phase
checkpoints into its own subfolder (``width``, ``depth``) of the checkpoint folder; a finished phase leaves its
weights and outcome in ``<phase>/done`` and is not run again on resume.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from effbert.compute import set_threads
from effbert.data.prepared import TaskRows
from effbert.data.tasks import SELECTION, TaskSpec, get_task, selection_score
from effbert.distill.frozen import given_inputs
from effbert.eval.metrics import glue_metrics
from effbert.eval.scoring import logits_to_predictions
from effbert.methods.dynabert.adaptive import AdaptiveDistiller, grid
from effbert.methods.dynabert.evaluation import GRID_CONFIG_KEY, GRID_FILE
from effbert.methods.dynabert.subnetworks import importance, rewire, subnetwork
from effbert.params import DynaBertParams, MethodTraining, Params
from effbert.training import TrainingOutcome, build_trainer, save_finished_phase, selection_arguments, train
from effbert.training.phases import finished_phase

log = logging.getLogger(__name__)

__all__ = [
    "GRID_FILE",
    "PHASES",
    "DynaBertResult",
    "GridDistiller",
    "PhaseResult",
    "combined_outcome",
    "dynabert_student",
    "grid_metrics",
    "point_name",
    "report_figures",
    "rewire_by_importance",
    "train_dynabert",
]

PHASES = ("width", "depth")
"""The training phases, in order (each its own checkpoint subfolder)."""

DONE = "done"
"""A finished phase's subfolder: the student's weights and the phase's outcome."""


def point_name(width: float, depth: float) -> str:
    """A grid point's metric prefix: ``w0.5_d1``."""
    return f"w{width:g}_d{depth:g}"


def importance_batches(rows: Any, tokenizer: Any, count: int | None, batch_size: int, device: str) -> list[dict]:
    """The first ``count`` rows (None: all) of a labelled split as padded batches with ``labels``, on ``device``."""
    from transformers import DataCollatorWithPadding

    rows = rows if count is None or count >= len(rows) else rows.select(range(count))
    rows = rows.select_columns(
        [c for c in ("input_ids", "token_type_ids", "attention_mask", "label") if c in rows.column_names]
    )
    collate = DataCollatorWithPadding(tokenizer)
    batches = []
    for start in range(0, len(rows), batch_size):
        batch = collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def rewire_by_importance(student: Any, rows: Any, tokenizer: Any, count: int | None, batch_size: int) -> None:
    """Score ``student``'s heads and neurons on the first ``count`` rows of ``rows`` (the held-out slice) and rewire it
    in place, most important units first (its full-size function unchanged)."""
    from effbert.compute import device

    dev = device()
    original = next(student.parameters()).device
    student.to(dev)
    batches = importance_batches(rows, tokenizer, count, batch_size, dev)
    heads, neurons = importance(student, batches)
    rewire(student, heads, neurons)
    student.to(original)
    log.info("rewired by importance on %d held-out rows", sum(len(b["input_ids"]) for b in batches))


class GridDistiller(AdaptiveDistiller):
    """`AdaptiveDistiller` whose evaluation pass scores the whole grid: in inference mode it runs every sub-network
    alone (no teacher) and returns their logits stacked ``(batch, grid, labels)`` and their mean task loss."""

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Training: the summed distillation loss (`AdaptiveDistiller.forward`). Inference: the grid's logits."""
        if self.training:
            return super().forward(input_ids, attention_mask, token_type_ids, labels)
        inputs = given_inputs(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        logits, losses = [], []
        for width, depth in self.grid:
            with subnetwork(self.student, width, depth):
                out = self.student(**inputs, **given_inputs(labels=labels))
            logits.append(out.logits)
            if out.loss is not None:
                losses.append(out.loss)
        result = {"logits": torch.stack(logits, dim=1)}
        if losses:
            result["loss"] = torch.stack(losses).mean()
        return result


def grid_metrics(spec: TaskSpec, points: list[tuple[float, float]]) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` for `GridDistiller`'s stacked logits: each point's task metrics and selection score
    (prefixed `point_name`), the full-size model's metrics under their own names, and :data:`SELECTION` = the mean
    of the points' selection scores (what the checkpoint is chosen by)."""

    def compute(pred: Any) -> dict[str, float]:
        stacked = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        out: dict[str, float] = {}
        scores = []
        for index, (width, depth) in enumerate(points):
            metrics = glue_metrics(spec.name, logits_to_predictions(spec, stacked[:, index]), pred.label_ids)
            score = float(selection_score(spec.name, metrics))
            scores.append(score)
            out.update({f"{point_name(width, depth)}_{k}": float(v) for k, v in metrics.items()})
            out[f"{point_name(width, depth)}_{SELECTION}"] = score
            if width == 1.0 and depth == 1.0:
                out.update({k: float(v) for k, v in metrics.items()})
        out[SELECTION] = sum(scores) / len(scores)
        return out

    return compute


def grid_loss_mixin() -> type:
    """A Trainer mixin that logs each sub-network's mean training loss (``loss_w<w>_d<d>``) beside the total."""

    class GridLossLogging:
        _grid_sums: dict[str, float]
        _grid_count: int

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            outputs = model(**inputs)
            if any(key.startswith("loss_") for key in outputs):
                sums = getattr(self, "_grid_sums", None) or {}
                for key, value in outputs.items():
                    if key.startswith("loss_"):
                        sums[key] = sums.get(key, 0.0) + float(value)
                self._grid_sums, self._grid_count = sums, getattr(self, "_grid_count", 0) + 1
            return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            count = getattr(self, "_grid_count", 0)
            if "loss" in logs and count:
                logs = {**logs, **{key: total / count for key, total in self._grid_sums.items()}}
                self._grid_sums, self._grid_count = {}, 0
            super().log(logs, *args, **kwargs)  # type: ignore[misc]

    return GridLossLogging


@dataclass(frozen=True)
class PhaseResult:
    """One phase: its training outcome and whether a finished earlier run's result was reused."""

    outcome: TrainingOutcome
    skipped: bool


def phase_done(folder: Path) -> bool:
    """Whether a phase's checkpoint folder holds a finished phase (intact: `effbert.training.finished_phase`)."""
    return finished_phase(folder / DONE)


def run_phase(
    distiller: GridDistiller,
    tokenizer: Any,
    rows: TaskRows,
    spec: TaskSpec,
    hp: MethodTraining,
    *,
    seed: int,
    folder: Path,
    callbacks: list[Any],
    bf16: bool,
) -> PhaseResult:
    """Train one phase (resuming from a checkpoint in ``folder``) and keep its best held-out checkpoint; a phase
    already finished in ``folder`` only loads its student's weights."""
    from safetensors.torch import load_model, save_model

    done = folder / DONE
    if phase_done(folder):
        load_model(distiller.student, str(done / "model.safetensors"))
        outcome = TrainingOutcome(**json.loads((done / "outcome.json").read_text(encoding="utf-8")))
        log.info("%s: finished earlier (%d steps), reusing %s", folder.name, outcome.steps, done)
        return PhaseResult(outcome, skipped=True)
    set_threads(hp.threads)
    args = selection_arguments(hp, output_dir=folder, seed=seed, bf16=bf16, label_names=["labels"])
    trainer = build_trainer(
        spec, distiller, tokenizer, args, rows.train, rows.heldout, None, callbacks, mixin=grid_loss_mixin()
    )
    trainer.compute_metrics = grid_metrics(spec, distiller.grid)
    log.info("%s phase: grid %s, %d training rows", folder.name, distiller.grid, len(rows.train))
    outcome = train(trainer, resume=True)

    def write(partial: Path) -> None:
        save_model(distiller.student, str(partial / "model.safetensors"))
        (partial / "outcome.json").write_text(json.dumps(asdict(outcome)) + "\n", encoding="utf-8")

    save_finished_phase(done, write, remove=sorted(folder.glob("checkpoint-*")))
    return PhaseResult(outcome, skipped=False)


@dataclass(frozen=True)
class DynaBertResult:
    """A trained DynaBERT model: the rewired full-size student, its grid and each phase's result."""

    student: Any
    widths: list[float]
    depths: list[float]
    phases: dict[str, PhaseResult]

    @property
    def grid(self) -> list[tuple[float, float]]:
        """Every (width, depth) sub-network, deepest then widest first."""
        return grid(self.widths, self.depths)


def train_dynabert(
    teacher: Any,
    tokenizer: Any,
    rows: TaskRows,
    spec: TaskSpec,
    hp: DynaBertParams,
    *,
    seed: int,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> DynaBertResult:
    """Rewire a copy of ``teacher`` by held-out importance, then run the width and the depth phase (module docstring).

    Args:
        teacher: the fine-tuned BERT-family task model (not modified; frozen by the width phase).
        tokenizer: pads the batches.
        rows: the task's training rows and held-out slice.
        spec: the task (classification or regression).
        hp: the ``dynabert`` params section (its phases' task overrides are applied here).
        seed: the run's seed.
        checkpoints: the checkpoint folder; one subfolder per phase.
        callbacks: extra ``TrainerCallback`` objects (metrics to MLflow).
        bf16: train under bf16 autocast.
    """
    from effbert.compute import seed_everything

    if spec.kind == "span":
        raise ValueError(f"{spec.name}: DynaBERT has no span-QA recipe")
    seed_everything(seed)
    student = copy.deepcopy(teacher)
    width_hp, depth_hp = hp.width.for_task(spec.name), hp.depth.for_task(spec.name)
    if not phase_done(checkpoints / "width"):
        rewire_by_importance(student, rows.heldout, tokenizer, hp.importance_examples, width_hp.batch_size)
    phases: dict[str, PhaseResult] = {}
    common: dict[str, Any] = {"seed": seed, "callbacks": callbacks, "bf16": bf16}
    width = GridDistiller(student, teacher, hp.widths, [1.0], hidden_weight=hp.width_hidden_weight)
    phases["width"] = run_phase(width, tokenizer, rows, spec, width_hp, folder=checkpoints / "width", **common)
    student = width.student.requires_grad_(True)
    seed_everything(seed)
    depth = GridDistiller(student, copy.deepcopy(student), hp.widths, hp.depths, hidden_weight=hp.depth_hidden_weight)
    phases["depth"] = run_phase(depth, tokenizer, rows, spec, depth_hp, folder=checkpoints / "depth", **common)
    return DynaBertResult(depth.student.eval(), list(hp.widths), list(hp.depths), phases)


def combined_outcome(phases: dict[str, PhaseResult]) -> TrainingOutcome:
    """The phases as one training record: steps and seconds summed, the log tagged with its ``phase`` and the depth
    phase's steps counted after the width phase's; the selection is the last phase's (the model kept)."""
    history: list[dict[str, Any]] = []
    offset = 0
    for name in PHASES:
        outcome = phases[name].outcome
        history += [{**row, "phase": name, "step": row.get("step", 0) + offset} for row in outcome.log_history]
        offset += outcome.steps
    last = phases[PHASES[-1]].outcome
    before = offset - last.steps
    return TrainingOutcome(
        steps=offset,
        seconds=sum(phases[n].outcome.seconds for n in PHASES if not phases[n].skipped),
        resumed=any(phases[n].outcome.resumed or phases[n].skipped for n in PHASES),
        log_history=history,
        best_score=last.best_score,
        best_step=None if last.best_step is None else last.best_step + before,
    )


def report_figures(result: DynaBertResult) -> dict[str, Any]:
    """The report's DynaBERT figures: the selection rule, the grid and each phase's steps, time and selection."""
    phases = {
        name: {
            "train_steps": phase.outcome.steps,
            "train_seconds": phase.outcome.seconds,
            "best_heldout_score": phase.outcome.best_score,
            "best_checkpoint_step": phase.outcome.best_step,
            "reused": phase.skipped,
        }
        for name, phase in result.phases.items()
    }
    selection = "mean held-out selection score over the phase's grid"
    return {"selection": selection, "grid": [list(point) for point in result.grid], "phases": phases}


def grid_record(widths: list[float], depths: list[float]) -> dict[str, Any]:
    """The `GRID_FILE` record."""
    return {"widths": list(widths), "depths": list(depths), "grid": [list(p) for p in grid(widths, depths)]}


def dynabert_student(
    params: Params,
    task: str,
    teacher_dir: Path,
    data_dir: Path,
    model_out: Path,
    *,
    checkpoints: Path,
    callbacks: list[Any],
    bf16: bool,
) -> tuple[DynaBertResult, int]:
    """`train_dynabert` from the task's fine-tuned teacher and prepared data (``params.dynabert``); write the rewired
    full-size model (a task model of the teacher's class), its tokenizer and `GRID_FILE` into ``model_out``.

    Returns:
        The result and the number of training rows.
    """
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    spec = get_task(task)
    teacher = load_task_model(str(teacher_dir), spec)
    tokenizer = load_tokenizer(str(teacher_dir))
    rows = TaskRows.load(data_dir, spec)
    hp = params.dynabert
    result = train_dynabert(
        teacher, tokenizer, rows, spec, hp, seed=params.seed, checkpoints=checkpoints, callbacks=callbacks, bf16=bf16
    )
    record = grid_record(hp.widths, hp.depths)
    setattr(result.student.config, GRID_CONFIG_KEY, record["grid"])
    result.student.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    (model_out / GRID_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return result, len(rows.train)
