# One Snakemake rule per resolved DVC stage (foreach/matrix expanded, ${} interpolated by DVC itself).
# Inputs map onto the producing stages' outputs (effbert.dag.snakemake_inputs); tracked params become rule
# params, so Snakemake's params trigger fires exactly when DVC's does. Training rules ask for
# `gpu=config["train_gpus"]` GPUs when that is set (`--config train_gpus=1`; see workflow/profiles/slurm).
# A rule's threads are its stage's CPU threads from params (effbert.dag.StageSpec.threads; a null or absent
# `threads` key and every stage that times models: all of this machine's cores, which Snakemake caps at --cores),
# so independent stages run side by side only where they fit, and Snakemake hands the count on as OMP_NUM_THREADS.
import os
from pathlib import Path

from effbert import dag

ROOT = Path(workflow.basedir).resolve()
STAGES = dag.load_stages(ROOT)
os.environ.setdefault("EFFBERT_ROOT", str(ROOT))
TRAIN_GPUS = int(config.get("train_gpus", 0))
CORES = os.cpu_count() or 1
# launch.nodes > 1: a training job gets that many nodes, one task each (effbert.launch srun's one torchrun per node)
TRAIN_NODES = dag.train_nodes(ROOT)


def _output(path):
    return directory(path) if dag.is_directory_out(path) else path


for _stage in STAGES:
    rule:
        name: _stage.rule
        input: dag.snakemake_inputs(_stage, STAGES, ROOT)
        output: [_output(out) for out in _stage.outs]
        threads: _stage.threads(CORES)
        params:
            _cmd=_stage.cmd,
            **{key.replace(".", "__"): repr(value) for key, value in _stage.params.items()},
        resources:
            **({"gpu": TRAIN_GPUS * (TRAIN_NODES if _stage.is_ddp else 1)} if TRAIN_GPUS and _stage.is_training else {}),
            **({"nodes": TRAIN_NODES, "tasks": TRAIN_NODES} if TRAIN_NODES > 1 and _stage.is_ddp else {}),
        message: f"{_stage.name}"
        shell: "{params._cmd}"


onstart:
    from effbert import tracking

    if not os.environ.get(tracking.PARENT_ENV):
        shell("echo 'snakemake: no parent MLflow run (use `effbert run --engine snakemake` for one)'")
