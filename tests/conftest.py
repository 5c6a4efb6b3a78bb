"""Shared fixtures: offline environment, the project copied into a fresh git + DVC repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent

# Tests never touch the network; stage subprocesses inherit this.
for _var, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "PYTHONHASHSEED": "0",
}.items():
    os.environ[_var] = _value
for _var in ("MLFLOW_TRACKING_URI", "EFFBERT_PARENT_RUN_ID", "EFFBERT_TRACKING_SOCKET", "DVC_ROOT", "EFFBERT_ROOT"):
    os.environ.pop(_var, None)


def project_files() -> list[str]:
    """The files a clean clone has: tracked plus untracked-but-not-ignored."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def copy_project(dest: Path) -> Path:
    """Copy the project into ``dest`` and make it a git repository with one commit (DVC is already inited)."""
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    git = ["git", "-c", "user.email=test@effbert", "-c", "user.name=effbert tests"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "test copy"], cwd=dest, check=True)
    return dest


STAGE_LINE = re.compile(r"^  (\S+@?\S*)\s+(FINISHED|FAILED|RUNNING)\s+([\d.]+) s$", re.M)


def stages_run(stdout: str) -> dict[str, float]:
    """The stages and their wall seconds from the "Stages run:" table `effbert run` prints (all must have finished)."""
    assert "Stages run:" in stdout, stdout[-3000:]
    block = stdout.split("Stages run:", 1)[1]
    found = {name: float(sec) for name, status, sec in STAGE_LINE.findall(block)}
    assert all(status == "FINISHED" for _, status, _ in STAGE_LINE.findall(block)), block
    return found


def run_cli(args: list[str], cwd: Path, timeout: int = 900, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ``effbert`` console script (or another venv tool) in ``cwd``."""
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project (git + DVC) in a temporary directory."""
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One copy of the project per test module, for tests that share a smoke run."""
    yield copy_project(tmp_path_factory.mktemp("smoke") / "project")


def require_shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present (tests read the real data files there)")
    return SHARED_DATA


@pytest.fixture
def single_torch_thread() -> Iterator[None]:
    """Run torch single-threaded inside the test: tiny models gain nothing from threads, and on a busy machine
    oversubscribed intra-op threads make them 10-20x slower. The previous thread count is restored."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_bert_classifier(**config: Any) -> Any:
    """A seeded small BERT sequence classifier in inference mode (the method packages' unit tests): vocabulary 50,
    hidden 16, 4 layers, 2 heads, FFN 32, 32 positions and 2 labels, unless ``config`` says otherwise."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    shape: dict[str, Any] = {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 32,
        "num_labels": 2,
    }
    return BertForSequenceClassification(BertConfig(**{**shape, **config})).eval()


def corrupt(path: Path, how: str) -> str:
    """Damage a file as a disk or a kill does: ``flip`` one bit in its middle or ``truncate`` it to half its size.
    Returns the reason `effbert.integrity.damage` gives for it."""
    data = bytearray(path.read_bytes())
    size = len(data)
    if how == "flip":
        data[size // 2] ^= 0x01
    else:
        del data[size // 2 :]
    path.write_bytes(bytes(data))
    if how == "flip":
        return "changed since it was written (its sha256 differs from digests.json)"
    return f"cut short or grown ({size // 2} bytes, {size} written)"
