"""TinyBERT reuses effbert's KD objective: a plain BERT student of `student_config`'s shape distils from a BERT
teacher with the embedding, hidden-state (uniform layer map) and attention-score terms, then the prediction term."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

from effbert.distill.losses import DistillationLoss
from effbert.distill.trainer import DistillationModule
from effbert.methods.tinybert.student import parameter_count, student_config


def test_a_tinybert_student_trains_on_the_shared_kd_terms() -> None:
    torch.manual_seed(0)
    teacher_config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, num_labels=2
    )
    teacher = BertForSequenceClassification(teacher_config).eval()
    high = parameter_count(BertConfig(**{**teacher_config.to_dict(), "hidden_size": 16, "num_hidden_layers": 2}), 32)
    config = student_config(teacher_config, 2, (high // 2, high))
    config.num_labels = 2
    student = BertForSequenceClassification(config)
    ids = torch.randint(1, 60, (4, 10), generator=torch.Generator().manual_seed(1))
    step_one = DistillationModule(student, teacher, DistillationLoss(config.hidden_size, 32, prediction_weight=0.0))
    step_two = DistillationModule(
        student, teacher, DistillationLoss(config.hidden_size, 32, attention_weight=0.0, hidden_weight=0.0)
    )
    for module in (step_one, step_two):
        module.train()
        out = module(input_ids=ids)
        assert torch.isfinite(out.loss)
        out.loss.backward()
    assert all(p.grad is not None for p in student.bert.encoder.parameters())
    with torch.no_grad():  # every term is computed; the weights pick the step
        assert float(step_one(input_ids=ids).prediction) > 0 and float(step_two(input_ids=ids).attention) > 0
