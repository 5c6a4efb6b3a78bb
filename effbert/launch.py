"""Training stages on several processes: ``launch.train_gpus`` > 1 relaunches a training stage's command under
``torchrun`` (one process per GPU; on a CPU, gloo processes), and the Hugging Face Trainer inside each recipe runs
distributed data parallel unchanged.

The stage command relaunches itself (:func:`relaunch`), so DVC, Snakemake and the SLURM profile run the same
``effbert <stage> ...`` line whatever the process count. Every process trains; the first (rank 0) alone writes the
stage's outputs and its MLflow run (`effbert.runtime.stage_context` gives the others scratch folders and a run
that records nothing). ``per_device`` batch sizes are the params' ``batch_size`` values, so the global batch is
``train_gpus x batch_size``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

DDP_COMMANDS = frozenset(
    {
        "finetune-teacher",
        "warmup-kd",
        "search-stage3",
        "final-distill-general",
        "final-distill",
        "tinybert-general",
        "tinybert",
        "theseus",
        "dynabert",
        "fastbert",
    }
)
"""The stage commands that train through the Trainer and relaunch under ``torchrun``. The search's stages 1 and 2
are not among them: they already spread candidates over ``search.workers`` processes."""

GPU_COMMANDS = DDP_COMMANDS | {"search-stage1", "search-stage2"}
"""The stage commands that train (a SLURM job with GPUs: workflow/rules/dvc_stages.smk)."""

RANK_ENV = "RANK"
"""Set by ``torchrun`` in every process it starts (the global rank)."""


def rank() -> int:
    """This process's global rank under ``torchrun`` (0 when not distributed)."""
    return int(os.environ.get(RANK_ENV, "0"))


def is_main_process() -> bool:
    """Whether this process writes outputs and records runs (rank 0, or no ``torchrun``)."""
    return rank() == 0


def world_size() -> int:
    """The number of processes training together (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _params_file(args: Sequence[str]) -> Path:
    """The ``--params`` value of a stage command line (``params.yaml`` by default)."""
    for i, arg in enumerate(args):
        if arg == "--params" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--params="):
            return Path(arg.split("=", 1)[1])
    return Path("params.yaml")


def relaunch(args: Sequence[str]) -> tuple[list[str], dict[str, str]] | None:
    """The ``torchrun`` command line that runs ``effbert <args>`` on ``launch.train_gpus`` processes and the
    environment it adds (on a machine without CUDA: Accelerate's multi-CPU mode, gloo), or None when the command
    runs as it is (not a training stage, one process, already under ``torchrun``, or ``--help``)."""
    if not args or args[0] not in DDP_COMMANDS or RANK_ENV in os.environ:
        return None
    if any(a in ("-h", "--help") for a in args):
        return None
    from effbert.params import load

    processes = load(_params_file(args[1:])).launch.train_gpus
    if processes <= 1:
        return None
    import torch

    env = {} if torch.cuda.is_available() else {"ACCELERATE_USE_CPU": "true"}
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "effbert.cli",
        *args,
    ]
    return argv, env


def set_local_device() -> None:
    """Under ``torchrun`` on CUDA, make ``cuda`` mean this process's GPU (``LOCAL_RANK``)."""
    if "LOCAL_RANK" not in os.environ:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def barrier() -> None:
    """Wait for every process of a distributed stage (nothing to wait for in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
