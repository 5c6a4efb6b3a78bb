"""How a process computes: seeded (:func:`seed_everything`), on CUDA when present and on the CPU otherwise
(:func:`device`), with a chosen number of CPU threads (:func:`set_threads`)."""

from __future__ import annotations

import random


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
