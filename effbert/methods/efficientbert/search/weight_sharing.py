"""Stage-3 weight sharing: train one supernet over a random sub-architecture per step, then score without training.

Two pieces plug into the Hugging Face Trainer (checkpoints, exact resume, devices come from it):

* :func:`random_subnet_callback`: before every optimizer step, activates a sub-architecture drawn by a function of
  the step number only, so a resumed run draws exactly what an uninterrupted one would.
* :class:`MultiTaskDistillation`: single-task batches from several tasks, each distilled from its own fine-tuned
  teacher (kept in memory, unlike the official code that re-reads a teacher from disk on every batch), into one
  shared body with one classifier per task and one shared ``fit_dense``. Each parameter is registered once, so the
  Trainer's checkpoints hold no aliased tensors.

:func:`single_task_batches` and :class:`MultiTaskCollator` turn per-task datasets into such batches;
:func:`task_heads` builds the per-task heads around the shared body; :func:`train_weight_sharing` runs both phases
(general KD on the corpus, then multi-task KD) and :func:`heldout_scorer` scores a sub-architecture with no training.
:func:`save_trained_state` keeps the trained module in the search state with a sealed digest, and
:func:`load_trained_state` gives it back only while it matches (a damaged state is trained again).
No tracking here; the Trainer keeps its checkpoints in the folder it is given.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effbert.data.prepared import head_rows
from effbert.data.tasks import TaskSpec
from effbert.distill.frozen import freeze, given_inputs
from effbert.distill.losses import DistillationLoss
from effbert.distill.teacher_signals import capture, forward_with_signals
from effbert.distill.trainer import DistillationModule, DistillationOutput, DistillationTrainerMixin, fit
from effbert.errors import EffbertError
from effbert.integrity import file_sha256, read_sealed_json, write_sealed_json
from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.supernet import set_active
from effbert.params import Stage3Params
from effbert.training import build_trainer, train, training_arguments

log = logging.getLogger(__name__)

__all__ = [
    "MULTITASK_EXCLUDED",
    "WEIGHT_SHARING_FILE",
    "WEIGHT_SHARING_LOSSES",
    "MultiTaskCollator",
    "MultiTaskDistillation",
    "heldout_scorer",
    "load_trained_state",
    "random_subnet_callback",
    "save_trained_state",
    "scoring_rows",
    "single_task_batches",
    "step_rng",
    "task_heads",
    "train_weight_sharing",
]


MULTITASK_EXCLUDED = frozenset({"wnli"})
"""Sentence tasks left out of stage 3's multi-task KD: the paper's 8 GLUE tasks leave out WNLI (its train and dev
sets are built adversarially: a model fitted to train scores under the majority class on dev)."""


WEIGHT_SHARING_FILE = "weight_sharing.safetensors"
"""Stage 3's trained weight-sharing module (``body.*``, ``classifiers.<task>.*``, ``criterion.*``): kept in the search
state so a restarted stage goes straight to scoring, and written beside the winner (EfficientBERT+ starts from it)."""
WEIGHT_SHARING_LOSSES = "weight_sharing_losses.json"
"""Beside :data:`WEIGHT_SHARING_FILE` in the search state: both phases' final losses and the weights' sha256, sealed
(`effbert.integrity.write_sealed_json`); written last, it says the state is complete."""


def step_rng(seed: int, phase: str, step: int) -> random.Random:
    """The random source of one training step: a function of (seed, phase, step) only."""
    return random.Random(f"{seed}/{phase}/{step}")


def random_subnet_callback(
    body: nn.Module, draw: Callable[[random.Random], Architecture], seed: int, phase: str
) -> Any:
    """A ``TrainerCallback`` that activates ``draw(step_rng(seed, phase, step))`` on ``body`` before each step."""
    from transformers import TrainerCallback

    class RandomSubnet(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            set_active(body, draw(step_rng(seed, phase, state.global_step)))

    return RandomSubnet()


def single_task_batches(sizes: Mapping[str, int], batch_size: int, seed: int) -> list[tuple[int, list[int]]]:
    """Every task's rows shuffled and cut into batches, then all batches shuffled together.

    Args:
        sizes: rows per task, in task order (the task index is the position in this mapping).
        batch_size: rows per batch (a task's last batch may be smaller).
        seed: the shuffling seed.

    Returns:
        ``(task_index, row_ids)`` per batch.
    """
    rng = random.Random(seed)
    batches: list[tuple[int, list[int]]] = []
    for index, (_, size) in enumerate(sizes.items()):
        rows = list(range(size))
        rng.shuffle(rows)
        batches += [(index, rows[start : start + batch_size]) for start in range(0, size, batch_size)]
    rng.shuffle(batches)
    return batches


class MultiTaskCollator:
    """Collates one "row" = one single-task batch (``task_index``, ``rows``) into padded model inputs.

    Args:
        datasets: per task (in task-index order), the tokenised dataset with a ``label`` column.
        tokenizer: pads ``input_ids``/``token_type_ids``/``attention_mask``.
    """

    _INPUTS = ("input_ids", "token_type_ids", "attention_mask")

    def __init__(self, datasets: Sequence[Any], tokenizer: Any) -> None:
        self.datasets = list(datasets)
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if len(features) != 1:
            raise ValueError(f"one single-task batch per step expected, got {len(features)} (use batch size 1)")
        task_index, rows = int(features[0]["task_index"]), list(features[0]["rows"])
        data = self.datasets[task_index][rows]
        inputs = {k: data[k] for k in self._INPUTS if k in data}
        batch = dict(self.tokenizer.pad(inputs, return_tensors="pt"))
        labels = torch.tensor(data["label"])
        batch["labels"] = labels.float() if labels.is_floating_point() else labels.long()
        batch["task_index"] = torch.tensor([task_index])
        return batch


class MultiTaskDistillation(nn.Module):
    """One shared body, one classifier per task, one KD objective; a frozen teacher per task alongside.

    Args:
        body: the shared (supernet) encoder, with the pooler all tasks share.
        heads: per task, a head model (``EffBert*ForSequenceClassification``) whose ``effbert`` is ``body``.
        teachers: per task, its fine-tuned teacher (same task order as ``heads``).
        kinds: per task, the KD kind (``classification`` or ``regression``).
        criterion: the shared objective (its ``fit_dense`` is trained); its task kind is switched per batch.
    """

    def __init__(
        self,
        body: nn.Module,
        heads: Mapping[str, nn.Module],
        teachers: Mapping[str, nn.Module],
        kinds: Mapping[str, str],
        criterion: DistillationLoss,
    ) -> None:
        super().__init__()
        if list(heads) != list(teachers) or list(heads) != list(kinds):
            raise ValueError("heads, teachers and kinds must name the same tasks in the same order")
        for name, head in heads.items():
            if getattr(head, "effbert", None) is not body:
                raise ValueError(f"the head model of {name!r} must use the shared body")
        self.body = body
        self.classifiers = nn.ModuleDict({name: head.classifier for name, head in heads.items()})  # type: ignore[misc]
        self.criterion = criterion
        self.task_names = list(heads)
        self._kinds = dict(kinds)
        self._heads = dict(heads)  # plain dict: their parameters are registered once, through body and classifiers
        self._teachers = dict(teachers)
        for teacher in self._teachers.values():
            freeze(teacher)

    def train(self, mode: bool = True) -> MultiTaskDistillation:
        """Train/eval mode reaches the heads (held in a plain dict) too; the teachers always stay in eval mode."""
        super().train(mode)
        for head in self._heads.values():
            head.train(mode)
        for teacher in self._teachers.values():
            teacher.eval()
        return self

    def head(self, task: str) -> nn.Module:
        """The head model of ``task`` (shares the body)."""
        return self._heads[task]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MultiTaskDistillation:
        super()._apply(fn, recurse)
        for teacher in self._teachers.values():
            teacher._apply(fn, recurse)
        return self

    def forward(
        self,
        task_index: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> Any:
        """The KD loss of one single-task batch (training), or the task head's output (evaluation)."""
        task = self.task_names[int(task_index.reshape(-1)[0])]
        inputs = given_inputs(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if not self.training:
            return self._heads[task](**inputs, **({"labels": labels} if labels is not None else {}))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
            inputs["attention_mask"] = attention_mask
        self.criterion.task = self._kinds[task]  # type: ignore[assignment]
        teacher_signals = capture(self._teachers[task], **inputs)
        student_signals = forward_with_signals(self._heads[task], **inputs)
        return DistillationOutput(**self.criterion(student_signals, teacher_signals, attention_mask))


def task_heads(body: nn.Module, specs: Mapping[str, TaskSpec], seed: int) -> dict[str, nn.Module]:
    """One classification/regression head model per task around the shared ``body``, the ``i``-th task's head
    initialised from ``seed + i``."""
    from effbert.methods.efficientbert.modeling_effbert import EffBertForSequenceClassification

    config: Any = body.config
    heads: dict[str, nn.Module] = {}
    for offset, (task, spec) in enumerate(specs.items()):
        values = config.to_dict()
        values.update(num_labels=spec.num_labels if spec.kind != "regression" else 1)
        values["problem_type"] = "regression" if spec.kind == "regression" else "single_label_classification"
        torch.manual_seed(seed + offset)
        head: Any = EffBertForSequenceClassification(type(config).from_dict(values))
        head.effbert = body
        heads[task] = head
    return heads


def train_weight_sharing(
    module: MultiTaskDistillation,
    teacher: nn.Module,
    tokenizer: Any,
    corpus: Any,
    train_sets: Sequence[Any],
    hp: Stage3Params,
    *,
    seed: int,
    draw: Callable[[random.Random], Architecture],
    checkpoints: Path,
    bf16: bool,
) -> dict[str, float]:
    """Stage 3a + 3b: weight-sharing general KD of ``module.body`` from the pre-trained ``teacher`` on the first
    ``general.data_fraction`` of the corpus, then multi-task KD over the first ``multitask.data_fraction`` of each
    task's training rows (``train_sets`` in ``module.task_names`` order); a random sub-architecture ``draw(rng)`` per
    step. Resumes either phase from its checkpoints under ``checkpoints``; with ``bf16`` both train under bf16
    autocast (fp32 weights).

    Returns:
        ``general_loss`` and ``multitask_loss``: each phase's final training loss.
    """
    from datasets import Dataset

    corpus = corpus.select(range(head_rows(len(corpus), hp.general.data_fraction)))
    general = DistillationModule(module.body, teacher, module.criterion)
    args = training_arguments(
        hp.general,
        output_dir=checkpoints / "general",
        seed=seed,
        save_steps=hp.general.save_steps,
        save_total_limit=1,
        select_on_heldout=False,
        bf16=bf16,
    )
    log.info("stage 3a: weight-sharing general KD on %d corpus rows", len(corpus))
    callbacks = [random_subnet_callback(module.body, draw, seed, "general")]
    losses = {"general_loss": fit(general, tokenizer, corpus, args, callbacks=callbacks).final_loss}

    sets = [data.select(range(head_rows(len(data), hp.multitask.data_fraction))) for data in train_sets]
    sizes = {task: len(data) for task, data in zip(module.task_names, sets, strict=True)}
    batches = single_task_batches(sizes, hp.multitask.batch_size, seed)
    rows = Dataset.from_dict({"task_index": [b[0] for b in batches], "rows": [b[1] for b in batches]})
    args = training_arguments(
        hp.multitask,
        output_dir=checkpoints / "multitask",
        seed=seed,
        save_steps=hp.multitask.save_steps,
        save_total_limit=1,
        select_on_heldout=False,
        batch_size=1,  # one row = one single-task batch
        bf16=bf16,
        label_names=["labels"],
    )
    args.remove_unused_columns = False
    callbacks = [random_subnet_callback(module.body, draw, seed, "multitask")]
    trainer = build_trainer(None, module, tokenizer, args, rows, callbacks=callbacks, mixin=DistillationTrainerMixin)
    trainer.data_collator = MultiTaskCollator(sets, tokenizer)
    log.info("stage 3b: multi-task KD over %s (%d single-task batches)", ", ".join(module.task_names), len(batches))
    losses["multitask_loss"] = train(trainer).final_loss
    return losses


def save_trained_state(state_dir: Path, module: nn.Module, losses: Mapping[str, float]) -> None:
    """Keep the trained weight-sharing module in the search state: its weights (:data:`WEIGHT_SHARING_FILE`,
    renamed into place), then :data:`WEIGHT_SHARING_LOSSES` (the losses and the weights' sha256, sealed: the file
    whose presence says the state is complete)."""
    from safetensors.torch import save_file

    weights = state_dir / WEIGHT_SHARING_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(weights.with_suffix(".tmp")))
    weights.with_suffix(".tmp").replace(weights)
    record = {"losses": dict(losses), "weights_sha256": file_sha256(weights)}
    write_sealed_json(state_dir / WEIGHT_SHARING_LOSSES, record)


def load_trained_state(state_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, float]] | None:
    """The weights and losses :func:`save_trained_state` kept, None when there are none to trust: a save cut short
    (weights without the sealed losses file), a damaged losses file, or weights that no longer match their sha256 are
    removed with one warning line naming the file, and the module is trained again."""
    from safetensors.torch import load_file

    weights, losses = state_dir / WEIGHT_SHARING_FILE, state_dir / WEIGHT_SHARING_LOSSES
    again = "training the weight-sharing supernet again"
    present = losses.is_file()
    record = read_sealed_json(losses, "weight-sharing state", again)
    problem = None
    if record is None and weights.is_file() and not present:
        problem = f"no sealed {WEIGHT_SHARING_LOSSES} beside it (its save was cut short)"
    elif record is not None and (not weights.is_file() or file_sha256(weights) != record.get("weights_sha256")):
        problem = f"missing or changed since it was written (its sha256 differs from {WEIGHT_SHARING_LOSSES})"
    if problem is not None:
        log.warning("%s: %s: discarded, %s", weights, problem, again)
    if record is None or problem is not None:
        weights.unlink(missing_ok=True)
        losses.unlink(missing_ok=True)
        return None
    return load_file(str(weights)), {str(k): float(v) for k, v in record["losses"].items()}


