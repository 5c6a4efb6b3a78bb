"""Stage-3 weight sharing: single-task batches, the per-step random sub-network, the multi-task KD module."""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from effbert.distill import DistillationLoss
from effbert.distill.trainer import DistillationOutput
from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.configuration_effbert import VANILLA_EXPR, EffBertConfig
from effbert.methods.efficientbert.modeling_effbert import EffBertForSequenceClassification, EffBertModel
from effbert.methods.efficientbert.search.space import stage3_space
from effbert.methods.efficientbert.search.weight_sharing import (
    WEIGHT_SHARING_FILE,
    WEIGHT_SHARING_LOSSES,
    MultiTaskCollator,
    MultiTaskDistillation,
    load_trained_state,
    random_subnet_callback,
    save_trained_state,
    single_task_batches,
    step_rng,
)
from effbert.methods.efficientbert.supernet import active_architecture, supernet_config


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread: None) -> None:
    """Tiny models: torch single-threaded (the shared fixture of tests/conftest.py)."""


class FakeTokenizer:
    """Just enough of a tokenizer for padding (a fake, for tests only)."""

    pad_token_id = 0
    model_input_names = ("input_ids", "token_type_ids", "attention_mask")
    padding_side = "right"

    def save_pretrained(self, directory: str) -> None:
        """Nothing to save."""

    def pad(self, features: Any, return_tensors: str = "pt", **_: Any) -> dict[str, torch.Tensor]:
        if isinstance(features, dict):  # a column batch {key: [row, ...]}, as datasets' row selection gives
            features = [dict(zip(features, values, strict=True)) for values in zip(*features.values(), strict=True)]
        length = max(len(f["input_ids"]) for f in features)
        batch: dict[str, list[Any]] = {}
        for feature in features:
            pad = length - len(feature["input_ids"])
            for key, value in feature.items():
                if isinstance(value, list):
                    value = value + [0] * pad
                batch.setdefault(key, []).append(value)
        return {key: torch.tensor(values) for key, values in batch.items()}


def tiny_supernet(**kwargs: Any) -> EffBertConfig:
    return supernet_config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=4, vocab_size=60, embedding_size=8, **kwargs
    )


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


# ---------------------------------------------------------------- single_task_batches


SIZES = {"sst2": 23, "mrpc": 10, "rte": 1}


def test_single_task_batches_cover_every_row_once_in_single_task_batches() -> None:
    batches = single_task_batches(SIZES, batch_size=4, seed=3)
    seen: Counter[tuple[int, int]] = Counter()
    for task_index, rows in batches:
        assert 0 < len(rows) <= 4
        assert 0 <= task_index < len(SIZES)
        seen.update((task_index, row) for row in rows)
    expected = {(index, row) for index, size in enumerate(SIZES.values()) for row in range(size)}
    assert set(seen) == expected
    assert all(count == 1 for count in seen.values())
    assert len(batches) == 6 + 3 + 1  # ceil(23/4) + ceil(10/4) + ceil(1/4)


def test_single_task_batches_are_a_function_of_the_seed() -> None:
    first = single_task_batches(SIZES, batch_size=4, seed=3)
    assert single_task_batches(SIZES, batch_size=4, seed=3) == first
    other = single_task_batches(SIZES, batch_size=4, seed=4)
    assert other != first
    assert sorted(map(str, other)) != sorted(map(str, first))  # the rows inside the batches differ too


def test_single_task_batches_of_one_task_mix_the_task_order() -> None:
    batches = single_task_batches({"a": 40, "b": 40}, batch_size=8, seed=0)
    order = [task for task, _ in batches]
    assert sorted(order) == [0] * 5 + [1] * 5
    assert order != sorted(order)  # batches of different tasks are interleaved


# ---------------------------------------------------------------- step_rng and the random sub-network callback


def stage3_draw() -> Any:
    winner = Architecture.from_size_ids([VANILLA_EXPR] * 2, [(1, 1), (2, 2)], 16, "winner")
    return stage3_space(winner, fixed_params=0, window=None).sample


def test_step_rng_depends_on_seed_phase_and_step_only() -> None:
    draws = {key: step_rng(*key).random() for key in [(1, "a", 0), (1, "a", 1), (1, "b", 0), (2, "a", 0)]}
    assert len(set(draws.values())) == 4
    assert step_rng(1, "a", 1).random() == draws[(1, "a", 1)]


def test_callback_activates_the_architecture_of_the_step() -> None:
    torch.manual_seed(0)
    body = EffBertModel(tiny_supernet())
    draw = stage3_draw()
    callback = random_subnet_callback(body, draw, seed=5, phase="warmup")
    seen = {}
    for step in [0, 1, 2, 3, 7, 2, 0]:
        callback.on_step_begin(SimpleNamespace(), SimpleNamespace(global_step=step), SimpleNamespace())
        got = active_architecture(body)
        expected = draw(step_rng(5, "warmup", step))
        assert (got.exprs, got.units, got.widths) == (expected.exprs, expected.units, expected.widths)
        if step in seen:
            assert got.layers == seen[step], "the same step must always activate the same architecture"
        seen[step] = got.layers
    assert len(set(seen.values())) > 1, "different steps should (here) draw different architectures"
    random.Random(0).random()  # the global random module is not what the callback uses
    callback.on_step_begin(SimpleNamespace(), SimpleNamespace(global_step=3), SimpleNamespace())
    assert active_architecture(body).layers == seen[3]


