"""fp32 against bf16 autocast, side by side in one run: a teacher fine-tuning step, a distillation step and a
teacher forward (what ``effbert bench`` reports under "precision").

Every operation runs in both precisions on the same fixed inputs, the six timed calls interleaved with a rotating
order per repetition (so drift in the machine's speed hits both precisions alike); medians are reported. bf16 means
``torch.autocast`` with bf16 and fp32 master weights (`effbert.compute.autocast`), as the pipeline's stages run it.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effbert.compute import autocast, cpu_bf16_flags
from effbert.measure.latency import Device, config_int, default_device, rotated_times, shared_inputs

Step = Callable[[bool], None]
"""One timed operation, called with ``bf16`` (True: under bf16 autocast)."""

OPERATIONS = ("finetune_step", "kd_step", "forward")
"""The compared operations: a teacher training step (classifier on [CLS], cross-entropy, backward, AdamW), a
task-agnostic KD step (teacher capture + student forward, loss, backward, AdamW) and a teacher forward (no grad)."""


@dataclass(frozen=True)
class PrecisionRow:
    """One operation in fp32 and under bf16 autocast (median milliseconds)."""

    operation: str
    batch_size: int
    seq_len: int
    fp32_ms: float
    bf16_ms: float

    @property
    def speedup(self) -> float:
        """fp32 median / bf16 median: above 1 when bf16 is faster."""
        return self.fp32_ms / self.bf16_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields and the speed-up."""
        return {**asdict(self), "speedup": self.speedup}


def measure_precision(
    student: nn.Module,
    teacher: nn.Module,
    *,
    train_batch: int = 16,
    forward_batch: int = 32,
    seq_len: int = 128,
    warmup: int = 1,
    steps: int = 5,
    device: Device = None,
    lr: float = 1e-5,
) -> list[PrecisionRow]:
    """Time each of :data:`OPERATIONS` in fp32 and under bf16 autocast, interleaved, on deep copies of the models.

    Args:
        student: BERT-family student (the KD step's trainee).
        teacher: BERT-family teacher (fine-tuned in the first operation, the KD step's teacher, the forward).
        train_batch: sequences per fine-tuning and KD step.
        forward_batch: sequences per forward.
        seq_len: T of every operation.
        warmup: untimed calls of each operation and precision.
        steps: timed calls of each (medians are reported).
        device: where to run (default: CUDA when present, else CPU).
        lr: AdamW learning rate of the training steps (small: the weights barely move over the repetitions).

    Returns:
        One :class:`PrecisionRow` per operation, in :data:`OPERATIONS` order.

    Raises:
        ValueError: ``steps`` < 1 or negative ``warmup``, or a pair the distillation loss cannot handle.
    """
    from effbert.distill import check_pair

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    layers, heads = "num_hidden_layers", "num_attention_heads"
    check_pair(*(config_int(model, key) or 0 for model in (student, teacher) for key in (layers, heads)))
    target = default_device(device)
    operations = {
        "finetune_step": finetune_step(teacher, train_batch, seq_len, target, lr),
        "kd_step": kd_step(student, teacher, train_batch, seq_len, target, lr),
        "forward": forward(teacher, forward_batch, seq_len, target),
    }
    calls = {(op, bf16): (lambda op=op, bf16=bf16: operations[op](bf16)) for op in OPERATIONS for bf16 in (False, True)}
    times = rotated_times(calls, warmup, steps, target)
    rows = []
    for op in OPERATIONS:
        batch = forward_batch if op == "forward" else train_batch
        fp32, bf16 = statistics.median(times[(op, False)]), statistics.median(times[(op, True)])
        rows.append(PrecisionRow(op, batch, seq_len, fp32, bf16))
    return rows


def finetune_step(teacher: nn.Module, batch: int, seq_len: int, target: torch.device, lr: float) -> Step:
    """A training step of a copy of ``teacher`` with a classifier on [CLS]: cross-entropy, backward, AdamW."""
    tuned = copy.deepcopy(teacher).to(target).train()
    inputs = shared_inputs([tuned], batch, seq_len, target)
    head = nn.Linear(config_int(tuned, "hidden_size") or 0, 2).to(target)
    labels = torch.arange(batch, device=target) % 2
    optimizer = torch.optim.AdamW([*tuned.parameters(), *head.parameters()], lr=lr)

    def step(bf16: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(bf16, target.type):
            loss = F.cross_entropy(head(tuned(**inputs).last_hidden_state[:, 0]).float(), labels)
        loss.backward()
        optimizer.step()

    return step


def kd_step(student: nn.Module, teacher: nn.Module, batch: int, seq_len: int, target: torch.device, lr: float) -> Step:
    """A task-agnostic KD step of a copy of ``student`` from a frozen copy of ``teacher`` (capture, loss, AdamW)."""
    from effbert.distill import DistillationLoss, capture, forward_with_signals

    trainee, frozen = copy.deepcopy(student).to(target).train(), copy.deepcopy(teacher).to(target).eval()
    inputs = shared_inputs([trainee, frozen], batch, seq_len, target)
    widths = (config_int(trainee, "hidden_size") or 0, config_int(frozen, "hidden_size") or 0)
    loss_fn = DistillationLoss(*widths, task="agnostic").to(target)
    optimizer = torch.optim.AdamW([*trainee.parameters(), *loss_fn.parameters()], lr=lr)

    def step(bf16: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(bf16, target.type):
            signals = capture(frozen, **inputs)
            loss = loss_fn(forward_with_signals(trainee, **inputs), signals, inputs["attention_mask"])["loss"]
        loss.backward()
        optimizer.step()

    return step


def forward(teacher: nn.Module, batch: int, seq_len: int, target: torch.device) -> Step:
    """A no-grad forward of a copy of ``teacher`` in eval mode."""
    frozen = copy.deepcopy(teacher).to(target).eval()
    inputs = shared_inputs([frozen], batch, seq_len, target)

    def step(bf16: bool) -> None:
        with torch.inference_mode(), autocast(bf16, target.type):
            frozen(**inputs)

    return step


def native_bf16_note(device: torch.device) -> str:
    """Why bf16 should (or should not) be fast here: the GPU, or the CPU's native-bf16 flags."""
    if device.type == "cuda":
        return f"GPU {'with' if torch.cuda.is_bf16_supported() else 'without'} native bf16"
    flags = cpu_bf16_flags()
    return f"CPU with native bf16 ({', '.join(flags)})" if flags else "CPU without native bf16 (autocast is emulated)"