def scoring_rows(train: Any, heldout: Any, hp: Stage3Params) -> Any:
    """The rows stage 3 scores candidates on: the held-out slice, or (``score_rows: train_tail``, the official
    protocol) the proxy task's train rows after the first ``multitask.data_fraction``, which the multi-task KD never
    saw (official: the last 10 % of MNLI train); the first ``heldout_examples`` of them when set.

    Raises:
        EffbertError: ``train_tail`` with ``multitask.data_fraction: 1.0`` (no row is left out).
    """
    rows = heldout
    if hp.score_rows == "train_tail":
        start = head_rows(len(train), hp.multitask.data_fraction)
        if start >= len(train):
            raise EffbertError("search.stage3.score_rows: train_tail needs search.stage3.multitask.data_fraction < 1")
        rows = train.select(range(start, len(train)))
    limit = hp.heldout_examples
    return rows.select(range(min(limit, len(rows)))) if limit else rows


def heldout_scorer(
    module: MultiTaskDistillation,
    task: str,
    spec: TaskSpec,
    heldout: Any,
    tokenizer: Any,
    batch_size: int,
    device: str,
    *,
    bf16: bool = False,
) -> Callable[[Architecture], float]:
    """Scores a sub-architecture of the trained supernet on ``task``'s held-out rows, with no further training (with
    ``bf16``: under bf16 autocast)."""
    from effbert.eval.scoring import heldout_score

    head = module.head(task)

    def score(arch: Architecture) -> float:
        set_active(module.body, arch)
        return heldout_score(head, heldout, tokenizer, spec, batch_size, device, bf16=bf16)

    return score
