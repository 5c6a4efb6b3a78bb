"""KD smoke check: a 2-layer student distilled from a 4-layer teacher with DistillationLoss learns."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

from effbert.distill import DistillationLoss, capture, forward_with_signals


def tiny(layers: int, hidden: int, intermediate: int, init_range: float) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=99,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=intermediate,
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=init_range,
    )
    return BertForSequenceClassification(config)


def random_batches(count: int, size: int, length: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Random token batches with per-row padding (every row keeps at least [CLS] plus 2 tokens)."""
    batches = []
    for _ in range(count):
        lengths = torch.randint(3, length + 1, (size,), generator=generator)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()  # (B, T)
        ids = torch.randint(1, 99, (size, length), generator=generator) * mask
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def test_student_distillation_reduces_total_loss() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    # A wider teacher init than BERT's 0.02 gives attention scores and logits with something to distil.
    teacher = tiny(layers=4, hidden=32, intermediate=37, init_range=0.1).eval()
    student = tiny(layers=2, hidden=16, intermediate=24, init_range=0.02).train()
    loss_fn = DistillationLoss(student_hidden=16, teacher_hidden=32)
    optimizer = torch.optim.AdamW([*student.parameters(), *loss_fn.parameters()], lr=3e-3)
    batches = random_batches(count=4, size=8, length=10, generator=generator)
    targets = [capture(teacher, **batch) for batch in batches]

    history: dict[str, list[float]] = {"attention": [], "hidden": [], "prediction": [], "loss": []}
    for step in range(30):
        batch, target = batches[step % 4], targets[step % 4]
        terms = loss_fn(forward_with_signals(student, **batch), target, batch["attention_mask"])
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        assert all(torch.isfinite(value) for value in terms.values())
        for name, value in terms.items():
            history[name].append(value.item())

    # Each average covers one pass over the 4 batches.
    initial = {name: sum(values[:4]) / 4 for name, values in history.items()}
    final = {name: sum(values[-4:]) / 4 for name, values in history.items()}
    assert initial["attention"] > 0.01 and initial["prediction"] > 0.5
    assert final["loss"] < 0.7 * initial["loss"], f"total loss went from {initial} to {final}"
    assert final["attention"] < initial["attention"] and final["hidden"] < initial["hidden"]
    assert final["prediction"] <= initial["prediction"]
