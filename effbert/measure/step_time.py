"""Measured training-step times and peak memory of a profile's models on this machine (``effbert estimate``).

Each kind of step `effbert.measure.cost.StageCost` prices is timed on randomly initialised models of the profile's
sizes (no weights, no data needed) at the profile's sequence length, a few warm-up then timed steps, median kept:

- ``teacher``: a fine-tuning step of the teacher (cross-entropy on [CLS], backward, AdamW);
- ``kd``: a task-agnostic KD step of the warm-up supernet (the student frame, every unit) from the teacher;
- ``teacher_kd``: the same with a teacher-sized student (DynaBERT's sub-networks, priced as the full model);
- ``forward``: a teacher forward (FastBERT's frozen backbone; its small branches are not counted).

Peak memory is CUDA's ``max_memory_allocated`` per step kind; on a CPU it is not measured.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from typing import Any

import torch

from effbert.measure.latency import default_device, time_calls
from effbert.measure.precision import finetune_step, forward, kd_step

__all__ = ["StepTime", "measure_step_times", "teacher_config"]


@dataclass(frozen=True)
class StepTime:
    """One step kind at ``batch`` sequences: median milliseconds and CUDA peak MiB (None on a CPU)."""

    kind: str
    batch: int
    ms: float
    peak_mib: float | None

    def ms_at(self, batch: int) -> float:
        """The step time at another batch size, scaled linearly (an approximation: small batches cost more)."""
        return self.ms * batch / self.batch


def teacher_config(source: str) -> Any:
    """The teacher's config without its weights: from a local directory or the hub cache, and for BERT-base
    (``bert-base-uncased``, the paper's teacher) from the library's defaults when neither has it."""
    from transformers import AutoConfig, BertConfig

    try:
        return AutoConfig.from_pretrained(source)
    except OSError:
        if "bert-base" in source:
            return BertConfig()
        raise


def _models(params: Any, config: Any) -> dict[str, tuple[Any, Any]]:
    from transformers import AutoModel

    from effbert.methods.efficientbert.distillation import frame_config
    from effbert.methods.efficientbert.modeling_effbert import EffBertModel

    frame = frame_config(params.student, config.vocab_size)
    torch.manual_seed(0)
    teacher = AutoModel.from_config(config, add_pooling_layer=False)
    return {
        "teacher": (teacher, None),
        "kd": (EffBertModel(frame, add_pooling_layer=False), teacher),
        "teacher_kd": (AutoModel.from_config(config, add_pooling_layer=False), teacher),
        "forward": (teacher, None),
    }


def measure_step_times(
    params: Any, batches: dict[str, int], *, warmup: int = 1, steps: int = 3, device: str | None = None
) -> dict[str, StepTime]:
    """Time each step kind of ``batches`` (kind -> batch per process) on this machine at ``data.max_seq_length``."""
    from effbert.models.teacher import teacher_source

    target = default_device(device)
    config = teacher_config(teacher_source(params))
    models = _models(params, config)
    seq_len = params.data.max_seq_length
    out: dict[str, StepTime] = {}
    for kind, batch in batches.items():
        model, teacher = models[kind]
        if kind == "teacher":
            step = finetune_step(model, batch, seq_len, target, 1e-5)
        elif kind == "forward":
            step = forward(model, batch, seq_len, target)
        else:
            step = kd_step(model, teacher, batch, seq_len, target, 1e-4)
        if target.type == "cuda":
            torch.cuda.reset_peak_memory_stats(target)
        for _ in range(warmup):
            step(False)
        times = time_calls(functools.partial(step, False), steps, target)
        peak = torch.cuda.max_memory_allocated(target) / 2**20 if target.type == "cuda" else None
        out[kind] = StepTime(kind, batch, statistics.median(times), peak)
    return out
