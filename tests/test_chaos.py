"""``effbert chaos``: SIGKILL at random moments in the pipeline's stage processes, restarts until it completes, and
the checks that nothing was lost (no leftovers, no tracking run left RUNNING, results equal an uninterrupted run's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from effbert.chaos import compare_results, leftovers, run_with_kills, stage_command_of
from tests.conftest import copy_project, run_cli

COMMANDS = ("prepare-data", "finetune-teacher", "search-stage1", "evaluate")


def test_stage_processes_are_recognised_by_their_command_line() -> None:
    script = ["/x/.venv/bin/python", "/x/.venv/bin/effbert", "finetune-teacher", "--task", "sst2", "--data", "d"]
    assert stage_command_of(script, COMMANDS) == ("finetune-teacher", "finetune-teacher sst2")
    module = ["python", "-m", "effbert.cli", "evaluate", "--task", "mrpc", "--model-name", "student"]
    assert stage_command_of(module, COMMANDS) == ("evaluate", "evaluate mrpc student")
    assert stage_command_of(["/x/bin/effbert", "run", "--params", "p.yaml"], COMMANDS) is None  # the driver's own
    assert stage_command_of(["dvc", "repro"], COMMANDS) is None
    assert stage_command_of(["python", "-m", "effbert.cli"], COMMANDS) is None


def test_results_are_compared_on_metrics_halls_of_fame_and_weights(tmp_path: Path) -> None:
    def results(root: Path, score: float, weights: bytes, wall: str) -> Path:
        (root / "eval/student/sst2").mkdir(parents=True)
        (root / "eval/student/sst2/metrics.json").write_text(json.dumps({"metrics": {"acc": score}, "seconds": 3}))
        (root / "search_stage1").mkdir()
        (root / "search_stage1/hall_of_fame.csv").write_text(f"rank,fitness,wall_seconds\n1,0.5,{wall}\n")
        (root / "models/student/sst2").mkdir(parents=True)
        (root / "models/student/sst2/model.safetensors").write_bytes(weights)
        return root

    reference = results(tmp_path / "a", 0.5, b"w1", "7.1")
    assert compare_results(results(tmp_path / "b", 0.5, b"w1", "9.9"), reference) == []  # wall time not compared
    differences = compare_results(results(tmp_path / "c", 0.6, b"w2", "7.1"), reference)
    assert differences == [
        "eval/student/sst2/metrics.json: differs from the reference",
        "models/student/sst2/model.safetensors: differs from the reference",
    ]
    (reference / "eval/student/sst2/metrics.json").unlink()
    assert "eval/student/sst2/metrics.json: not in the reference" in compare_results(tmp_path / "b", reference)


def test_leftovers_name_partial_outputs_and_resumable_state(tmp_path: Path) -> None:
    (tmp_path / "results/models/.sst2.partial-123").mkdir(parents=True)
    (tmp_path / ".effbert/checkpoints/warmup_kd/x").mkdir(parents=True)
    (tmp_path / ".effbert/checkpoints/warmup_kd/x/trainer_state.json").write_text("{}")
    assert leftovers(tmp_path) == [
        ".effbert/checkpoints/warmup_kd/x/trainer_state.json",
        "results/models/.sst2.partial-123",
    ]


FAKE_STAGE = """\
import subprocess, sys, time
name, seconds, workers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
helper = pool = []
if workers:  # a pool: Python's helper process first, then the workers, a little after the stage starts
    time.sleep(0.5)
    helper = [subprocess.Popen([sys.executable, "-c", "import multiprocessing.resource_tracker, time; time.sleep(60)"])]
    pool = [subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"]) for _ in range(workers)]
    if any(worker.wait() != 0 for worker in pool):
        sys.exit(1)  # a killed worker fails its stage
else:
    time.sleep(seconds)
for process in helper:
    if process.poll() is not None:
        open("helper-killed", "w").close()
    process.kill()
"""

FAKE_PIPELINE = """\
import pathlib, subprocess, sys
done = pathlib.Path("done.txt")
finished = done.read_text().split() if done.exists() else []
for name, seconds, workers in [("prepare", 2, 0), ("train", 6, 2), ("report", 1.5, 0)]:
    if name in finished:
        continue
    if subprocess.run([sys.executable, "bin/effbert", name, str(seconds), str(workers)]).returncode != 0:
        sys.exit(1)
    with done.open("a") as handle:
        handle.write(name + "\\n")
"""


def test_every_kind_is_hit_even_a_short_stage_and_a_pool_behind_an_early_killed_stage(tmp_path: Path) -> None:
    """A fake pipeline (three stages run one after another, the second with a pool of two workers; a finished stage
    is not rerun): every kind is hit once at least, the 1.5-second stage included, the pool's workers although their
    stage is killed before they start, and Python's pool helper never; then the pipeline completes."""
    import sys

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/effbert").write_text(FAKE_STAGE)
    (tmp_path / "pipeline.py").write_text(FAKE_PIPELINE)
    expected = {"prepare", "train", "train worker", "report"}
    lines: list[str] = []
    outcome = run_with_kills(
        [sys.executable, "pipeline.py"],
        tmp_path,
        kills=6,
        seed=5,
        commands=["prepare", "train", "report"],
        expected_kinds=expected,
        delays=(0.3, 3.0),
        trace=lines.append,
    )
    assert outcome.returncode == 0, lines
    assert set(outcome.kinds()) == expected, lines
    assert not (tmp_path / "helper-killed").exists()
    assert (tmp_path / "done.txt").read_text().split() == ["prepare", "train", "report"]
    assert any("SIGKILL report" in line for line in lines) and any("pipeline run" in line for line in lines)


def _kills_by_kind(stdout: str) -> dict[str, int]:
    """The kills per kind from the summary ``effbert chaos`` prints last (its per-kill lines on stderr can share a
    line with a stage's progress bar, so they are not parsed)."""
    blocks = re.findall(r"effbert chaos: \d+ kills in \d+ pipeline runs.*\n((?:  .*\n)*)", stdout)
    assert blocks, stdout[-3000:]
    return {kind: int(count) for kind, count in re.findall(r"^  (\S.*?): (\d+)$", blocks[-1], re.M)}


def test_killed_data_preparation_is_redone_and_nothing_is_left(tmp_path: Path) -> None:
    """Three data-preparation stages, each SIGKILLed once soon after it starts: the pipeline is restarted until it
    completes, and the prepared data, the workspace and the tracking store show no trace of the kills."""
    project = copy_project(tmp_path / "project")
    targets = [arg for task in ("sst2", "mrpc") for arg in ("--target", f"prepare_data@{task}")]
    args = ["effbert", "chaos", "--params", "params/smoke.yaml", *targets, "--kills", "2", "--seed", "3"]
    result = run_cli([*args, "--delay", "0.3", "1.5"], project, 900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _kills_by_kind(result.stdout), result.stderr[-2000:]  # at least one stage was hit
    assert "effbert chaos: nothing lost" in result.stdout
    for task in ("sst2", "mrpc"):
        assert (project / f"results/prepare_data/{task}/train").is_dir()


@pytest.mark.slow
@pytest.mark.chaos
def test_twenty_kills_across_every_stage_kind_lose_nothing(tmp_path: Path) -> None:
    """The EfficientBERT DAG on one task (data prep, teacher, warm-up KD, the three search stages with two workers,
    final distillation, evaluation, export, report) under at least 20 SIGKILLs ends with the metrics, halls of
    fame and weights (bit for bit) of an uninterrupted run, no leftovers and no tracking run left RUNNING."""
    settings = ["--set", "tasks=[sst2]", "--set", "methods=[efficientbert]", "--set", "variants=[]"]
    settings += ["--set", "search.workers=2"]
    reference = copy_project(tmp_path / "reference")
    clean = run_cli(["effbert", "run", "--params", "params/smoke.yaml", *settings], reference, 3000)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    project = copy_project(tmp_path / "chaos")  # its own DVC cache: every stage runs (and can be killed) again
    # 24 kills asked: the driver keeps some for the kinds not hit yet, and a kind it misses keeps its share
    args = ["effbert", "chaos", "--params", "params/smoke.yaml", *settings, "--kills", "24", "--seed", "11"]
    result = run_cli([*args, "--reference", str(reference)], project, 5400)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    kills = _kills_by_kind(result.stdout)
    shown = ", ".join(f"{kind} {count}" for kind, count in kills.items())
    assert sum(kills.values()) >= 20, shown
    every = {"code-digest", "prepare-data", "prepare-corpus", "finetune-teacher", "warmup-kd", "search-stage1"}
    every |= {"search-stage2", "search-stage3", "final-distill-general", "final-distill", "evaluate", "eval-summary"}
    every |= {"predict-test", "export", "report", "search-stage1 worker", "search-stage2 worker"}
    trace = (project / "logs/chaos.log").read_text(encoding="utf-8")  # every process seen and every decision
    assert every <= set(kills), f"not hit: {sorted(every - set(kills))}; hit: {shown}\n{trace[-6000:]}"
    assert "effbert chaos: nothing lost" in result.stdout
