"""What the distillation stages share: the pre-trained teacher, the student frame, the KD Trainer, the projection.

Used by ``warmup_kd`` (:mod:`effbert.stages.warmup_kd`) and ``final_distill`` (:mod:`effbert.stages.final_distill`).
The algorithms live in :mod:`effbert.distill` and :mod:`effbert.models`; this module only wires them to params,
files and checkpoints.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.data.tasks import TaskSpec
from effbert.distill import DistillationLoss
from effbert.distill.losses import Task, layer_map
from effbert.distill.trainer import DistillationModule, DistillationTrainerMixin
from effbert.errors import EffbertError
from effbert.models.configuration_effbert import EffBertConfig
from effbert.models.supernet import supernet_config
from effbert.models.teacher import load_tokenizer, resolve_source
from effbert.params import Params, StudentParams
from effbert.stages.common import checkpoint_dir, device, history_callback, write_history
from effbert.training import build_trainer, training_arguments

log = logging.getLogger(__name__)

FIT_DENSE_FILE = "fit_dense.safetensors"
"""The trained hidden-state projection (student H -> teacher H), kept next to a student that training continues."""


def pretrained_teacher(params: Params, stage: tracking.StageRun) -> tuple[Any, Any]:
    """The pre-trained (not fine-tuned) teacher encoder ``finetune_teacher.model`` and its tokenizer.

    Logs the teacher's files as a dataset input of the stage (by content) when it is a local directory.
    """
    from transformers import AutoModel

    source = resolve_source(params.finetune_teacher.model, tracking.project_root())
    if Path(source).is_dir():
        stage.log_dataset(f"teacher/{params.finetune_teacher.model}", Path(source), "pretrained_model")
    return AutoModel.from_pretrained(source), load_tokenizer(source)


def check_frame(student: StudentParams, teacher_config: Any) -> None:
    """The student frame must allow EfficientBERT's losses against this teacher (equal heads, uniform layer map).

    Raises:
        EffbertError: naming the params key to change.
    """
    heads = teacher_config.num_attention_heads
    if student.num_attention_heads != heads:
        raise EffbertError(
            f"student.num_attention_heads={student.num_attention_heads}: the attention-score loss needs the "
            f"teacher's head count ({heads})"
        )
    try:
        layer_map(student.num_layers, teacher_config.num_hidden_layers)
    except ValueError as err:
        raise EffbertError(f"student.num_layers={student.num_layers}: {err}") from None


def student_supernet_config(student: StudentParams, vocab_size: int) -> EffBertConfig:
    """The warm-up supernet of the ``student`` section: every layer holds ``max_ffn_units`` GELU units of width H."""
    return supernet_config(
        hidden_size=student.hidden_size,
        num_hidden_layers=student.num_layers,
        num_attention_heads=student.num_attention_heads,
        max_ffn_units=student.max_ffn_units,
        vocab_size=vocab_size,
        embedding_size=student.embedding_size,
        hidden_dropout_prob=student.dropout,
        attention_probs_dropout_prob=student.dropout,
        gelu_approximate=student.gelu_approximate,
    )


def criterion(student_hidden: int, teacher_config: Any, task: Task, hp: Any) -> DistillationLoss:
    """The KD objective with the stage's weights (``prediction_weight``/``temperature`` only for task KD)."""
    return DistillationLoss(
        student_hidden,
        teacher_config.hidden_size,
        task=task,
        attention_weight=hp.attention_weight,
        hidden_weight=hp.hidden_weight,
        prediction_weight=getattr(hp, "prediction_weight", 1.0),
        temperature=getattr(hp, "temperature", 1.0),
    )


