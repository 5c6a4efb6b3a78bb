"""The workspace survives what a killed run leaves behind, and two runs never share it: a broken ``dvc.lock`` is
repaired before DVC reads it; a second `effbert run` is refused while the first holds the run lock, which a killed
run leaves free.

The pipeline tests run `effbert run` (the same `pipeline.run` as always) on a one-stage ``dvc.yaml`` in a fresh git +
DVC repository, so it takes seconds and runs in `make test`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from effbert import workspace
from tests.conftest import BIN, ROOT, run_cli

ONE_STAGE = "stages:\n  hello:\n    cmd: echo hello > out.txt\n    outs:\n      - out.txt\n"


@pytest.fixture
def tiny_workspace(tmp_path: Path) -> Path:
    """A git + DVC repository with a one-stage dvc.yaml and the smoke profile."""
    root = tmp_path / "ws"
    (root / "params").mkdir(parents=True)
    shutil.copy(ROOT / "params" / "smoke.yaml", root / "params" / "smoke.yaml")
    (root / "dvc.yaml").write_text(ONE_STAGE, encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=root, check=True)
    return root


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    result = run_cli(["effbert", "run", "--params", "params/smoke.yaml"], root, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("effbert: warning:")]


def test_a_truncated_or_garbage_lock_file_is_repaired_and_the_run_proceeds(tiny_workspace: Path) -> None:
    root = tiny_workspace
    lock, good = root / "dvc.lock", root / workspace.GOOD_LOCKFILE
    assert not _warnings(_run(root))
    assert workspace.lockfile_problem(lock) is None and good.read_bytes() == lock.read_bytes()
    valid = lock.read_bytes()

    lock.write_bytes(b"")  # what a kill -9 while DVC rewrites it leaves
    result = _run(root)
    assert _warnings(result) == [
        f"effbert: warning: {lock} was empty: restored the last good copy ({workspace.GOOD_LOCKFILE})"
    ]
    assert lock.read_bytes() == valid and (root / "out.txt").read_text() == "hello\n"

    good.unlink()  # no good copy kept: the broken file is moved aside and DVC writes a new one
    lock.write_bytes(b"\x00\xff\xfeschema: '2.0'\nstages: [\n")
    result = _run(root)
    (aside,) = root.glob("dvc.lock.corrupt-*")
    assert _warnings(result) == [
        f"effbert: warning: {lock} was unreadable (not valid YAML) and no good copy was kept: moved it to "
        f"{aside.name}; DVC rebuilds it from its run cache and the outputs present"
    ]
    assert aside.read_bytes().startswith(b"\x00\xff\xfe")
    assert workspace.lockfile_problem(lock) is None and "hello:" in lock.read_text()
    assert good.read_bytes() == lock.read_bytes()  # refreshed after the successful run


def test_lockfile_problems_are_named(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    schema = "not a DVC lock file (its schema check failed)"
    for text, problem in (
        ("", "empty"),
        ("\n  \n", "empty"),
        ("stages: [\n", "unreadable (not valid YAML)"),
        ("schema: '2.0'\nstages:\n  hello:\n    cmd: 3\n    bogus: 1\n", schema),
        ("- a list\n", schema),
        ("schema: '2.0'\nstages:\n  hello:\n    cmd: echo\n", None),
    ):
        lock.write_text(text, encoding="utf-8")
        assert workspace.lockfile_problem(lock) == problem, text


def test_a_missing_lock_file_is_left_to_dvc(tmp_path: Path) -> None:
    assert workspace.repair_lockfile(tmp_path) is None
    assert not (tmp_path / "dvc.lock").exists() and not (tmp_path / workspace.GOOD_LOCKFILE).exists()


def test_a_broken_good_copy_is_not_restored(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text("", encoding="utf-8")
    (tmp_path / ".effbert").mkdir()
    (tmp_path / workspace.GOOD_LOCKFILE).write_text("stages: [\n", encoding="utf-8")
    warning = workspace.repair_lockfile(tmp_path)
    assert warning is not None and "no good copy was kept" in warning
    assert not (tmp_path / "dvc.lock").exists() and len(list(tmp_path.glob("dvc.lock.corrupt-*"))) == 1


HOLD = """
import sys, time
from pathlib import Path
from effbert import workspace
with workspace.run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder(tiny_workspace: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the workspace's run lock (killed at the end if the test did not kill it)."""
    holder = subprocess.Popen([str(BIN / "python"), "-c", HOLD, str(tiny_workspace)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    yield holder
    holder.kill()
    holder.wait()


def test_a_second_run_is_refused_naming_the_holder(tiny_workspace: Path, lock_holder: subprocess.Popen[str]) -> None:
    root = tiny_workspace
    record = json.loads((root / workspace.RUN_LOCK).read_text())
    assert record["pid"] == lock_holder.pid and record["host"] == socket.gethostname()
    holder = f"host {record['host']}, pid {lock_holder.pid}, started {record['started']}"
    for engine in ("dvc", "snakemake"):
        started = time.perf_counter()
        result = run_cli(["effbert", "run", "--params", "params/smoke.yaml", "--engine", engine], root, timeout=120)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.splitlines() == [
            f"effbert: error: {root}: another effbert run is using this workspace ({holder}); "
            f"wait for it to end or stop it (lock: {workspace.RUN_LOCK})"
        ]
        assert time.perf_counter() - started < 60  # refused at once, not after waiting
    assert not (root / "params.yaml").exists() and not (root / "mlflow.db").exists()  # nothing written
    assert datetime.fromisoformat(record["started"]).tzinfo is not None

    lock_holder.send_signal(signal.SIGKILL)  # the holder dies without releasing: its record stays in the file
    lock_holder.wait()
    assert json.loads((root / workspace.RUN_LOCK).read_text())["pid"] == lock_holder.pid
    result = run_cli(["effbert", "run", "--params", "params/smoke.yaml", "--dry-run"], root, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"effbert: taking over {workspace.RUN_LOCK}, left by a run that is no longer running ({holder})"
    ]
    assert (root / workspace.RUN_LOCK).read_text() == ""  # released cleanly: the next run takes no one's place
    with workspace.run_lock(root) as taken_over:
        assert taken_over is None
        assert json.loads((root / workspace.RUN_LOCK).read_text())["pid"] == os.getpid()


TOY_STAGE = """stages:
  prepare_toy:
    cmd: python make_toy.py
    outs:
      - results/prepare_data/toy
"""
MAKE_TOY = """from pathlib import Path
from effbert.integrity import seal

out = Path("results/prepare_data/toy")
(out / "train").mkdir(parents=True)
(out / "train" / "data-00000-of-00001.arrow").write_bytes(bytes(range(256)) * 64)
seal(out, stage="prepare_toy")
with open("runs.log", "a") as fh:
    fh.write("ran\\n")
"""


@pytest.mark.parametrize("how", ["flipped in place, size and mtime kept", "truncated"])
def test_a_damaged_sealed_output_is_removed_and_its_stage_runs_again(tiny_workspace: Path, how: str) -> None:
    """DVC trusts an output whose size and mtime did not change (its state database), so a bit flipped in place
    would be used as it is; `effbert run` checks the sealed outputs first and removes a damaged one, which the engine
    then recomputes."""
    from effbert.integrity import damage

    root = tiny_workspace
    (root / "dvc.yaml").write_text(TOY_STAGE, encoding="utf-8")
    (root / "make_toy.py").write_text(MAKE_TOY, encoding="utf-8")
    assert not _warnings(_run(root))
    arrow = root / "results/prepare_data/toy/train/data-00000-of-00001.arrow"
    original, stat = arrow.read_bytes(), arrow.stat()
    arrow.chmod(0o644)  # DVC may leave its outputs read-only
    data = bytearray(original)
    if how == "truncated":
        del data[100:]
    else:
        data[1000] ^= 0x01
    arrow.write_bytes(bytes(data))
    if how != "truncated":
        os.utime(arrow, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = _run(root)
    reason = "cut short or grown (100 bytes, 16384 written)" if how == "truncated" else "changed since it was written"
    (warning,) = _warnings(result)
    assert warning.startswith(f"effbert: warning: {arrow.relative_to(root)}: {reason}")
    assert warning.endswith(": removed results/prepare_data/toy so that prepare_toy runs again")
    assert (root / "runs.log").read_text().splitlines() == ["ran", "ran"]
    assert arrow.read_bytes() == original and damage(arrow.parents[1]) is None
