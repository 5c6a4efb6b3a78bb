"""The KD Trainer: the loss falls, the teacher stays out of checkpoints, a crashed run resumes to the same weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel, TrainerCallback

from effbert.data.tasks import get_task
from effbert.distill import DistillationLoss
from effbert.distill.trainer import DistillationModule, DistillationOutput, DistillationTrainerMixin
from effbert.methods.efficientbert.modeling_effbert import EffBertForSequenceClassification, EffBertModel
from effbert.methods.efficientbert.supernet import supernet_config
from effbert.params import TrainingPhase
from effbert.training import build_trainer, training_arguments


class FakeTokenizer:
    """Just enough of a tokenizer for DataCollatorWithPadding (a fake, for tests only)."""

    pad_token_id = 0
    model_input_names = ("input_ids", "token_type_ids", "attention_mask")
    padding_side = "right"

    def save_pretrained(self, directory: str) -> None:
        """Checkpoints of the Trainer save the tokenizer; the fake has nothing to save."""

    def pad(self, features: list[dict[str, Any]], return_tensors: str = "pt", **_: Any) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        batch: dict[str, list[Any]] = {}
        for feature in features:
            pad = length - len(feature["input_ids"])
            for key, value in feature.items():
                if isinstance(value, list):
                    value = value + [0] * pad
                batch.setdefault(key, []).append(value)
        return {key: torch.tensor(values) for key, values in batch.items()}


def teacher_config(**kwargs: Any) -> BertConfig:
    return BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
        initializer_range=0.1,
        **kwargs,
    )


def tiny_supernet(**kwargs: Any) -> Any:
    return supernet_config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=4, vocab_size=60, embedding_size=8, **kwargs
    )


def corpus(rows: int, seed: int = 0, labels: bool = False) -> datasets.Dataset:
    generator = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(rows):
        length = int(torch.randint(4, 12, (1,), generator=generator))
        ids = [2, *torch.randint(5, 60, (length - 2,), generator=generator).tolist(), 3]
        row: dict[str, Any] = {"input_ids": ids, "attention_mask": [1] * length}
        if labels:
            row["labels"] = int(torch.randint(0, 2, (1,), generator=generator))
        data.append(row)
    return datasets.Dataset.from_list(data)


def agnostic_module(student_seed: int = 0) -> DistillationModule:
    """A random teacher (always the same: the stage loads it from disk) and a student initialised from its seed."""
    torch.manual_seed(0)
    teacher = BertModel(teacher_config())
    torch.manual_seed(student_seed)
    student = EffBertModel(tiny_supernet())
    return DistillationModule(student, teacher, DistillationLoss(16, 32, task="agnostic"))


def kd_trainer(module: DistillationModule, out: Path, train: datasets.Dataset, **overrides: Any) -> Any:
    phase = TrainingPhase(
        learning_rate=overrides.pop("learning_rate", 3e-3),
        epochs=overrides.pop("epochs", 2.0),
        batch_size=8,
        warmup_ratio=0.1,
        weight_decay=0.01,
        max_grad_norm=1.0,
    )
    settings: dict[str, Any] = {
        "output_dir": out,
        "seed": 7,
        "save_steps": 3,
        "save_total_limit": 2,
        "select_on_heldout": False,
        **overrides,
    }
    args = training_arguments(phase, **settings)
    args.disable_tqdm = True
    return build_trainer(None, module, FakeTokenizer(), args, train, mixin=DistillationTrainerMixin)


def test_teacher_is_frozen_moved_along_and_never_saved() -> None:
    module = agnostic_module()
    assert not any(name.startswith("_teacher") for name in module.state_dict())
    assert {name.split(".")[0] for name, _ in module.named_parameters()} == {"student", "criterion"}
    module.train()
    assert not module.teacher.training
    assert not any(p.requires_grad for p in module.teacher.parameters())
    module.to(torch.float64)
    assert next(module.teacher.parameters()).dtype == torch.float64


def test_training_mode_returns_every_term_and_eval_mode_the_student_alone() -> None:
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(teacher_config(num_labels=2))
    student = EffBertForSequenceClassification(tiny_supernet(num_labels=2))
    module = DistillationModule(student, teacher, DistillationLoss(16, 32, task="classification"))
    batch = {"input_ids": torch.tensor([[2, 7, 9, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    module.train()
    out = module(**batch, labels=torch.tensor([1]))
    assert isinstance(out, DistillationOutput)
    assert out.prediction is not None and out.prediction > 0
    assert torch.allclose(out.loss, out.attention + out.hidden + out.prediction)
    module.eval()
    evaluated = module(**batch, labels=torch.tensor([1]))
    expected = student(**batch, labels=torch.tensor([1]))
    assert torch.equal(evaluated.logits, expected.logits)
    assert torch.equal(evaluated.loss, expected.loss)


def test_kd_trainer_loss_falls_and_logs_terms(tmp_path: Path) -> None:
    trainer = kd_trainer(agnostic_module(), tmp_path / "ckpt", corpus(64), epochs=6.0, learning_rate=5e-3)
    trainer.args.logging_steps = 8
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "kd_hidden" in entry]
    assert len(logged) >= 4
    assert logged[-1]["loss"] < 0.5 * logged[0]["loss"], logged
    assert logged[-1]["kd_hidden"] < logged[0]["kd_hidden"]
    assert logged[-1]["kd_prediction"] == 0.0  # task-agnostic: no prediction term


def test_kd_under_bf16_autocast_keeps_fp32_weights_and_learns(tmp_path: Path) -> None:
    module = agnostic_module()
    seen: list[torch.dtype] = []
    qkv = module.student.encoder.layer[0].attention.self.qkv
    qkv.register_forward_hook(lambda _module, _inputs, out: seen.append(out.dtype))
    trainer = kd_trainer(module, tmp_path / "ckpt", corpus(64), epochs=6.0, learning_rate=5e-3, bf16=True)
    trainer.args.logging_steps = 8
    trainer.train()
    assert seen and set(seen) == {torch.bfloat16}  # the forward ran under bf16 autocast (the teacher's too)
    assert {p.dtype for p in module.parameters()} == {torch.float32}  # fp32 master weights
    logged = [entry for entry in trainer.state.log_history if "kd_hidden" in entry]
    assert logged[-1]["loss"] < 0.5 * logged[0]["loss"], logged


class CrashAt(TrainerCallback):
    """Simulates a killed run: raises once the Trainer has finished ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated crash after step {self.step}")


