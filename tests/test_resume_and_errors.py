"""A killed teacher fine-tuning resumes from its last checkpoint; bad input fails cleanly with nothing written."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, run_cli

FINETUNE = ["effbert", "finetune-teacher", "--task", "sst2", "--data", "results/prepare_data/sst2"]


def _prepare(project: Path, **finetune: object) -> None:
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    raw["finetune_teacher"].update(finetune)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    result = run_cli(["effbert", "prepare-data", "--task", "sst2", "--out", "results/prepare_data/sst2"], project)
    assert result.returncode == 0, result.stderr[-2000:]


def _outs(name: str) -> list[str]:
    return ["--model-out", f"results/{name}/model", "--report-out", f"results/{name}/report"]


@pytest.mark.slow
def test_killed_finetune_resumes_and_matches_uninterrupted_run(project: Path) -> None:
    import torch
    from safetensors.torch import load_file

    _prepare(project, epochs=8.0, eval_steps=2, threads=1)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [*FINETUNE, *_outs("killed")],
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = project / ".effbert/checkpoints/finetune_teacher/sst2"
    deadline = time.time() + 300
    while time.time() < deadline and not list(ckpts.glob("*/checkpoint-4/trainer_state.json")):
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (project / "results/killed/model").exists()  # no half-written output
    resumed = run_cli([*FINETUNE, *_outs("killed")], project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    assert not list(ckpts.glob("*")), "checkpoints are removed once the model is saved"
    assert not list((project / "results/killed").glob(".*partial*"))
    straight = run_cli([*FINETUNE, *_outs("straight")], project)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert not (project / "results/straight/model/training_args.bin").exists()  # the model only: see the stage
    a = load_file(str(project / "results/killed/model/model.safetensors"))
    b = load_file(str(project / "results/straight/model/model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_malformed_data_fails_with_one_line_and_no_output(project: Path) -> None:
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    train = project / "data/sample/glue/SST-2/train.tsv"
    lines = train.read_text().splitlines()
    lines[5] = lines[5].rsplit("\t", 1)[0] + "\tpositive"
    train.write_text("\n".join(lines) + "\n")
    result = run_cli(["effbert", "prepare-data", "--task", "sst2", "--out", "results/prepare_data/sst2"], project)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("effbert: error:")]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    assert f"{train}:6:" in error_lines[0] and "positive" in error_lines[0]
    assert not (project / "results/prepare_data/sst2").exists()
    assert not list((project / "results/prepare_data").glob(".*partial*"))


def test_missing_teacher_directory_is_a_clear_error(project: Path) -> None:
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    raw["finetune_teacher"]["model"] = "./no/such/teacher"
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    result = run_cli(["effbert", "prepare-data", "--task", "sst2", "--out", "results/prepare_data/sst2"], project)
    assert result.returncode == 2
    assert "model source './no/such/teacher': no such directory" in result.stderr
