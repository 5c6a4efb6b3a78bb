"""A full disk ends a stage in one line naming the path, leaves no partial output, and a rerun with space completes.

Two ways to fill a disk: a tiny tmpfs mounted where the stage writes (needs root: skipped, saying why, where mounting
is impossible), and, everywhere, the stage's own write patched inside the stage process to raise what a full disk
raises (ENOSPC without a file name, as Arrow's close does; EDQUOT naming the file; safetensors' text).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
import yaml

from effbert.diskspace import disk_full
from effbert.integrity import damage
from tests.conftest import BIN, run_cli

PREPARE = ["prepare-data", "--task", "sst2", "--out"]

FULL_DISK = textwrap.dedent(
    """
    import errno, sys
    import datasets

    def full(self, path, *args, **kwargs):
        raise {error}

    datasets.Dataset.save_to_disk = full
    from effbert.cli import main

    sys.argv = ["effbert", *sys.argv[1:]]
    main()
    """
)


@cache
def _mount_problem() -> str | None:
    """Why a tmpfs cannot be mounted here (None when it can)."""
    if os.geteuid() != 0:
        return f"mounting a tmpfs needs root (the tests run as uid {os.geteuid()})"
    probe = Path(f"/tmp/effbert-tmpfs-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
    subprocess.run(["umount", str(probe)], capture_output=True)
    probe.rmdir()
    return None if mounted.returncode == 0 else f"mount -t tmpfs failed here: {mounted.stderr.decode().strip()}"


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the block (skips the test where mounting is impossible)."""
    problem = _mount_problem()
    if problem:
        pytest.skip(problem)
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def resize(path: Path, size: str) -> None:
    """Grow the tmpfs mounted on ``path`` to ``size``, keeping what is in it (space freed)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def _smoke(project: Path) -> None:
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("effbert: error:")]


FULL_DISK_ERRORS = {  # what the stage's write raises -> what the one line names
    'OSError(errno.ENOSPC, "No space left on device")': "no space left on device writing {out}",
    'OSError(errno.EDQUOT, "Disk quota exceeded", path + "/data-00000-of-00001.arrow")': (
        "disk quota exceeded writing {out}/train/data-00000-of-00001.arrow"
    ),
    'RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")': (
        "no space left on device writing {out}"
    ),
}


def test_a_write_that_hits_a_full_disk_fails_in_one_line_and_leaves_nothing(project: Path) -> None:
    """No root needed: inside the stage process, its write raises what a full disk raises (ENOSPC naming no file,
    as Arrow's close does; EDQUOT naming the file in the temporary output; safetensors' text)."""
    _smoke(project)
    out = "results/prepare_data/sst2"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for error, shown in FULL_DISK_ERRORS.items():
        script = FULL_DISK.format(error=error)
        command = [sys.executable, "-c", script, *PREPARE, out]
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
        assert _error_lines(result) == [f"effbert: error: {shown.format(out=out)}: free space and rerun"]
        assert not (project / out).exists() and not list((project / "results/prepare_data").glob(".*partial*"))
    rerun = run_cli(["effbert", *PREPARE, out], project)  # the same command, with space
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert damage(project / out) is None


def test_a_stage_output_on_a_full_tmpfs_fails_in_one_line_and_a_rerun_with_space_completes(
    project: Path, tmp_path: Path
) -> None:
    _smoke(project)
    mount = tmp_path / "disk"
    out = mount / "sst2"  # the sample's prepared SST-2 takes about 600 KB
    with tmpfs(mount, "128k"):
        result = run_cli(["effbert", *PREPARE, str(out)], project)
        assert _error_lines(result) == [f"effbert: error: no space left on device writing {out}: free space and rerun"]
        assert sorted(p.name for p in mount.iterdir()) == []  # no partial output, no half-written file
        resize(mount, "4m")
        rerun = run_cli(["effbert", *PREPARE, str(out)], project)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert damage(out) is None and (out / "lineage.json").is_file()


def test_torch_save_on_a_full_disk_is_recognised_though_it_names_no_cause(tmp_path: Path) -> None:
    """``torch.save`` on a full disk raises a bare RuntimeError (``unexpected pos ...``): it counts as a full disk
    because the filesystem of a watched folder is full."""
    import torch

    with tmpfs(tmp_path / "disk", "64k") as disk:
        try:
            torch.save({"w": torch.zeros(100_000)}, disk / "optimizer.pt")
        except RuntimeError as err:
            full = disk_full(err, {disk: Path("results/models/x")})
            unrelated = disk_full(RuntimeError("unexpected pos 576 vs 534"), {tmp_path / "elsewhere": tmp_path})
        else:
            pytest.fail("torch.save fitted into 64k")
    assert str(full) == "no space left on device writing results/models/x: free space and rerun"
    assert unrelated is None
    assert disk_full(OSError(errno.EPERM, "Operation not permitted"), {}) is None


@pytest.mark.slow
def test_a_training_stage_whose_checkpoints_fill_the_disk_fails_in_one_line_and_resumes_with_space(
    project: Path,
) -> None:
    """``.effbert/checkpoints`` on a tmpfs too small for one checkpoint (the teacher's weights fit, its optimizer
    state does not): one line, no model; with space (the tmpfs grown, its content kept) the unfinished checkpoint is
    removed with one warning line and training completes."""
    _smoke(project)
    prepared = run_cli(["effbert", *PREPARE, "results/prepare_data/sst2"], project)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    finetune = ["effbert", "finetune-teacher", "--task", "sst2", "--data", "results/prepare_data/sst2"]
    finetune += ["--model-out", "results/models/teacher/sst2", "--report-out", "results/finetune_teacher/sst2"]
    checkpoints = project / ".effbert" / "checkpoints"
    with tmpfs(checkpoints, "120m"):
        result = run_cli(finetune, project)
        assert _error_lines(result) == [
            "effbert: error: no space left on device writing .effbert/checkpoints: free space and rerun"
        ]
        assert not (project / "results/models/teacher/sst2").exists()
        assert not list((project / "results/models/teacher").glob(".*partial*"))
        (unfinished,) = checkpoints.rglob("checkpoint-*")  # the full disk struck while it was being written
        resize(checkpoints, "1g")
        rerun = run_cli(finetune, project)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (project / "results/models/teacher/sst2/model.safetensors").is_file()
    assert f"damaged checkpoint removed: {unfinished / 'digests.json'}: missing" in rerun.stderr
