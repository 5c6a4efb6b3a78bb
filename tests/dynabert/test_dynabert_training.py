"""DynaBERT's training end to end on a tiny model: importance rewiring on the held-out slice, the width phase and the
width-and-depth phase with grid-mean held-out selection, a resumed run that skips the finished phase, and the same
weights from the same seed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from effbert.data.tasks import get_task
from effbert.methods.dynabert.training import PHASES, GridDistiller, combined_outcome, train_dynabert
from tests.dynabert.dynabert_helpers import small_params, task_rows, tiny_teacher
from tests.export.export_helpers import tokenizer


def run(checkpoints: Path, callbacks: list[Any] | None = None) -> object:
    return train_dynabert(
        tiny_teacher(),
        tokenizer(),
        task_rows(),
        get_task("sst2"),
        small_params(),
        seed=3,
        checkpoints=checkpoints,
        callbacks=callbacks or [],
        bf16=False,
    )


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.usefixtures("single_torch_thread")
def test_both_phases_train_resume_skips_a_finished_phase_and_the_seed_fixes_the_weights(tmp_path: Path) -> None:
    first = run(tmp_path / "a")
    assert [first.phases[p].skipped for p in PHASES] == [False, False]
    assert first.grid == [(1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5)]
    teacher = tiny_teacher().state_dict()
    trained = weights(first.student)
    assert any(not torch.equal(trained[k], teacher[k]) for k in teacher)
    width_log, depth_log = first.phases["width"].outcome.log_history, first.phases["depth"].outcome.log_history
    assert any("eval_w0.5_d1_selection" in row for row in width_log)
    assert not any("eval_w1_d0.5_selection" in row for row in width_log)  # the width phase runs full depth only
    evaluation = next(row for row in depth_log if "eval_w0.5_d0.5_selection" in row)
    points = [evaluation[f"eval_w{w:g}_d{d:g}_selection"] for w, d in first.grid]
    assert evaluation["eval_selection"] == pytest.approx(sum(points) / len(points))  # selected on the grid mean
    assert evaluation["eval_accuracy"] == evaluation["eval_w1_d1_accuracy"]  # the full model's own metrics
    assert any("loss_w0.5_d0.5" in row for row in depth_log)  # each sub-network's training loss is logged
    combined = combined_outcome(first.phases)
    assert combined.steps == 12 and combined.best_step is not None and combined.best_step > 6

    same = run(tmp_path / "b")
    assert all(torch.equal(trained[k], v) for k, v in weights(same.student).items())

    shutil.rmtree(tmp_path / "a" / "depth")  # killed during the depth phase: the width phase is not redone
    resumed = run(tmp_path / "a")
    assert resumed.phases["width"].skipped and not resumed.phases["depth"].skipped
    assert resumed.phases["width"].outcome.steps == first.phases["width"].outcome.steps
    assert all(torch.equal(trained[k], v) for k, v in weights(resumed.student).items())


def test_the_evaluation_pass_scores_every_subnetwork_without_the_teacher() -> None:
    student, teacher = tiny_teacher(), tiny_teacher()
    distiller = GridDistiller(student, teacher, [1.0, 0.5], [1.0, 0.5]).eval()
    ids = torch.randint(1, 50, (3, 9), generator=torch.Generator().manual_seed(0))
    out = distiller(input_ids=ids, labels=torch.tensor([0, 1, 1]))
    assert out["logits"].shape == (3, 4, 2) and out["loss"].ndim == 0
    with torch.no_grad():
        assert torch.allclose(out["logits"][:, 0], student(input_ids=ids).logits)


@pytest.mark.usefixtures("single_torch_thread")
def test_a_run_killed_inside_the_depth_phase_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if Path(args.output_dir).name == "depth" and state.global_step == 4:
                raise KeyboardInterrupt  # after the checkpoint of step 3

    reference = weights(run(tmp_path / "once").student)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", [Kill()])
    assert (tmp_path / "killed" / "depth" / "checkpoint-3").is_dir()
    resumed = run(tmp_path / "killed")
    assert resumed.phases["width"].skipped and resumed.phases["depth"].outcome.resumed
    assert all(torch.equal(reference[k], v) for k, v in weights(resumed.student).items())