def trained_state(trainer: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_resume_after_crash_ends_with_identical_weights(tmp_path: Path) -> None:
    from transformers.trainer_utils import get_last_checkpoint

    train = corpus(40)  # 5 steps per epoch, 10 in all; checkpoints every 3
    reference = kd_trainer(agnostic_module(), tmp_path / "uninterrupted", train)
    reference.train()
    expected = trained_state(reference)

    crashing = kd_trainer(agnostic_module(), tmp_path / "crashed", train)
    crashing.add_callback(CrashAt(7))  # crosses the epoch boundary; last checkpoint at step 6
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    last = get_last_checkpoint(str(tmp_path / "crashed"))
    assert last is not None and last.endswith("checkpoint-6")

    # a fresh student init: everything must come from the checkpoint
    resumed = kd_trainer(agnostic_module(student_seed=123), tmp_path / "crashed", train)
    resumed.train(resume_from_checkpoint=last)
    assert resumed.state.global_step == reference.state.global_step == 10
    got = trained_state(resumed)
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, different


def test_task_kd_selects_on_heldout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(teacher_config(num_labels=2))
    student = EffBertForSequenceClassification(tiny_supernet(num_labels=2))
    module = DistillationModule(student, teacher, DistillationLoss(16, 32, task="classification"))
    spec = get_task("sst2")
    phase = TrainingPhase(
        learning_rate=3e-3, epochs=1.0, batch_size=8, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0
    )
    args = training_arguments(
        phase,
        output_dir=tmp_path / "ckpt",
        seed=1,
        save_steps=2,
        save_total_limit=2,
        select_on_heldout=True,
        label_names=["labels"],
    )
    args.disable_tqdm = True
    trainer = build_trainer(
        spec,
        module,
        FakeTokenizer(),
        args,
        corpus(32, labels=True),
        corpus(16, seed=1, labels=True),
        mixin=DistillationTrainerMixin,
    )
    trainer.train()
    scores = [entry["eval_selection"] for entry in trainer.state.log_history if "eval_selection" in entry]
    assert len(scores) == 2
    assert trainer.state.best_metric == max(scores)
