"""The smoke DAG through `effbert run --engine snakemake` with the slurm profile, on a real one-node cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from effbert import dag
from tests.conftest import BIN, ROOT, run_cli, stages_run

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_cluster import one_node_slurm, slurm_setup_error


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(2000)
def test_smoke_dag_runs_as_slurm_jobs(project: Path, tmp_path: Path) -> None:
    reason = slurm_setup_error()
    if reason is not None:
        pytest.skip(f"cannot start a one-node Slurm cluster: {reason}")
    with one_node_slurm(tmp_path) as cluster:
        result = run_cli(
            [
                "timeout",
                "-s",
                "INT",
                "-k",
                "30",
                "1500",  # the five methods' stages of one task, as sbatch jobs
                str(BIN / "effbert"),  # the cluster's environment replaces PATH
                "run",
                "--params",
                "params/smoke.yaml",
                "--set",  # one task keeps every kind of stage and the suite's time in check
                "tasks=[sst2]",
                "--set",  # the variants run the main student's commands (the smoke DAG tests run them)
                "variants=[]",
                "--engine",
                "snakemake",
                "--profile",
                str(ROOT / "workflow/profiles/slurm"),
            ],
            project,
            timeout=1600,
            **cluster.env,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        jobs = cluster.run("squeue", "--noheader", "--states=all", "--format=%j")
    # every stage of the one-task DAG ran (code_digest, prepare_data, ..., search_stage1..3, final_distill, evaluate
    # x {teacher, student}, ..., report), each as an sbatch job (squeue keeps finished jobs listed for an hour)
    expected = {s.name for s in dag.load_stages(project) if not s.optional}
    assert set(stages_run(result.stdout)) == expected
    assert jobs.returncode == 0
    assert len(jobs.stdout.split()) >= len(expected), jobs.stdout
    record = json.loads((project / "results/eval/teacher/sst2/metrics.json").read_text())
    assert record["rows"]["dev"] == 48
    # dvc commit -f ran after Snakemake: DVC agrees that everything is up to date
    status = run_cli(["dvc", "status", "dvc.yaml", "--json"], project)
    assert json.loads(status.stdout) == {}, status.stdout
    lineage = json.loads((project / "results/eval/teacher/sst2/lineage.json").read_text())
    assert lineage["slurm_job_id"], "the stage records the SLURM job that produced it"
    student = json.loads((project / "results/models/student/sst2/lineage.json").read_text())
    assert student["slurm_job_id"] and student["slurm_job_id"] != lineage["slurm_job_id"]
