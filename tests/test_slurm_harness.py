"""Run a tiny workflow through the project's Snakemake SLURM profile on a real one-node Slurm cluster."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_cluster import one_node_slurm, slurm_setup_error

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# Upper bound for one snakemake run; a hung snakemake ignores SIGTERM, so `timeout` sends SIGINT (then SIGKILL).
SNAKEMAKE_LIMIT_S = 300

SNAKEFILE = textwrap.dedent(
    """\
    rule join:
        input: "left.txt", "right.txt"
        output: "joined.txt"
        shell: "cat {input} > {output} && echo join ${{SLURM_JOB_ID:-}} >> {output}"

    rule left:
        output: "left.txt"
        shell: "echo left ${{SLURM_JOB_ID:-}} ${{SLURM_JOB_PARTITION:-}} > {output}"

    rule right:
        output: "right.txt"
        shell: "echo right ${{SLURM_JOB_ID:-}} ${{SLURM_JOB_PARTITION:-}} > {output}"
    """
)


def _fields(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_slurm_profile_runs_jobs_through_sbatch(tmp_path: Path) -> None:
    """Two independent rules and a join run as separate sbatch jobs via workflow/profiles/slurm."""
    reason = slurm_setup_error()
    if reason is not None:
        pytest.skip(f"cannot start a one-node Slurm cluster: {reason}")
    if shutil.which("timeout") is None:
        pytest.skip("coreutils `timeout` is needed to bound snakemake")
    assert (SLURM_PROFILE / "config.yaml").is_file()
    assert SNAKEMAKE.is_file(), f"snakemake not found next to {sys.executable}"

    project = tmp_path / "project"
    project.mkdir()
    (project / "Snakefile").write_text(SNAKEFILE)

    with one_node_slurm(tmp_path) as cluster:
        cmd = [
            "timeout",
            "-s",
            "INT",
            "-k",
            "30",
            str(SNAKEMAKE_LIMIT_S),
            str(SNAKEMAKE),
            "--workflow-profile",
            str(SLURM_PROFILE),
            "--slurm-keep-successful-logs",
        ]
        start = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=project,
            env=dict(cluster.env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SNAKEMAKE_LIMIT_S + 60,
        )
        elapsed = time.monotonic() - start
        log = proc.stdout + proc.stderr
        print(f"\nsnakemake via slurm took {elapsed:.1f} s (rc={proc.returncode})")
        assert proc.returncode != 124, f"snakemake hung and was interrupted after {SNAKEMAKE_LIMIT_S} s:\n{log}"
        assert proc.returncode == 0, log

    left, right, joined = (project / name for name in ("left.txt", "right.txt", "joined.txt"))
    for out in (left, right, joined):
        assert out.is_file(), f"missing {out.name}:\n{log}"

    (left_fields,) = _fields(left)
    (right_fields,) = _fields(right)
    joined_fields = _fields(joined)
    assert joined_fields[:2] == [left_fields, right_fields]

    # Each rule really ran inside its own sbatch allocation on the test partition.
    job_ids = [left_fields[1], right_fields[1], joined_fields[2][1]]
    assert all(job_id.isdigit() for job_id in job_ids), f"not run through sbatch: {job_ids}"
    assert len(set(job_ids)) == 3, f"expected three separate SLURM jobs, got {job_ids}"
    assert left_fields[2] == right_fields[2] == cluster.partition
    assert (project / ".snakemake" / "slurm_logs").is_dir()
