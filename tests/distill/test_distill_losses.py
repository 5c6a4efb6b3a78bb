"""Distillation losses against hand computations on small tensors, and the combined objective's guards."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from effbert.distill import (
    DistillationLoss,
    HiddenStateLoss,
    TeacherSignals,
    attention_score_loss,
    capture,
    forward_with_signals,
    layer_map,
    regression_loss,
    soft_cross_entropy,
    span_soft_cross_entropy,
    zero_masked,
)


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    torch.manual_seed(1234)
    yield


def hand_soft_ce(student: list[float], teacher: list[float]) -> float:
    """-sum p_T log p_S for one row, in plain Python."""
    t_norm = sum(math.exp(v) for v in teacher)
    s_lse = math.log(sum(math.exp(v) for v in student))
    return -sum(math.exp(t) / t_norm * (s - s_lse) for s, t in zip(student, teacher, strict=True))


def test_layer_map() -> None:
    assert layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert layer_map(2, 4) == [2, 4]
    assert layer_map(4, 4) == [1, 2, 3, 4]
    assert layer_map(1, 12) == [12]
    with pytest.raises(ValueError, match="multiple"):
        layer_map(5, 12)
    with pytest.raises(ValueError, match="positive"):
        layer_map(0, 12)


def test_zero_masked() -> None:
    scores = torch.tensor([1.0, -99.0, -100.0, -1e4, float("-inf"), torch.finfo(torch.float32).min])
    assert torch.equal(zero_masked(scores), torch.tensor([1.0, -99.0, 0.0, 0.0, 0.0, 0.0]))


def test_hidden_state_loss_by_hand() -> None:
    loss_fn = HiddenStateLoss(student_hidden=2, teacher_hidden=3)
    with torch.no_grad():
        loss_fn.fit_dense.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        loss_fn.fit_dense.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    student = [torch.full((1, 1, 2), float(i)) for i in range(3)]  # L_s = 2
    teacher = [torch.zeros(1, 1, 3) for _ in range(5)]  # L_t = 4: student layers 1, 2 -> teacher 2, 4
    teacher[2] = torch.tensor([[[1.0, 1.0, 3.0]]])  # equals proj(student[1]) -> 0
    # proj(x, x) = (x, x, 2x + 1); emb: (0,0,1) vs 0 -> 1/3; layer 2: (2,2,5) vs teacher[4] = 0 -> 33/3.
    expected = 1 / 3 + 0.0 + (4 + 4 + 25) / 3
    assert loss_fn(student, teacher).item() == pytest.approx(expected)
    teacher[1] = torch.full((1, 1, 3), 100.0)  # unmapped teacher layers are ignored
    assert loss_fn(student, teacher).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="multiple"):
        loss_fn(student, teacher[:4])


def test_attention_score_loss_by_hand() -> None:
    neg = torch.finfo(torch.float32).min
    student = [torch.tensor([[[[1.0, neg]]]]), torch.tensor([[[[2.0, neg]]]])]  # (B=1, heads=1, q=1, k=2)
    teacher = [torch.tensor([[[[9.0, neg]]]]), torch.tensor([[[[0.0, neg]]]])]
    teacher += [torch.tensor([[[[5.0, -1e4]]]]), torch.tensor([[[[3.0, neg]]]])]
    # student 1 <-> teacher 2 (index 1), student 2 <-> teacher 4 (index 3); masked entries are 0 in both.
    expected = (1.0**2 + 0) / 2 + (1.0**2 + 0) / 2
    assert attention_score_loss(student, teacher, 2, 4).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="heads"):
        attention_score_loss([torch.zeros(1, 2, 1, 2)], [torch.zeros(1, 3, 1, 2)], 1, 1)
    with pytest.raises(ValueError, match="layers"):
        attention_score_loss(student, teacher, 2, 2)


def test_soft_cross_entropy_by_hand_and_batch_mean() -> None:
    student = [[0.5, -1.0, 2.0], [0.0, 0.0, 1.0]]
    teacher = [[1.0, 0.0, -1.0], [3.0, 2.0, 1.0]]
    expected = (hand_soft_ce(student[0], teacher[0]) + hand_soft_ce(student[1], teacher[1])) / 2
    got = soft_cross_entropy(torch.tensor(student), torch.tensor(teacher))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Batch mean, not batch x class mean (the official code's value is expected / 3).
    assert got.item() != pytest.approx(expected / 3)
    # Temperature applies to both sides.
    halved = soft_cross_entropy(torch.tensor(student) * 2, torch.tensor(teacher) * 2, temperature=2.0)
    assert halved.item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy_with_one_hot_teacher_is_cross_entropy() -> None:
    student = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot_teacher = F.one_hot(labels, 4).float() * 1000.0
    torch.testing.assert_close(soft_cross_entropy(student, one_hot_teacher), F.cross_entropy(student, labels))
    # As T -> small, the teacher distribution becomes its argmax: CE of the tempered student against it.
    teacher = torch.randn(5, 4)
    temperature = 1e-3
    torch.testing.assert_close(
        soft_cross_entropy(student, teacher, temperature),
        F.cross_entropy(student / temperature, teacher.argmax(-1)),
        rtol=1e-4,
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="temperature"):
        soft_cross_entropy(student, teacher, 0.0)


def test_span_soft_cross_entropy_by_hand_ignores_padding_counts_cls() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    s_start, s_end = torch.randn(2, 4), torch.randn(2, 4)
    t_start, t_end = torch.randn(2, 4), torch.randn(2, 4)
    got = span_soft_cross_entropy(s_start, s_end, t_start, t_end, mask)
    expected = 0.0
    for row, length in enumerate((3, 2)):
        for s, t in ((s_start, t_start), (s_end, t_end)):
            expected += hand_soft_ce(s[row, :length].tolist(), t[row, :length].tolist()) / 2
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # Padding positions do not matter, in either model.
    noisy = [x.clone() for x in (s_start, s_end, t_start, t_end)]
    for x in noisy:
        x[mask == 0] = 50.0
    assert span_soft_cross_entropy(*noisy, mask).item() == pytest.approx(expected, rel=1e-5)
    # [CLS] (position 0) counts: a teacher sure of "no answer" pulls the student towards position 0.
    no_answer = torch.tensor([[20.0, 0.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0]])
    loss_far = span_soft_cross_entropy(-no_answer, -no_answer, no_answer, no_answer, mask)
    loss_near = span_soft_cross_entropy(no_answer, no_answer, no_answer, no_answer, mask)
    assert loss_far.item() > 20 and loss_near.item() < 1e-3
    # A fully padded row is finite and contributes nothing.
    empty = torch.zeros(2, 4, dtype=torch.long)
    assert span_soft_cross_entropy(s_start, s_end, t_start, t_end, empty).item() == 0.0
    # The official reduction averages over batch x positions: the same sum divided by the padded length T = 4.
    official = span_soft_cross_entropy(s_start, s_end, t_start, t_end, mask, reduction="batch_and_positions")
    assert official.item() == pytest.approx(expected / 4, rel=1e-5)


def test_regression_loss_uses_teacher_scores() -> None:
    student = torch.tensor([[1.0], [2.0], [4.0]])
    teacher = torch.tensor([1.5, 2.0, 1.0])
    assert regression_loss(student, teacher).item() == pytest.approx((0.25 + 0 + 9) / 3)
    with pytest.raises(ValueError):
        regression_loss(student, teacher[:2])


def tiny(layers: int, hidden: int, labels: int = 3) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=99,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


def test_distillation_loss_terms_weights_and_gradients() -> None:
    teacher, student = tiny(4, 32).eval(), tiny(2, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    batch = {"input_ids": torch.randint(1, 99, (3, 6)) * mask, "attention_mask": mask}
    teacher_signals = capture(teacher, **batch)
    student_signals = forward_with_signals(student, **batch)
    loss_fn = DistillationLoss(16, 32, attention_weight=2.0, hidden_weight=0.5, prediction_weight=3.0)
    terms = loss_fn(student_signals, teacher_signals, batch["attention_mask"])
    assert set(terms) == {"attention", "hidden", "prediction", "loss"}
    expected = 2.0 * terms["attention"] + 0.5 * terms["hidden"] + 3.0 * terms["prediction"]
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["prediction"], soft_cross_entropy(student_signals.logits, teacher_signals.logits))
    terms["loss"].backward()
    assert loss_fn.hidden_loss.fit_dense.weight.grad is not None
    assert loss_fn.hidden_loss.fit_dense.weight.grad.abs().sum() > 0
    query = student.bert.encoder.layer[0].attention.self.query.weight
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert student.classifier.weight.grad is not None and student.classifier.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())

    agnostic = DistillationLoss(16, 32, task="agnostic")
    terms = agnostic(student_signals, teacher_signals)
    assert terms["prediction"].item() == 0.0
    torch.testing.assert_close(terms["loss"], terms["attention"] + terms["hidden"])


def test_distillation_loss_all_masked_batch_is_finite() -> None:
    teacher, student = tiny(4, 32).eval(), tiny(2, 16)
    batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long), "attention_mask": torch.zeros(2, 5, dtype=torch.long)}
    terms = DistillationLoss(16, 32)(forward_with_signals(student, **batch), capture(teacher, **batch))
    assert all(torch.isfinite(value) for value in terms.values())


def test_distillation_loss_span_and_regression_and_errors() -> None:
    signals = TeacherSignals(
        hidden_states=tuple(torch.randn(2, 3, 8) for _ in range(3)),
        attention_scores=[torch.randn(2, 4, 3, 3) for _ in range(2)],
        logits=torch.randn(2, 1),
        start_logits=torch.randn(2, 3),
        end_logits=torch.randn(2, 3),
    )
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    span = DistillationLoss(8, 8, task="span")(signals, signals, mask)
    assert span["prediction"].item() == pytest.approx(
        span_soft_cross_entropy(*(signals.start_logits, signals.end_logits) * 2, mask).item()
    )
    regression = DistillationLoss(8, 8, task="regression")(signals, signals)
    assert regression["prediction"].item() == 0.0
    with pytest.raises(ValueError, match="attention_mask"):
        DistillationLoss(8, 8, task="span")(signals, signals)
    no_logits = TeacherSignals(signals.hidden_states, signals.attention_scores)
    with pytest.raises(ValueError, match="logits"):
        DistillationLoss(8, 8)(no_logits, signals)
    with pytest.raises(ValueError, match="task"):
        DistillationLoss(8, 8, task="mlm")  # type: ignore[arg-type]
    official = DistillationLoss(8, 8, task="span", span_reduction="batch_and_positions")(signals, signals, mask)
    assert official["prediction"].item() == pytest.approx(span["prediction"].item() / 3)
    with pytest.raises(ValueError, match="span reduction"):
        DistillationLoss(8, 8, task="span", span_reduction="tokens")  # type: ignore[arg-type]
