"""How a process computes: seeded (:func:`seed_everything`), on CUDA when present and on the CPU otherwise
(:func:`device`), with a chosen number of CPU threads (:func:`set_threads`), in fp32 or under bf16 autocast with
fp32 weights (:func:`use_bf16`, :func:`autocast`)."""

from __future__ import annotations

import contextlib
import functools
import random
from typing import Any, Literal

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU feature flags (``/proc/cpuinfo``) of native bf16 arithmetic: with one of them bf16 autocast is fast."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels where cheap."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def device() -> str:
    """``cuda`` when a GPU is present, else ``cpu``: never hard-coded."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    """Set torch's CPU intra-op threads (None: leave torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 feature flags of this CPU (:data:`BF16_CPU_FLAGS` found in ``/proc/cpuinfo``); empty when
    there are none or the file is not there (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)
    except OSError:
        pass
    return ()


def bf16_native(dev: str) -> bool:
    """Whether ``dev`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with :data:`BF16_CPU_FLAGS`."""
    import torch

    if dev.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(cpu_bf16_flags())


def use_bf16(setting: bool | Literal["auto"], dev: str | None = None) -> bool:
    """The params key ``bf16`` resolved on this machine: ``auto`` = on where bf16 is native (:func:`bf16_native`)."""
    if setting == "auto":
        return bf16_native(dev or device())
    return bool(setting)


def autocast(enabled: bool, dev: str) -> Any:
    """bf16 autocast on ``dev`` (weights stay fp32) when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type="cuda" if dev.startswith("cuda") else "cpu", dtype=torch.bfloat16)
