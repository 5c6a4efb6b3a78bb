"""The latency protocol: one measurement procedure for every latency figure the project reports.

The protocol (:func:`measure_latency` for one model, :func:`compare_latency` for models measured side by side):

1. the torch intra-op thread count is set for the measurement and restored afterwards;
2. the inputs are fixed and deterministic: ``input_ids`` drawn from a generator seeded with 0 within the vocabulary,
   ``attention_mask`` all ones, ``token_type_ids`` zeros, shape (batch, seq_len);
3. models run in ``eval()`` mode (their training flag is restored afterwards) under ``torch.inference_mode()``;
4. ``warmup`` untimed forward passes, then at least ``runs`` (>= :data:`MIN_RUNS`) timed ones, each timed with
   ``time.perf_counter`` around a single forward pass (``torch.cuda.synchronize`` before and after on CUDA);
5. the figure is the median; p10 / p90, min and max describe the spread.

:func:`compare_latency` interleaves the models in rounds (order alternating between rounds) so that load from other
processes hits every model alike and ratios are taken side by side. Every :class:`LatencyResult` carries the
:func:`machine_description` of where it was measured. Used by ``effbert bench`` (`effbert.measure.benchmark`), the
search's latency budget, the export (ONNX Runtime vs PyTorch) and the report. No file or tracking I/O.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

MIN_RUNS = 20
"""The protocol's minimum number of timed runs per model and batch size."""


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
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train/eval mode inside the block and restore its previous flag on exit."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def config_int(model: nn.Module, name: str) -> int | None:
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


def shared_inputs(
    models: Sequence[nn.Module], batch_size: int, seq_len: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Inputs every model in ``models`` accepts: ids below the smallest vocabulary, T within every position table."""
    vocabs = [v for v in (config_int(m, "vocab_size") for m in models) if v is not None]
    positions = [p for p in (config_int(m, "max_position_embeddings") for m in models) if p is not None]
    if positions and seq_len > min(positions):
        raise ValueError(f"seq_len {seq_len} exceeds the models' max_position_embeddings ({min(positions)})")
    return make_inputs(batch_size, seq_len, min(vocabs) if vocabs else 1000, device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], count: int, device: torch.device) -> list[float]:
    """Milliseconds of ``count`` calls of ``fn``, each timed alone (synchronised on CUDA)."""
    times = []
    for _ in range(count):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


Key = TypeVar("Key")


def rotated_times(
    operations: Mapping[Key, Callable[[], object]], warmup: int, steps: int, device: torch.device
) -> dict[Key, list[float]]:
    """Milliseconds of ``steps`` calls of each operation after ``warmup`` untimed ones, the order rotating per step
    (drift in the machine's speed hits every operation alike)."""
    keys = list(operations)
    for key in keys:
        time_calls(operations[key], warmup, device)
    times: dict[Key, list[float]] = {key: [] for key in keys}
    for step in range(steps):
        for offset in range(len(keys)):
            key = keys[(step + offset) % len(keys)]
            times[key] += time_calls(operations[key], 1, device)
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
    inputs = shared_inputs(list(models.values()), batch_size, seq_len, target)
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
                time_calls(calls[name], warmup, target)
            for round_index in range(rounds):
                for name in names if round_index % 2 == 0 else reversed(names):
                    if len(names) > 1:
                        time_calls(calls[name], 1, target)  # re-warm after the other models ran
                    times[name] += time_calls(calls[name], per_round, target)
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
