"""The ``TrainingArguments`` of every effbert training stage, from the stage's params section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effbert.data.tasks import SELECTION
from effbert.params import HeldoutSelection, Optimization


def training_arguments(
    section: Optimization,
    *,
    output_dir: Path,
    seed: int,
    save_steps: int,
    save_total_limit: int,
    select_on_heldout: bool,
    batch_size: int | None = None,
    eval_batch_size: int | None = None,
    group_by_length: bool = False,
    bf16: bool = False,
    label_names: list[str] | None = None,
) -> Any:
    """AdamW with linear warm-up and decay, seeded, as ``section`` (a params section that trains) sets it.

    With ``select_on_heldout`` the Trainer evaluates on the held-out slice every ``save_steps``, keeps the best
    checkpoint by :data:`~effbert.data.tasks.SELECTION` and loads it at the end; without it (task-agnostic
    distillation) it only saves a resumable checkpoint every ``save_steps``.

    Args:
        section: learning rate, epochs, batch size, warm-up ratio, weight decay and gradient clipping.
        output_dir: where the Trainer keeps its checkpoints.
        seed: the run's seed (model init and data order).
        save_steps: checkpoint (and, with selection, evaluation) interval in optimizer steps.
        save_total_limit: checkpoints kept.
        select_on_heldout: evaluate on the held-out slice and keep the best checkpoint.
        batch_size: rows per step instead of ``section.batch_size`` (stage 3's multi-task KD feeds whole batches).
        eval_batch_size: rows per evaluation step (default: the training batch size).
        group_by_length: batch rows of similar length together (less padding, same data).
        bf16: bf16 autocast with fp32 weights, on CUDA or on the CPU (`effbert.compute.use_bf16` decides).
        label_names: the batch keys holding labels (KD modules take them as inputs).
    """
    import torch
    from transformers import TrainingArguments

    train_batch = batch_size if batch_size is not None else section.batch_size
    selection: dict[str, Any] = (
        {
            "eval_strategy": "steps",
            "eval_steps": save_steps,
            "load_best_model_at_end": True,
            "metric_for_best_model": SELECTION,
            "greater_is_better": True,
            "per_device_eval_batch_size": eval_batch_size or train_batch,
        }
        if select_on_heldout
        else {"eval_strategy": "no"}
    )
    return TrainingArguments(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        learning_rate=section.learning_rate,
        num_train_epochs=section.epochs,
        per_device_train_batch_size=train_batch,
        warmup_steps=section.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=section.weight_decay,
        max_grad_norm=section.max_grad_norm,
        lr_scheduler_type="linear",
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        logging_steps=max(1, min(10, save_steps)),
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # the Trainer's way to autocast bf16 on the CPU
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        disable_tqdm=False,
        label_names=label_names,
        **selection,
    )


def selection_arguments(
    section: HeldoutSelection, *, output_dir: Path, seed: int, bf16: bool, label_names: list[str] | None = None
) -> Any:
    """:func:`training_arguments` of a section that selects its checkpoint on the held-out slice: evaluated and
    checkpointed every ``eval_steps``, ``save_total_limit`` kept, its evaluation batch and length grouping."""
    return training_arguments(
        section,
        output_dir=output_dir,
        seed=seed,
        save_steps=section.eval_steps,
        save_total_limit=section.save_total_limit,
        select_on_heldout=True,
        eval_batch_size=section.eval_batch_size,
        group_by_length=section.group_by_length,
        bf16=bf16,
        label_names=label_names,
    )