# ---------------------------------------------------------------- MultiTaskDistillation


def head_config(num_labels: int) -> EffBertConfig:
    values = tiny_supernet().to_dict()
    for key in ("id2label", "label2id"):
        values.pop(key, None)
    values.update(num_labels=num_labels)
    return EffBertConfig.from_dict(values)


def heads_on(body: EffBertModel) -> dict[str, EffBertForSequenceClassification]:
    heads = {}
    for name, labels in (("two", 2), ("three", 3)):
        head = EffBertForSequenceClassification(head_config(labels))
        head.effbert = body
        heads[name] = head
    return heads


def multitask() -> MultiTaskDistillation:
    torch.manual_seed(0)
    body = EffBertModel(tiny_supernet())
    heads = heads_on(body)
    teachers = {
        "two": BertForSequenceClassification(teacher_config(num_labels=2)),
        "three": BertForSequenceClassification(teacher_config(num_labels=3)),
    }
    kinds = {"two": "classification", "three": "classification"}
    return MultiTaskDistillation(body, heads, teachers, kinds, DistillationLoss(16, 32, task="classification"))


BATCH = {
    "input_ids": torch.tensor([[2, 7, 9, 11, 3], [2, 5, 3, 0, 0]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    "token_type_ids": torch.zeros(2, 5, dtype=torch.long),
}


def test_state_dict_has_no_aliases_and_no_teacher() -> None:
    module = multitask()
    state = module.state_dict()
    pointers = [tensor.data_ptr() for tensor in state.values() if tensor.numel() > 0]
    assert len(pointers) == len(set(pointers)), "two state_dict keys share storage"
    assert any(key.startswith("body.") for key in state)
    assert any(key.startswith("classifiers.two.") for key in state)
    assert any(key.startswith("classifiers.three.") for key in state)
    assert any(key.startswith("criterion.") for key in state)
    assert not any("teacher" in key or key.startswith("bert.") for key in state)
    teacher_count = sum(p.numel() for t in module._teachers.values() for p in t.parameters())
    own_count = sum(p.numel() for p in module.parameters())
    assert own_count < teacher_count  # tiny student: the teachers' parameters are not registered
    names = [name for name, _ in module.named_parameters()]
    assert len(names) == len(set(names))


def test_training_forward_trains_the_body_and_the_active_task_head_only() -> None:
    module = multitask()
    module.train()
    out = module(task_index=torch.tensor([1]), **BATCH, labels=torch.tensor([0, 2]))
    assert isinstance(out, DistillationOutput)
    assert torch.isfinite(out.loss)
    assert out.prediction is not None
    out.loss.backward()
    body_grads = [p.grad for p in module.body.parameters() if p.grad is not None]
    assert body_grads and any(g.abs().sum() > 0 for g in body_grads)
    active = module.classifiers["three"]
    assert active.weight.grad is not None and active.weight.grad.abs().sum() > 0
    idle = module.classifiers["two"]
    for parameter in idle.parameters():
        assert parameter.grad is None or not parameter.grad.any()
    assert module.criterion.task == "classification"
    assert all(p.grad is None for t in module._teachers.values() for p in t.parameters())


def test_eval_forward_returns_the_task_head_logits() -> None:
    module = multitask()
    module.eval()
    for index, labels in ((0, 2), (1, 3)):
        with torch.no_grad():
            out = module(task_index=torch.tensor([index]), **BATCH)
        assert out.logits.shape == (2, labels)
        assert torch.isfinite(out.logits).all()
    with torch.no_grad():
        with_labels = module(task_index=torch.tensor([0]), **BATCH, labels=torch.tensor([1, 0]))
    assert with_labels.loss is not None and torch.isfinite(with_labels.loss)


def test_eval_mode_reaches_the_heads_so_evaluation_is_deterministic() -> None:
    module = multitask()
    module.eval()
    head = module.head("two")
    with torch.no_grad():
        first = module(task_index=torch.tensor([0]), **BATCH).logits
        second = module(task_index=torch.tensor([0]), **BATCH).logits
        reference = head.eval()(**BATCH).logits
    assert torch.equal(first, second)
    assert torch.equal(first, reference)


def test_moving_the_module_moves_the_teachers_and_keeps_them_frozen() -> None:
    module = multitask()
    assert module.to("cpu") is module
    module.double()
    for teacher in module._teachers.values():
        assert next(teacher.parameters()).dtype == torch.float64
        assert not any(p.requires_grad for p in teacher.parameters())
        assert not teacher.training
    assert next(module.body.parameters()).dtype == torch.float64
    module.train()
    assert all(not teacher.training for teacher in module._teachers.values())


def test_a_head_on_another_body_is_rejected() -> None:
    torch.manual_seed(0)
    body = EffBertModel(tiny_supernet())
    heads: dict[str, Any] = heads_on(body)
    heads["three"] = EffBertForSequenceClassification(head_config(3))  # its own body
    teachers = {name: BertForSequenceClassification(teacher_config(num_labels=2)) for name in heads}
    kinds = dict.fromkeys(heads, "classification")
    with pytest.raises(ValueError, match="shared body"):
        MultiTaskDistillation(body, heads, teachers, kinds, DistillationLoss(16, 32, task="classification"))
    with pytest.raises(ValueError, match="same tasks"):
        MultiTaskDistillation(
            body, heads_on(body), {"two": teachers["two"]}, kinds, DistillationLoss(16, 32, task="classification")
        )


# ---------------------------------------------------------------- MultiTaskCollator


def task_datasets() -> list[datasets.Dataset]:
    first = datasets.Dataset.from_list(
        [
            {"input_ids": [2, 5, 3], "token_type_ids": [0, 0, 0], "attention_mask": [1, 1, 1], "label": 0},
            {"input_ids": [2, 6, 7, 3], "token_type_ids": [0, 0, 0, 0], "attention_mask": [1, 1, 1, 1], "label": 1},
        ]
    )
    second = datasets.Dataset.from_list(
        [
            {"input_ids": [2, 8, 3], "token_type_ids": [0, 0, 1], "attention_mask": [1, 1, 1], "label": 2},
            {"input_ids": [2, 9, 3], "token_type_ids": [0, 0, 1], "attention_mask": [1, 1, 1], "label": 0},
            {
                "input_ids": [2, 10, 11, 12, 13, 3],
                "token_type_ids": [0, 0, 0, 1, 1, 1],
                "attention_mask": [1] * 6,
                "label": 1,
            },
        ]
    )
    return [first, second]


def test_collator_pads_one_single_task_batch() -> None:
    collate = MultiTaskCollator(task_datasets(), FakeTokenizer())
    batch = collate([{"task_index": 1, "rows": [0, 2]}])
    assert torch.equal(batch["task_index"], torch.tensor([1]))
    assert torch.equal(batch["labels"], torch.tensor([2, 1]))
    assert batch["labels"].dtype == torch.long
    assert torch.equal(batch["input_ids"], torch.tensor([[2, 8, 3, 0, 0, 0], [2, 10, 11, 12, 13, 3]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6]))
    assert torch.equal(batch["token_type_ids"], torch.tensor([[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]]))
    first = collate([{"task_index": 0, "rows": [1]}])
    assert torch.equal(first["labels"], torch.tensor([1]))
    assert torch.equal(first["task_index"], torch.tensor([0]))


def test_collator_output_feeds_the_multitask_module() -> None:
    module = multitask().eval()
    batch = MultiTaskCollator(task_datasets(), FakeTokenizer())([{"task_index": 1, "rows": [0, 2]}])
    with torch.no_grad():
        out = module(**batch)
    assert out.logits.shape == (2, 3)


def test_collator_rejects_more_than_one_feature() -> None:
    collate = MultiTaskCollator(task_datasets(), FakeTokenizer())
    with pytest.raises(ValueError, match="one single-task batch"):
        collate([{"task_index": 0, "rows": [0]}, {"task_index": 1, "rows": [1]}])


LOSSES = {"general_loss": 1.5, "multitask_loss": 0.25, "seconds": 3.0}


@pytest.mark.parametrize("how", ["flipped weights", "truncated weights", "changed losses file", "save cut short"])
def test_a_damaged_trained_state_is_discarded_with_one_warning_and_trained_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Stage 3 keeps its trained weight-sharing module in the search state; a restarted stage reloads it only while
    it matches the sha256 sealed beside it, else the state is removed (one warning line) and trained again."""
    torch.manual_seed(0)
    module = torch.nn.Linear(64, 32)
    save_trained_state(tmp_path, module, LOSSES)
    kept = load_trained_state(tmp_path)
    assert kept is not None and kept[1] == LOSSES and torch.equal(kept[0]["weight"], module.weight.detach())
    weights, losses = tmp_path / WEIGHT_SHARING_FILE, tmp_path / WEIGHT_SHARING_LOSSES
    damaged = losses if how == "changed losses file" else weights
    data = bytearray(damaged.read_bytes())
    if how == "truncated weights":
        del data[len(data) // 2 :]
    elif how == "changed losses file":
        data[data.index(b"1.5")] = ord("2")  # still valid JSON: only the checksum tells
    else:
        data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    if how == "save cut short":
        losses.unlink()  # killed between the weights and the losses file
    with caplog.at_level(logging.WARNING):
        assert load_trained_state(tmp_path) is None
    again = "discarded, training the weight-sharing supernet again"
    expected = {
        "changed losses file": f"{losses}: damaged weight-sharing state (cut short or changed since written): {again}",
        "save cut short": f"{weights}: no sealed {WEIGHT_SHARING_LOSSES} beside it (its save was cut short): {again}",
    }.get(
        how,
        f"{weights}: missing or changed since it was written (its sha256 differs from {WEIGHT_SHARING_LOSSES}): "
        f"{again}",
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [expected]
    assert list(tmp_path.iterdir()) == []  # nothing left to load: the stage trains again
