"""FastBERT mechanics: normalised entropy, the self-distillation loss, frozen backbone, and exit decisions in a batch
whose rows exit at different layers (under both batch rules)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertForSequenceClassification

from effbert.methods.fastbert.early_exit import FastBertModel, normalised_entropy, self_distillation_loss, sweep
from tests.conftest import tiny_bert_classifier


def tiny_teacher(labels: int = 3, **extra: object) -> BertForSequenceClassification:
    return tiny_bert_classifier(num_labels=labels, **extra)


def batch(rows: int = 6) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 50, (rows, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # a padded row
    mask[4, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_normalised_entropy_is_zero_for_certainty_and_one_for_uniform() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    values = normalised_entropy(logits)
    probs = torch.softmax(logits[2], -1)
    assert values[0] == pytest.approx(1.0) and values[1] == pytest.approx(0.0, abs=1e-6)
    assert values[2] == pytest.approx(float(-(probs * probs.log()).sum() / math.log(3)), rel=1e-6)


def test_self_distillation_loss_sums_kl_from_the_teacher_over_branches() -> None:
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert float(self_distillation_loss([teacher.clone(), teacher.clone()], teacher)) == pytest.approx(0.0, abs=1e-7)
    branch = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    p, q = torch.softmax(teacher, -1), torch.softmax(branch, -1)
    kl = float((p * (p.log() - q.log())).sum(-1).mean())
    assert float(self_distillation_loss([branch, branch], teacher)) == pytest.approx(2 * kl, rel=1e-6)


def test_only_the_branches_learn_and_the_backbone_stays_in_inference_mode() -> None:
    model = FastBertModel(tiny_teacher(), width=8).train()
    assert len(model.branches) == 3  # after layers 1..3; layer 4 has the teacher's head
    assert not any(m.training for m in model.teacher.modules())
    out = model(**batch())
    out["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None for p in model.branches.parameters())
    with torch.no_grad():
        assert torch.allclose(out["logits"], model.teacher(**batch()).logits)


def test_speed_zero_is_the_teacher_and_speed_one_exits_after_the_first_layer() -> None:
    model = FastBertModel(tiny_teacher(), width=8)
    with torch.no_grad():
        teacher_logits = model.teacher(**batch()).logits
        branch_logits = model(**batch())["branch_logits"]
    slow = model.exit_forward(**batch(), speed=0.0)
    assert torch.allclose(slow.logits, teacher_logits, atol=1e-5)
    assert slow.exit_layers.tolist() == [4] * 6 and slow.layers_run == 4
    fast = model.exit_forward(**batch(), speed=1.0)
    assert torch.allclose(fast.logits, branch_logits[0], atol=1e-5)
    assert fast.exit_layers.tolist() == [1] * 6 and fast.layers_run == 1


@pytest.mark.parametrize("rule", ["batch", "sample"])
def test_rows_of_one_batch_exit_at_different_layers(rule: str) -> None:
    model = FastBertModel(tiny_teacher(), width=8)
    with torch.no_grad():
        first = model(**batch())["branch_logits"][0]
    entropy = normalised_entropy(first)
    order = entropy.argsort()
    speed = float((entropy[order[1]] + entropy[order[2]]) / 2)  # the two surest rows exit after layer 1
    result = model.exit_forward(**batch(), speed=speed, rule=rule)
    early = set(order[:2].tolist())
    assert {i for i, layer in enumerate(result.exit_layers.tolist()) if layer == 1} >= early
    assert torch.allclose(result.logits[order[:2]], first[order[:2]], atol=1e-5)
    assert (result.exit_layers > 1).any()  # the others went deeper
    other = model.exit_forward(**batch(), speed=speed, rule="sample" if rule == "batch" else "batch")
    assert torch.equal(result.exit_layers, other.exit_layers)  # rows do not interact: same exits under both rules
    assert torch.allclose(result.logits, other.logits, atol=1e-5)
    assert result.layers_run == int(result.exit_layers.max())


def test_regression_has_no_exit_rule() -> None:
    with pytest.raises(ValueError, match="needs a classifier"):
        FastBertModel(tiny_teacher(labels=1, problem_type="regression"))


def test_a_sweep_trades_layers_for_speed_and_the_batch_rule_costs_more() -> None:
    model = FastBertModel(tiny_teacher(), width=8)
    batches = [{key: value[:3] for key, value in batch().items()}, {key: value[3:] for key, value in batch().items()}]
    points = sweep(model, batches, [0.0, 0.999, 1.0])
    assert [p.speed for p in points] == [0.0, 0.999, 1.0]
    assert points[0].mean_exit_layer == 4.0 and points[-1].mean_exit_layer == 1.0
    assert points[0].mean_exit_layer >= points[1].mean_exit_layer >= points[2].mean_exit_layer
    with torch.no_grad():
        assert torch.equal(points[0].predictions, model.teacher(**batch()).logits.argmax(-1))
    for point in points:  # a batch runs as deep as its deepest row
        assert point.mean_layers_run >= point.mean_exit_layer
    per_row = sweep(model, batches, [0.999], rule="sample")[0]
    assert torch.equal(per_row.exit_layers, points[1].exit_layers)
