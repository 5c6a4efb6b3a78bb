"""Latency and KD-throughput benchmarks: one measurement protocol for every latency figure the project reports.

The protocol (:func:`measure_latency` for one model, :func:`compare_latency` for models measured side by side):

1. the torch intra-op thread count is set for the measurement and restored afterwards;
2. the inputs are fixed and deterministic: ``input_ids`` drawn from a generator seeded with 0 within the vocabulary,
   ``attention_mask`` all ones, ``token_type_ids`` zeros, shape (batch, seq_len);
3. models run in ``eval()`` mode (their training flag is restored afterwards) under ``torch.inference_mode()``;
4. ``warmup`` untimed forward passes, then at least ``runs`` (>= :data:`MIN_RUNS`) timed ones, each timed with
   ``time.perf_counter`` around a single forward pass (``torch.cuda.synchronize`` before and after on CUDA);
5. the figure is the median; p10 / p90, min and max describe the spread.

:func:`compare_latency` interleaves the models in rounds (order alternating between rounds) so that load from other
processes hits every model alike and ratios are taken side by side. :func:`measure_kd_throughput` times one
knowledge-distillation step against a teacher forward and a student training step measured alone.
:func:`run_benchmark` is what ``effbert bench`` runs. This module logs nothing to MLflow.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effbert.errors import EffbertError

__all__ = [
    "MIN_RUNS",
    "TARGET_SPEEDUP",
    "KDThroughputResult",
    "LatencyResult",
    "compare_latency",
    "count_macs",
    "default_device",
    "format_report",
    "load_encoder",
    "machine_description",
    "make_inputs",
    "measure_kd_throughput",
    "measure_latency",
    "model_params",
    "reference_models",
    "run_benchmark",
    "torch_threads",
    "write_report",
]

MIN_RUNS = 20
"""The protocol's minimum number of timed runs per model and batch size."""

TARGET_SPEEDUP = 6.0
"""Target: the compact efficientbert student is at least this much faster than BERT-base at batch 1 on CPU."""

INPUT_SEED = 0
"""Seed of the generator that draws the benchmark's ``input_ids``."""

Device = str | torch.device | None


