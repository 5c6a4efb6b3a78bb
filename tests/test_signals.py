"""SIGTERM (SLURM's preemption and time limit) and SIGINT (Ctrl-C): a stage stops within seconds at a safe point,
saves what it can, leaves no output, marks its run KILLED, exits 143 or 130, and the next run resumes; ``effbert run``
forwards the signal to its engine's stages, waits for them and marks its own run KILLED."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from effbert import interrupt
from effbert.errors import StageInterrupted
from tests.conftest import BIN, copy_project, run_cli, stages_run

FINETUNE = ["effbert", "finetune-teacher", "--task", "sst2", "--data", "results/prepare_data/sst2"]
CHECKPOINTS = ".effbert/checkpoints/finetune_teacher/sst2"
STOP_SECONDS = 30  # from the signal to the exit of the process, on 2 busy cores


def _environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _outs(name: str) -> list[str]:
    return ["--model-out", f"results/{name}/model", "--report-out", f"results/{name}/report"]


def _runs(project: Path, name: str) -> list[Any]:
    """The MLflow runs named ``name`` in the project's store, newest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"attributes.run_name = '{name}'", order_by=["attributes.start_time DESC"])
    return list(runs)


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def finetune_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with sst2 prepared (16 optimizer steps of fine-tuning, a checkpoint every 2) and the model of an
    uninterrupted fine-tuning in ``results/straight``."""
    project = copy_project(tmp_path_factory.mktemp("signals") / "project")
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    raw["finetune_teacher"].update(epochs=8.0, eval_steps=2, threads=1)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    prepared = run_cli(["effbert", "prepare-data", "--task", "sst2", "--out", "results/prepare_data/sst2"], project)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    straight = run_cli([*FINETUNE, *_outs("straight")], project)
    assert straight.returncode == 0, straight.stderr[-3000:]
    yield project


def _interrupt_finetune(project: Path, signum: int, name: str) -> tuple[int, str, float]:
    """Start the fine-tuning, send ``signum`` once its first checkpoint is saved; (exit code, stderr, seconds from
    the signal to the exit)."""
    log = project / f"{name}.stderr"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*FINETUNE, *_outs(name)],
            cwd=project,
            env=_environment(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.time() + 300
        while not list((project / CHECKPOINTS).glob("*/checkpoint-2/trainer_state.json")):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint in 5 minutes"
            time.sleep(0.1)
        sent = time.monotonic()
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=STOP_SECONDS)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text(), time.monotonic() - sent


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_training_stage_saves_a_checkpoint_leaves_no_output_and_resumes_bit_for_bit(
    finetune_project: Path, signum: int, code: int
) -> None:
    import torch

    project, name = finetune_project, f"stopped_{signum}"
    exit_code, stderr, seconds = _interrupt_finetune(project, signum, name)
    assert exit_code == code, stderr[-3000:]
    assert seconds < STOP_SECONDS
    stopped = re.search(
        rf"^effbert: interrupted by {signal.Signals(signum).name}: training stopped at step (\d+)", stderr, re.M
    )
    assert stopped, stderr[-3000:]
    step = int(stopped.group(1))
    assert 2 <= step < 16, "the signal arrived during training"
    saved = list((project / CHECKPOINTS).glob(f"*/checkpoint-{step}/trainer_state.json"))
    assert saved and json.loads(saved[0].read_text())["global_step"] == step  # the step it stopped at
    assert not (project / f"results/{name}/model").exists() and not (project / f"results/{name}/report").exists()
    assert not list((project / f"results/{name}").glob(".*partial*"))
    assert _runs(project, "finetune_teacher@sst2")[0].info.status == "KILLED"

    resumed = run_cli([*FINETUNE, *_outs(name)], project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {saved[0].parent}" in resumed.stderr
    assert _runs(project, "finetune_teacher@sst2")[0].info.status == "FINISHED"
    assert not list((project / CHECKPOINTS).glob("*"))
    ours, straight = _weights(project / f"results/{name}/model"), _weights(project / "results/straight/model")
    assert ours.keys() == straight.keys()
    assert all(torch.equal(ours[key], straight[key]) for key in ours)  # bit for bit


def test_effbert_run_forwards_sigterm_to_its_stage_waits_and_the_next_run_continues(tmp_path: Path) -> None:
    import psutil

    project = copy_project(tmp_path / "project")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["effbert", "run", "--params", "params/smoke.yaml"],
            cwd=project,
            env=_environment(),
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 300
        while not (project / "logs/prepare_data").is_dir():  # a stage after code_digest has started
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "no stage started in 5 minutes"
            time.sleep(0.1)
        time.sleep(0.5)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert any("dvc" in " ".join(p.cmdline()) for p in family)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_SECONDS)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    seconds, output = time.monotonic() - sent, log.read_text()
    assert code == 143, output[-3000:]
    assert seconds < STOP_SECONDS
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # engine and stages
    assert {r.info.status for r in _runs(project, "prepare_data@sst2")} == {"KILLED"}
    assert _runs(project, "pipeline-dvc")[0].info.status == "KILLED"
    assert "effbert: interrupted by SIGTERM: dvc and its stages stopped" in output
    assert not list((project / "results/prepare_data").glob(".*partial*"))

    again = run_cli(["effbert", "run", "--params", "params/smoke.yaml", "--target", "prepare_data@sst2"], project)
    assert again.returncode == 0, again.stderr[-3000:]
    assert list(stages_run(again.stdout)) == ["prepare_data@sst2"]  # code_digest, finished before, is not rerun
    assert (project / "results/prepare_data/sst2/lineage.json").is_file()


def test_the_handler_raises_at_once_outside_a_deferred_block_and_only_records_inside() -> None:
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when started in a background job
    with interrupt.handled():
        with pytest.raises(StageInterrupted) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, long before this ends
        assert stopped.value.exit_code == 143
    with interrupt.handled():
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # a second one while the first is handled: recorded only
            time.sleep(0.1)
            assert interrupt.requested() == signal.SIGINT
        with pytest.raises(StageInterrupted) as stopped:
            interrupt.check("at the safe point")
        assert stopped.value.exit_code == 130 and str(stopped.value) == "interrupted by SIGINT: at the safe point"
    assert signal.getsignal(signal.SIGINT) is before  # the previous handlers are back
    assert interrupt.requested() is None


GROUP = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    from pathlib import Path
    child = '''
    import signal, sys, time
    from pathlib import Path
    def stop(signum, frame):
        time.sleep(1.0)  # a stage saving its checkpoint
        Path(sys.argv[1], "cleaned").write_text(str(signum))
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    Path(sys.argv[1], "ready").write_text("")
    time.sleep(60)
    '''
    subprocess.Popen([sys.executable, "-c", child, sys.argv[1]])
    time.sleep(60)  # the engine: dies at once on SIGTERM, its stage goes on stopping
    """
)


def test_run_forwarding_signals_the_whole_group_and_waits_for_it(tmp_path: Path) -> None:
    def signal_when_ready() -> None:
        deadline = time.time() + 60
        while not (tmp_path / "ready").exists() and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=signal_when_ready)
    sender.start()
    started = time.monotonic()
    with pytest.raises(StageInterrupted) as stopped:
        interrupt.run_forwarding([sys.executable, "-c", GROUP, str(tmp_path)], cwd=tmp_path, env=dict(os.environ))
    sender.join()
    assert stopped.value.exit_code == 143
    assert (tmp_path / "cleaned").read_text() == str(int(signal.SIGTERM))  # the stage had finished stopping
    assert time.monotonic() - started < 30
