"""Training stages on several processes: ``launch.train_gpus`` > 1 relaunches a training stage's command under
``torchrun`` (one process per GPU; on a CPU, gloo processes), and the Hugging Face Trainer inside each recipe runs
distributed data parallel unchanged.

The stage command relaunches itself (:func:`relaunch`), so DVC, Snakemake and the SLURM profile run the same
``effbert <stage> ...`` line whatever the process count. With ``launch.nodes`` > 1 the stage must run inside a SLURM
allocation of that many nodes (the SLURM profile asks for them, workflow/rules/dvc_stages.smk): it relaunches as
``srun`` one ``torchrun`` per node, meeting at a c10d rendezvous on the allocation's first node
(:func:`multi_node_command`). Every process trains; the first (rank 0) alone writes the
stage's outputs and its MLflow run (`effbert.runtime.stage_context` gives the others scratch folders and a run
that records nothing). ``per_device`` batch sizes are the params' ``batch_size`` values, so the global batch is
``train_gpus x batch_size``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
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

POOLED_COMMANDS = frozenset({"search-stage1", "search-stage2"})
"""The stage commands that evaluate candidates in a pool of ``search.workers`` spawned processes."""

GPU_COMMANDS = DDP_COMMANDS | POOLED_COMMANDS
"""The stage commands that train (a SLURM job with GPUs: workflow/rules/dvc_stages.smk)."""

UNTRAINED_VARIANTS = {"final-distill-general": frozenset({"plus"})}
"""Command lines of a training command that train nothing: EfficientBERT+'s start only cuts the winner out of
stage 3's weight-sharing supernet (``final-distill-general --variant plus``), so it runs as one process on a CPU."""

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


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of option ``name`` (``--params``) on a stage command line, or None when it is not given."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def _trains_nothing(args: Sequence[str]) -> bool:
    return _option(args[1:], "--variant") in UNTRAINED_VARIANTS.get(args[0], frozenset())


def trains(args: Sequence[str]) -> bool:
    """Whether the stage command line ``args`` (``["final-distill", "--task", ...]``) trains: a GPU job under SLURM."""
    return bool(args) and args[0] in GPU_COMMANDS and not _trains_nothing(args)


def trains_distributed(args: Sequence[str]) -> bool:
    """Whether the stage command line ``args`` trains through the Trainer, on ``launch.train_gpus`` processes."""
    return bool(args) and args[0] in DDP_COMMANDS and not _trains_nothing(args)


def relaunch(args: Sequence[str]) -> tuple[list[str], dict[str, str]] | None:
    """The ``torchrun`` command line that runs ``effbert <args>`` on ``launch.train_gpus`` processes and the
    environment it adds (on a machine without CUDA: Accelerate's multi-CPU mode, gloo), or None when the command
    runs as it is (not a training stage, one process, already under ``torchrun``, or ``--help``)."""
    if not trains_distributed(args) or RANK_ENV in os.environ:
        return None
    if any(a in ("-h", "--help") for a in args):
        return None
    from effbert.params import load

    launch = load(Path(_option(args[1:], "--params") or "params.yaml")).launch
    processes = launch.train_gpus
    if processes <= 1 and launch.nodes <= 1:
        return None
    import torch

    env = {} if torch.cuda.is_available() else {"ACCELERATE_USE_CPU": "true"}
    if launch.nodes > 1:
        return multi_node_command(args, launch.nodes, processes, os.environ), env
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


RENDEZVOUS_PORT = 29400
"""The port of the multi-node rendezvous on the allocation's first node."""


def multi_node_command(args: Sequence[str], nodes: int, processes: int, environ: Mapping[str, str]) -> list[str]:
    """``srun`` one ``torchrun`` per node of this SLURM job (``processes`` each), meeting at a c10d rendezvous on
    the job's first node, keyed by the job id.

    Args:
        args: the stage command line after ``effbert``.
        nodes: ``launch.nodes``.
        processes: ``launch.train_gpus`` (per node).
        environ: the environment (``SLURM_JOB_ID``, ``SLURM_JOB_NODELIST``, ``SLURM_NNODES``).

    Raises:
        EffbertError: not inside a SLURM job of ``nodes`` nodes, or no ``srun``/``scontrol``.
    """
    import shutil
    import subprocess

    from effbert.errors import EffbertError

    job, nodelist = environ.get("SLURM_JOB_ID"), environ.get("SLURM_JOB_NODELIST")
    if not job or not nodelist:
        raise EffbertError(
            f"launch.nodes={nodes}: a multi-node training stage runs inside a SLURM job of {nodes} nodes (run the "
            "pipeline with the SLURM profile: effbert run --engine snakemake --profile workflow/profiles/slurm); "
            "set launch.nodes: 1 otherwise"
        )
    if int(environ.get("SLURM_NNODES", "1")) < nodes:
        raise EffbertError(f"launch.nodes={nodes}: this SLURM job has {environ.get('SLURM_NNODES', '1')} node(s)")
    srun, scontrol = shutil.which("srun"), shutil.which("scontrol")
    if srun is None or scontrol is None:
        raise EffbertError(f"launch.nodes={nodes}: srun and scontrol (SLURM) must be on PATH")
    hosts = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    head = hosts.stdout.split()[0]
    return [
        srun,
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nodes}",
        f"--nproc-per-node={processes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={head}:{RENDEZVOUS_PORT}",
        f"--rdzv-id=effbert-{job}",
        "-m",
        "effbert.cli",
        *args,
    ]


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