def default_device(device: Device = None) -> torch.device:
    """``device`` as a ``torch.device``; when None, ``cuda`` if torch sees a GPU, else ``cpu``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count inside the block (None keeps the current one); restore it on exit.

    Yields:
        the thread count in effect inside the block.

    Raises:
        ValueError: ``threads`` < 1.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train/eval mode inside the block and restore its previous flag on exit."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def _config_value(model: nn.Module, name: str) -> int | None:
    value = getattr(getattr(model, "config", None), name, None)
    return value if isinstance(value, int) else None


def make_inputs(batch_size: int, seq_len: int, vocab_size: int, device: Device = None) -> dict[str, torch.Tensor]:
    """The benchmark's fixed inputs: seeded ``input_ids`` in ``[0, vocab_size)``, all-ones mask, zero segments.

    Args:
        batch_size: B >= 1.
        seq_len: T >= 1.
        vocab_size: exclusive upper bound of the token ids.
        device: where the tensors live (default: see :func:`default_device`).

    Returns:
        ``input_ids``, ``attention_mask`` and ``token_type_ids``, each (B, T) int64.
    """
    if batch_size < 1 or seq_len < 1 or vocab_size < 1:
        raise ValueError(f"batch_size, seq_len and vocab_size must be >= 1, got {batch_size}, {seq_len}, {vocab_size}")
    generator = torch.Generator().manual_seed(INPUT_SEED)
    input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    target = default_device(device)
    return {
        "input_ids": input_ids.to(target),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=target),
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long, device=target),
    }


def _shared_inputs(
    models: Sequence[nn.Module], batch_size: int, seq_len: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Inputs every model in ``models`` accepts: ids below the smallest vocabulary, T within every position table."""
    vocabs = [v for v in (_config_value(m, "vocab_size") for m in models) if v is not None]
    positions = [p for p in (_config_value(m, "max_position_embeddings") for m in models) if p is not None]
    if positions and seq_len > min(positions):
        raise ValueError(f"seq_len {seq_len} exceeds the models' max_position_embeddings ({min(positions)})")
    return make_inputs(batch_size, seq_len, min(vocabs) if vocabs else 1000, device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(fn: Callable[[], object], count: int, device: torch.device) -> list[float]:
    """Milliseconds of ``count`` calls of ``fn``, each timed alone (synchronised on CUDA)."""
    times = []
    for _ in range(count):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    """(p10, p90) with linear interpolation between order statistics (one value: that value twice)."""
    if len(values) < 2:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[0], cuts[-1]


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one model at one input shape under the protocol of this module.

    Attributes:
        median_ms: median of the timed runs (the reported figure).
        p10_ms: 10th percentile of the timed runs.
        p90_ms: 90th percentile of the timed runs.
        min_ms: fastest run.
        max_ms: slowest run.
        runs: number of timed runs.
        warmup: untimed warm-up runs before them.
        batch_size: B.
        seq_len: T.
        threads: torch intra-op threads during the measurement.
        device: where the model ran (``cpu``, ``cuda:0``, ...).
        times_ms: every timed run, in the order measured.
        machine: :func:`machine_description` of where it ran (CPU model, cores, threads, GPU name on CUDA),
            recorded next to the figure.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    batch_size: int
    seq_len: int
    threads: int
    device: str
    times_ms: tuple[float, ...] = field(repr=False)
    machine: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_times(
        cls,
        times_ms: Sequence[float],
        *,
        warmup: int,
        batch_size: int,
        seq_len: int,
        threads: int,
        device: str,
        machine: Mapping[str, Any] | None = None,
    ) -> LatencyResult:
        """Summarise raw run times (ms) into a result."""
        if not times_ms:
            raise ValueError("no timed runs")
        p10, p90 = _percentiles(times_ms)
        return cls(
            median_ms=statistics.median(times_ms),
            p10_ms=p10,
            p90_ms=p90,
            min_ms=min(times_ms),
            max_ms=max(times_ms),
            runs=len(times_ms),
            warmup=warmup,
            batch_size=batch_size,
            seq_len=seq_len,
            threads=threads,
            device=device,
            times_ms=tuple(times_ms),
            machine=dict(machine or {}),
        )

    @property
    def sequences_per_s(self) -> float:
        """Throughput at the median latency."""
        return self.batch_size * 1e3 / self.median_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times rounded to microseconds) plus ``sequences_per_s``."""
        data = asdict(self)
        data["times_ms"] = [round(t, 3) for t in self.times_ms]
        data["sequences_per_s"] = self.sequences_per_s
        return data


def compare_latency(
    models: Mapping[str, nn.Module],
    batch_size: int,
    seq_len: int,
    *,
    warmup: int = 5,
    runs: int = MIN_RUNS,
    rounds: int = 4,
    threads: int | None = None,
    device: Device = None,
) -> dict[str, LatencyResult]:
    """Measure several models side by side under the protocol of this module, interleaved in rounds.

    Every model is warmed up (``warmup`` passes), then each of ``rounds`` rounds runs, for every model in turn (order
    reversed on odd rounds), one untimed pass followed by ``ceil(runs / rounds)`` timed ones. With one model this is
    exactly :func:`measure_latency`. Models are moved to ``device`` in place; their training flags are restored.

    Args:
        models: name -> model taking ``input_ids``, ``attention_mask``, ``token_type_ids``.
        batch_size: B.
        seq_len: T; must fit every model's ``max_position_embeddings``.
        warmup: untimed passes per model before the rounds.
        runs: minimum timed passes per model, at least :data:`MIN_RUNS`.
        rounds: how many interleaving rounds (1 measures the models one after the other).
        threads: torch intra-op threads (None: torch's current setting).
        device: where to run (default: see :func:`default_device`).

    Returns:
        name -> :class:`LatencyResult`, in the order of ``models``.

    Raises:
        ValueError: ``runs`` < :data:`MIN_RUNS`, a non-positive shape or ``rounds``, negative ``warmup``, or a
            ``seq_len`` beyond a model's position table.
    """
    if runs < MIN_RUNS:
        raise ValueError(f"the latency protocol needs at least {MIN_RUNS} timed runs, got {runs}")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    if not models:
        raise ValueError("no models to measure")
    target = default_device(device)
    names = list(models)
    for model in models.values():
        model.to(target)
    inputs = _shared_inputs(list(models.values()), batch_size, seq_len, target)
    per_round = math.ceil(runs / rounds)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch_threads(threads) as used_threads, torch.inference_mode():
        machine = machine_description(target)  # inside torch_threads: records the thread count of the runs
        flags = {name: model.training for name, model in models.items()}
        try:
            for model in models.values():
                model.eval()
            calls = {name: (lambda m=model: m(**inputs)) for name, model in models.items()}
            for name in names:
                _time_calls(calls[name], warmup, target)
            for round_index in range(rounds):
                for name in names if round_index % 2 == 0 else reversed(names):
                    if len(names) > 1:
                        _time_calls(calls[name], 1, target)  # re-warm after the other models ran
                    times[name] += _time_calls(calls[name], per_round, target)
        finally:
            for name, model in models.items():
                model.train(flags[name])
    return {
        name: LatencyResult.from_times(
            times[name],
            warmup=warmup,
            batch_size=batch_size,
            seq_len=seq_len,
            threads=used_threads,
            device=str(target),
            machine=machine,
        )
        for name in names
    }


def measure_latency(
    model: nn.Module,
    batch_size: int,
    seq_len: int,
    *,
    warmup: int = 5,
    runs: int = MIN_RUNS,
    threads: int | None = None,
    device: Device = None,
) -> LatencyResult:
    """Median latency of one forward pass of ``model`` at (``batch_size``, ``seq_len``): the project's protocol.

    See the module docstring for the protocol. The model is moved to ``device`` in place; its training flag and
    torch's thread count are restored afterwards.

    Args:
        model: a model taking ``input_ids``, ``attention_mask``, ``token_type_ids`` (a Hugging Face encoder).
        batch_size: B.
        seq_len: T.
        warmup: untimed passes before timing.
        runs: timed passes, at least :data:`MIN_RUNS`.
        threads: torch intra-op threads (None: torch's current setting).
        device: where to run (default: see :func:`default_device`).

    Returns:
        the :class:`LatencyResult`.

    Raises:
        ValueError: see :func:`compare_latency`.
    """
    return compare_latency(
        {"model": model}, batch_size, seq_len, warmup=warmup, runs=runs, rounds=1, threads=threads, device=device
    )["model"]


@dataclass(frozen=True)
class KDThroughputResult:
    """Throughput of one task-agnostic distillation step against its two parts measured alone (medians).

    Attributes:
        batch_size: sequences per step.
        seq_len: T.
        steps: timed repetitions of each of the three operations.
        warmup: untimed repetitions of each before them.
        threads: torch intra-op threads.
        device: where it ran.
        teacher_forward_ms: teacher forward with signal capture (``capture``), no grad.
        student_step_ms: student forward with signals + loss against cached teacher signals + backward + AdamW step.
        kd_step_ms: the whole online step: teacher ``capture`` then the student step on its fresh signals.
    """

    batch_size: int
    seq_len: int
    steps: int
    warmup: int
    threads: int
    device: str
    teacher_forward_ms: float
    student_step_ms: float
    kd_step_ms: float

    @property
    def kd_sequences_per_s(self) -> float:
        """Sequences per second of the distillation step."""
        return self.batch_size * 1e3 / self.kd_step_ms

    @property
    def separate_sequences_per_s(self) -> float:
        """Sequences per second if the teacher forward and the student step cost exactly their separate times."""
        return self.batch_size * 1e3 / (self.teacher_forward_ms + self.student_step_ms)

    @property
    def overhead_ratio(self) -> float:
        """``(teacher forward + student step) / KD step``: 1 means no overhead, < 1 means the KD step costs more."""
        return (self.teacher_forward_ms + self.student_step_ms) / self.kd_step_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus the derived throughputs and ratio."""
        return {
            **asdict(self),
            "kd_sequences_per_s": self.kd_sequences_per_s,
            "separate_sequences_per_s": self.separate_sequences_per_s,
            "overhead_ratio": self.overhead_ratio,
        }


def check_kd_pair(student: nn.Module, teacher: nn.Module) -> None:
    """Raise ValueError when EfficientBERT's distillation cannot pair the two (layer multiple, equal head counts)."""
    from effbert.distill import layer_map

    s_layers, t_layers = _config_value(student, "num_hidden_layers"), _config_value(teacher, "num_hidden_layers")
    s_heads, t_heads = _config_value(student, "num_attention_heads"), _config_value(teacher, "num_attention_heads")
    if None in (s_layers, t_layers, s_heads, t_heads):
        raise ValueError("student and teacher need Hugging Face configs with num_hidden_layers / num_attention_heads")
    layer_map(s_layers or 0, t_layers or 0)
    if s_heads != t_heads:
        raise ValueError(f"attention-score distillation needs equal head counts; student {s_heads}, teacher {t_heads}")


def measure_kd_throughput(
    student: nn.Module,
    teacher: nn.Module,
    batch_size: int = 8,
    seq_len: int = 128,
    *,
    warmup: int = 2,
    steps: int = 10,
    threads: int | None = None,
    device: Device = None,
    lr: float = 1e-4,
) -> KDThroughputResult:
    """Time one task-agnostic KD step against a teacher forward plus a student training step measured alone.

    The three operations run interleaved (rotating order per repetition) on the fixed inputs of :func:`make_inputs`:

    - teacher forward: ``capture(teacher, ...)`` (no grad; the teacher in eval mode);
    - student step: ``forward_with_signals(student, ...)``, ``DistillationLoss(task="agnostic")`` against teacher
      signals captured once beforehand, backward, ``AdamW.step()`` (the student in train mode);
    - KD step: a fresh teacher ``capture`` followed by the student step on its signals.

    The student is trained on a deep copy, so the caller's weights are untouched; the teacher is moved to ``device``
    in place and its training flag restored.

    Args:
        student: BERT-family student (its attention dispatches through transformers' AttentionInterface).
        teacher: BERT-family teacher; ``L_t`` a multiple of ``L_s`` and the same head count.
        batch_size: sequences per step.
        seq_len: T.
        warmup: untimed repetitions of each operation.
        steps: timed repetitions of each operation (medians are reported).
        threads: torch intra-op threads (None: torch's current setting).
        device: where to run (default: see :func:`default_device`).
        lr: AdamW learning rate.

    Returns:
        the :class:`KDThroughputResult`.

    Raises:
        ValueError: ``steps`` < 1, negative ``warmup``, or a pair the distillation loss cannot handle.
    """
    from effbert.distill import DistillationLoss, TeacherSignals, capture, forward_with_signals

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    check_kd_pair(student, teacher)
    target = default_device(device)
    trainee = copy.deepcopy(student).to(target)
    teacher.to(target)
    inputs = _shared_inputs([trainee, teacher], batch_size, seq_len, target)
    s_hidden, t_hidden = _config_value(trainee, "hidden_size"), _config_value(teacher, "hidden_size")
    loss_fn = DistillationLoss(s_hidden or 0, t_hidden or 0, task="agnostic").to(target)
    optimizer = torch.optim.AdamW([*trainee.parameters(), *loss_fn.parameters()], lr=lr)

    def student_step(signals: TeacherSignals) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward_with_signals(trainee, **inputs), signals, inputs["attention_mask"])["loss"]
        loss.backward()
        optimizer.step()

    with torch_threads(threads) as used_threads, _mode(teacher, False), _mode(trainee, True):
        cached = capture(teacher, **inputs)
        operations: dict[str, Callable[[], object]] = {
            "teacher": lambda: capture(teacher, **inputs),
            "student": lambda: student_step(cached),
            "kd": lambda: student_step(capture(teacher, **inputs)),
        }
        names = list(operations)
        for name in names:
            _time_calls(operations[name], warmup, target)
        times: dict[str, list[float]] = {name: [] for name in names}
        for step in range(steps):
            for offset in range(len(names)):
                name = names[(step + offset) % len(names)]
                times[name] += _time_calls(operations[name], 1, target)
    return KDThroughputResult(
        batch_size=batch_size,
        seq_len=seq_len,
        steps=steps,
        warmup=warmup,
        threads=used_threads,
        device=str(target),
        teacher_forward_ms=statistics.median(times["teacher"]),
        student_step_ms=statistics.median(times["student"]),
        kd_step_ms=statistics.median(times["kd"]),
    )


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else ``platform.processor()``, else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_description(device: Device = None) -> dict[str, Any]:
    """Where a benchmark ran: CPU model, cores, torch threads, library versions, and the GPU when on CUDA."""
    import transformers

    target = default_device(device)
    affinity = getattr(os, "sched_getaffinity", None)
    info: dict[str, Any] = {
        "device": str(target),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if target.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(target)
    return info


def model_params(model: nn.Module) -> int:
    """Parameters without the pooler: `param_count` (paper convention) for EffBert, else the sum of the rest."""
    from effbert.models.modeling_effbert import EffBertPreTrainedModel
    from effbert.models.supernet import param_count

    if isinstance(model, EffBertPreTrainedModel):
        return param_count(model)
    return sum(p.numel() for name, p in model.named_parameters() if "pooler" not in name.split("."))


def count_macs(model: nn.Module, seq_len: int, batch_size: int = 1) -> int:
    """Multiply-accumulates of one forward pass at (``batch_size``, ``seq_len``), counted, not estimated.

    The convention (stated wherever the figure is shown): matrix products only (linear layers, attention scores and
    the attention-weighted sum, as ``torch.utils.flop_counter.FlopCounterMode`` counts them: mm, addmm, bmm, baddbmm
    and scaled-dot-product attention), MACs = FLOPs / 2; embeddings lookups, LayerNorm, activations and softmax are
    not counted. The model runs once on the protocol's fixed inputs (on its own device, eval mode); its training flag
    is restored.

    Args:
        model: a model taking ``input_ids``, ``attention_mask``, ``token_type_ids``.
        seq_len: T.
        batch_size: B (1 gives MACs per sequence).

    Returns:
        the MAC count.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return sdpa_flop_count(query, key, value)  # FlopCounterMode passes tensor shapes

    target = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = _shared_inputs([model], batch_size, seq_len, target)
    # torch counts the CUDA attention kernels but not the CPU one that scaled_dot_product_attention dispatches to
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_sdpa: cpu_sdpa_flops})
    # with autograd on: FlopCounterMode's module tracker hooks tensors that require grad (an EffBert MLP unit gets its
    # weight slices as arguments), which fails under no_grad / inference_mode
    with _mode(model, training=False), torch.enable_grad(), counter:
        model(**inputs)
    return counter.get_total_flops() // 2


def reference_models(architecture: str = "efficientbert", seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """The randomly initialised reference pair: the compact ``architecture`` student (12 heads) and BERT-base.

    BERT-base is Hugging Face ``BertModel(BertConfig())`` (bert-base-uncased: 12 layers, 768, 12 heads, 3072),
    built from the config without any download. Neither has a pooler. Initialisation is seeded without touching the
    global RNG state.
    """
    from transformers import BertConfig, BertModel

    from effbert.models.architecture import load_architecture
    from effbert.models.configuration_effbert import EffBertConfig
    from effbert.models.modeling_effbert import EffBertModel

    config = EffBertConfig.from_architecture(load_architecture(architecture), num_attention_heads=12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = EffBertModel(config, add_pooling_layer=False)
        teacher = BertModel(BertConfig(), add_pooling_layer=False)
    return student, teacher


def _model_dir(source: str) -> Path:
    """A model directory with ``config.json``: a path, or ``dist:<distribution>`` (resolved like a teacher source)."""
    from effbert.models.teacher import DIST_PREFIX, resolve_source

    path = Path(resolve_source(source)) if source.startswith(DIST_PREFIX) else Path(source)
    if not path.is_dir():
        raise EffbertError(f"model directory {source!r} does not exist")
    if not (path / "config.json").is_file():
        raise EffbertError(f"model directory {source!r} has no config.json")
    return path


def load_encoder(source: str) -> nn.Module:
    """Load the bare encoder saved in a model directory (a task model's head is left out), without its pooler.

    EffBert directories (``model_type: effbert``) load through effbert's Auto registration; anything else through
    ``transformers.AutoModel``. Files are read locally only.

    Raises:
        EffbertError: missing directory, no ``config.json``, or a directory transformers cannot load.
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from effbert.models.registration import register

    path = _model_dir(source)
    register()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a task checkpoint loaded as a bare encoder warns about its unused head
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise EffbertError(f"cannot load model directory {source!r}: {err}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # encoders are compared without the pooler (the paper's parameter convention)
    return model


def _model_entry(name: str, model: nn.Module, source: str) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return {
        "name": name,
        "source": source,
        "class": type(model).__name__,
        "params": model_params(model),
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "heads": getattr(config, "num_attention_heads", None),
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }


def _validate(
    runs: int,
    warmup: int,
    batch_sizes: Sequence[int],
    seq_len: int,
    threads: int | None,
    student_dir: str | None,
    teacher_dir: str | None,
    skip_reference: bool,
    kd_batch: int,
    kd_steps: int,
) -> None:
    """Check the benchmark options; raise EffbertError naming the first bad one."""
    if runs < MIN_RUNS:
        raise EffbertError(f"--runs {runs}: the latency protocol needs at least {MIN_RUNS} timed runs")
    if warmup < 0:
        raise EffbertError(f"--warmup {warmup}: must be >= 0")
    if not batch_sizes or min(batch_sizes) < 1:
        raise EffbertError(f"--batch-sizes {list(batch_sizes)}: need one or more sizes >= 1")
    if seq_len < 1:
        raise EffbertError(f"--seq-len {seq_len}: must be >= 1")
    if threads is not None and threads < 1:
        raise EffbertError(f"--threads {threads}: must be >= 1")
    if kd_batch < 1 or kd_steps < 1:
        raise EffbertError(f"--kd-batch {kd_batch} / --kd-steps {kd_steps}: must be >= 1")
    if (student_dir is None) != (teacher_dir is None):
        raise EffbertError("--student and --teacher go together: give both model directories or neither")
    if skip_reference and student_dir is None:
        raise EffbertError("--skip-reference leaves nothing to measure without --student/--teacher")


def run_benchmark(
    *,
    runs: int = MIN_RUNS,
    warmup: int = 5,
    batch_sizes: Sequence[int] = (1, 8),
    seq_len: int = 128,
    threads: int | None = None,
    device: Device = None,
    student_dir: str | None = None,
    teacher_dir: str | None = None,
    skip_reference: bool = False,
    kd: bool = True,
    kd_batch: int = 8,
    kd_steps: int = 10,
    rounds: int = 4,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything ``effbert bench`` measures, as a JSON-ready report.

    Pairs: the reference pair (random compact efficientbert vs random BERT-base) unless ``skip_reference``, and the
    directory pair when ``student_dir`` and ``teacher_dir`` are given. Each pair is measured with
    :func:`compare_latency` at every batch size; speed-up = teacher median / student median. KD throughput
    (:func:`measure_kd_throughput`) uses the directory pair when given, else the reference pair.

    Raises:
        EffbertError: a bad option, a missing/unloadable model directory, a ``seq_len`` beyond a model's positions,
            or a KD pair the distillation loss cannot handle.
    """
    _validate(runs, warmup, batch_sizes, seq_len, threads, student_dir, teacher_dir, skip_reference, kd_batch, kd_steps)
    say = progress or (lambda _message: None)
    try:
        target = default_device(device)
    except RuntimeError as err:
        raise EffbertError(f"--device {device!r}: {err}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise EffbertError(f"--device {device!r}: torch sees no CUDA device")
    pairs: list[tuple[str, dict[str, Any], nn.Module, dict[str, Any], nn.Module]] = []
    if student_dir is not None and teacher_dir is not None:
        student, teacher = load_encoder(student_dir), load_encoder(teacher_dir)
        pairs.append(
            (
                "demo",
                _model_entry(Path(student_dir).name or student_dir, student, student_dir),
                student,
                _model_entry(Path(teacher_dir).name or teacher_dir, teacher, teacher_dir),
                teacher,
            )
        )
    if not skip_reference:
        student, teacher = reference_models()
        pairs.insert(
            0,
            (
                "reference",
                _model_entry("efficientbert (random)", student, "architecture:efficientbert"),
                student,
                _model_entry("bert-base (random)", teacher, "transformers:BertConfig()"),
                teacher,
            ),
        )
    if kd:
        try:
            check_kd_pair(pairs[-1][2], pairs[-1][4])
        except ValueError as err:
            raise EffbertError(f"KD throughput ({pairs[-1][0]} pair): {err}; use --skip-kd") from None
    for _, _, s_model, _, t_model in pairs:
        positions = [p for p in (_config_value(m, "max_position_embeddings") for m in (s_model, t_model)) if p]
        if positions and seq_len > min(positions):
            raise EffbertError(f"--seq-len {seq_len} exceeds the models' max_position_embeddings ({min(positions)})")

    with torch_threads(threads) as used_threads:
        report: dict[str, Any] = {
            "protocol": {
                "statistic": "median",
                "runs": runs,
                "warmup": warmup,
                "rounds": rounds,
                "seq_len": seq_len,
                "batch_sizes": list(batch_sizes),
                "threads": used_threads,
                "device": str(target),
                "inputs": f"input_ids seeded ({INPUT_SEED}) within vocab, attention_mask ones, token_type_ids zeros",
            },
            "machine": machine_description(target),
            "target_speedup_batch1": TARGET_SPEEDUP,
            "latency": [],
            "kd_throughput": None,
        }
        for pair, s_entry, s_model, t_entry, t_model in pairs:
            for batch in batch_sizes:
                say(f"latency: {s_entry['name']} vs {t_entry['name']}, batch {batch}, seq {seq_len} ...")
                results = compare_latency(
                    {"student": s_model, "teacher": t_model},
                    batch,
                    seq_len,
                    warmup=warmup,
                    runs=runs,
                    rounds=rounds,
                    device=target,
                )
                student_result, teacher_result = results["student"], results["teacher"]
                report["latency"].append(
                    {
                        "pair": pair,
                        "batch_size": batch,
                        "student": s_entry,
                        "teacher": t_entry,
                        "student_latency": student_result.to_dict(),
                        "teacher_latency": teacher_result.to_dict(),
                        "speedup": teacher_result.median_ms / student_result.median_ms,
                    }
                )
        if kd:
            pair, s_entry, s_model, t_entry, t_model = pairs[-1]  # the directory pair when given
            say(f"KD throughput: {s_entry['name']} from {t_entry['name']}, batch {kd_batch}, seq {seq_len} ...")
            try:
                kd_result = measure_kd_throughput(
                    s_model, t_model, kd_batch, seq_len, steps=kd_steps, warmup=min(warmup, 2), device=target
                )
            except ValueError as err:
                raise EffbertError(f"KD throughput ({pair} pair): {err}") from None
            report["kd_throughput"] = {
                "pair": pair,
                "student": s_entry,
                "teacher": t_entry,
                **kd_result.to_dict(),
            }
    reference = [r for r in report["latency"] if r["pair"] == "reference" and r["batch_size"] == 1]
    if reference:
        report["target_met_batch1"] = reference[0]["speedup"] >= TARGET_SPEEDUP
    return report


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def format_report(report: Mapping[str, Any]) -> str:
    """The human-readable tables of a :func:`run_benchmark` report."""
    protocol, machine = report["protocol"], report["machine"]
    lines = [
        f"machine: {machine['cpu']} ({machine['usable_cores']} usable of {machine['logical_cores']} logical cores)"
        + (f", GPU {machine['gpu']}" if "gpu" in machine else ""),
        f"torch {machine['torch']}, transformers {machine['transformers']}, device {protocol['device']}, "
        f"threads {protocol['threads']}",
        f"protocol: median of {protocol['runs']} runs after {protocol['warmup']} warm-up, seq {protocol['seq_len']}, "
        f"interleaved in {protocol['rounds']} rounds; spread = p10-p90 ms",
        "",
    ]
    header = f"{'batch':>5}  {'student ms (p10-p90)':>24}  {'teacher ms (p10-p90)':>24}  {'speed-up':>8}"
    shown: str | None = None
    for row in report["latency"]:
        if row["pair"] != shown:  # one block per model pair
            shown = row["pair"]
            student, teacher = row["student"], row["teacher"]
            lines += [
                f"{shown} pair: student {student['name']} ({_millions(student['params'])} params), "
                f"teacher {teacher['name']} ({_millions(teacher['params'])} params)",
                header,
                "-" * len(header),
            ]
        s, t = row["student_latency"], row["teacher_latency"]
        s_ms = f"{s['median_ms']:.1f} ({s['p10_ms']:.1f}-{s['p90_ms']:.1f})"
        t_ms = f"{t['median_ms']:.1f} ({t['p10_ms']:.1f}-{t['p90_ms']:.1f})"
        lines.append(f"{row['batch_size']:>5}  {s_ms:>24}  {t_ms:>24}  {row['speedup']:>7.2f}x")
    if "target_met_batch1" in report:
        speedup = next(r["speedup"] for r in report["latency"] if r["pair"] == "reference" and r["batch_size"] == 1)
        verdict = "met" if report["target_met_batch1"] else "NOT met"
        lines.append(
            f"target: efficientbert >= {report['target_speedup_batch1']:.1f}x faster than BERT-base at batch 1: "
            f"{speedup:.2f}x ({verdict})"
        )
    kd = report.get("kd_throughput")
    if kd:
        lines += [
            "",
            f"KD throughput ({kd['pair']} pair: {kd['student']['name']} from {kd['teacher']['name']}, "
            f"batch {kd['batch_size']}, seq {kd['seq_len']}, median of {kd['steps']} steps):",
            f"  teacher forward (capture)        {kd['teacher_forward_ms']:9.1f} ms",
            f"  student step (fwd+loss+bwd+opt)  {kd['student_step_ms']:9.1f} ms",
            f"  KD step                          {kd['kd_step_ms']:9.1f} ms  = {kd['kd_sequences_per_s']:.1f} seq/s "
            f"(separately: {kd['separate_sequences_per_s']:.1f} seq/s)",
            f"  ratio (teacher + student) / KD   {kd['overhead_ratio']:9.2f}  (1 = no overhead)",
        ]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``report`` as JSON through a temporary sibling file and a rename; create parent directories."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