def save_projection(loss: DistillationLoss, directory: Path) -> None:
    """Write the trained ``fit_dense`` projection so that the next distillation stage continues with it."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in loss.hidden_loss.state_dict().items()}
    save_file(state, str(directory / FIT_DENSE_FILE))


def load_projection(loss: DistillationLoss, directory: Path) -> None:
    """Continue with the projection trained by the stage that wrote ``directory`` (as the official code does).

    Raises:
        EffbertError: the file is missing or its shapes do not match.
    """
    from safetensors.torch import load_file

    path = directory / FIT_DENSE_FILE
    if not path.is_file():
        raise EffbertError(f"{path}: missing (the hidden-state projection of the previous distillation stage)")
    try:
        loss.hidden_loss.load_state_dict(load_file(str(path)))
    except RuntimeError as err:
        raise EffbertError(f"{path}: does not fit this student/teacher pair: {str(err).splitlines()[-1]}") from None


def distill(
    module: DistillationModule,
    tokenizer: Any,
    train: Any,
    *,
    stage: tracking.StageRun,
    hp: Any,
    seed: int,
    checkpoints: Path,
    spec: TaskSpec | None = None,
    heldout: Any = None,
    heldout_examples: Any = None,
) -> dict[str, Any]:
    """Train ``module`` with the KD Trainer, resuming from ``checkpoints`` when a killed run left some there.

    Task-agnostic (``spec`` None): checkpoints every ``hp.save_steps``, keeps the last weights. Task KD: evaluates
    the student on ``heldout`` every ``hp.eval_steps`` and ends with the best checkpoint loaded.

    Returns:
        the Trainer's state figures: steps, best held-out score (task KD), wall seconds, whether it resumed, and
        the log history (a DataFrame, under ``history``).
    """
    import pandas as pd
    from transformers.trainer_utils import get_last_checkpoint

    select = spec is not None
    label_names = None
    if spec is not None:
        label_names = ["start_positions", "end_positions"] if spec.kind == "span" else ["labels"]
    args = training_arguments(
        output_dir=checkpoints,
        seed=seed,
        learning_rate=hp.learning_rate,
        epochs=hp.epochs,
        batch_size=hp.batch_size,
        eval_batch_size=getattr(hp, "eval_batch_size", None),
        warmup_ratio=hp.warmup_ratio,
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        save_steps=hp.eval_steps if select else hp.save_steps,
        save_total_limit=hp.save_total_limit,
        bf16=hp.bf16,
        group_by_length=getattr(hp, "group_by_length", False),
        select_on_heldout=select,
        label_names=label_names,
    )
    trainer = build_trainer(
        spec,
        module,
        tokenizer,
        args,
        train,
        heldout,
        heldout_examples,
        callbacks=[history_callback(stage)],
        mixin=DistillationTrainerMixin,
    )
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        log.info("resuming from %s", resume)
    log.info("distilling: %d training rows on %s", len(train), device())
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - started
    state = trainer.state
    figures: dict[str, Any] = {
        "train_steps": int(state.global_step),
        "train_rows": len(train),
        "train_seconds": wall,
        "resumed": bool(resume),
        "history": pd.DataFrame(state.log_history),
    }
    if select:
        figures["best_heldout_score"] = float(state.best_metric or 0.0)
        figures["best_checkpoint_step"] = int(str(state.best_model_checkpoint or "-0").rsplit("-", 1)[-1])
    return figures


def write_report(figures: dict[str, Any], report_dir: Path, stage: tracking.StageRun, extra: dict[str, Any]) -> dict:
    """``metrics.json``, the training history (CSV + PNG) and the MLflow metrics of a distillation stage."""
    write_history(figures["history"], report_dir)
    metrics = {k: v for k, v in figures.items() if k != "history"}
    metrics.update(extra)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    stage.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float | bool)})
    stage.log_artifact(report_dir / "history.png", "plots")
    return metrics


def kd_checkpoints(stage_name: str, key: str, params: Params, sections: tuple[str, ...], *inputs: Path) -> Path:
    """The resumable-checkpoint folder of a distillation stage: keyed by its params and its inputs' digests."""
    from effbert.params import section_digest

    digests = [
        str((tracking.read_lineage(path) or {}).get("digest") or tracking.path_digest(path))[:12] for path in inputs
    ]
    return checkpoint_dir(stage_name, key, "-".join([section_digest(params, *sections), *digests]))


def last_logged(history: Any, column: str) -> float | None:
    """The last logged value of a training curve (None when never logged)."""
    if column not in history:
        return None
    values = history[column].dropna()
    return float(values.iloc[-1]) if len(values) else None
