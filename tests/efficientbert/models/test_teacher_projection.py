"""``warmup_kd.init_encoder: teacher_projection``: the student started from the teacher through the principal
subspace of its hidden states (`effbert.methods.efficientbert.student_init`)."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel

from effbert.distill.losses import layer_map
from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
from effbert.methods.efficientbert.modeling_effbert import EffBertModel
from effbert.methods.efficientbert.student_init import hidden_basis, project_teacher


def tiny_teacher(layers: int = 2, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=32,  # a unit is at most H wide: one unit holds the whole FFN
        max_position_embeddings=16,
        attn_implementation="eager",
    )
    teacher = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so that every term of the mapping is exercised
        for name, parameter in teacher.named_parameters():
            if "LayerNorm.weight" in name:
                parameter.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
    return teacher


def student_for(teacher: BertModel, hidden: int, layers: int, unit_width: int, units: int = 1) -> EffBertModel:
    config = EffBertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        embedding_size=32,
        max_position_embeddings=16,
        ffn_units=[units] * layers,
        ffn_widths=[unit_width] * layers,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    torch.manual_seed(1)
    student = EffBertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # the token table is the student's own; here it can hold the teacher's exactly
        student.embeddings.word_embeddings.weight.copy_(teacher.embeddings.word_embeddings.weight)
    return student


def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 50, (3, 12), generator=generator)
    segments = torch.zeros_like(ids)
    segments[:, 6:] = 1
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0
    return {"input_ids": ids, "token_type_ids": segments, "attention_mask": mask}


def test_full_width_projection_reproduces_the_teacher() -> None:
    """With P = I, head dims equal and one unit as wide as the FFN, every mapped layer is the teacher's layer."""
    teacher = tiny_teacher(layers=2)
    student = student_for(teacher, hidden=32, layers=2, unit_width=32)
    project_teacher(student, teacher, torch.eye(32), layer_map(2, 2))
    batch = inputs()
    with torch.no_grad():
        t = teacher(**batch, output_hidden_states=True).hidden_states
        s = student(**batch, output_hidden_states=True).hidden_states
    keep = batch["attention_mask"].bool()
    for student_state, teacher_state in zip(s, t, strict=True):
        assert torch.allclose(student_state[keep], teacher_state[keep], atol=1e-4)


def test_skipped_layers_follow_the_kd_layer_map() -> None:
    teacher = tiny_teacher(layers=4)
    student = student_for(teacher, hidden=32, layers=2, unit_width=32)
    project_teacher(student, teacher, torch.eye(32), layer_map(2, 4))  # student layers <- teacher layers 2 and 4
    for student_layer, teacher_index in zip(student.encoder.layer, (2, 4), strict=True):
        unit = student_layer.mlp.units[0]
        teacher_ffn = teacher.encoder.layer[teacher_index - 1].intermediate.dense
        assert torch.equal(unit.intermediate.weight.sort(dim=0).values, teacher_ffn.weight.sort(dim=0).values)


def test_narrow_projection_starts_closer_to_the_teacher_than_random() -> None:
    teacher = tiny_teacher(layers=2)
    batch = inputs()
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        t = teacher(**batch, output_hidden_states=True).hidden_states
    basis = hidden_basis([h[keep] for h in t], 24)
    assert torch.allclose(basis.T @ basis, torch.eye(24), atol=1e-5)
    assert torch.equal(basis, hidden_basis([h[keep] for h in t], 24))  # deterministic

    def cosine(student: EffBertModel) -> float:
        with torch.no_grad():
            s = student(**batch, output_hidden_states=True).hidden_states
        lifted = [h[keep] @ basis.T for h in s]  # the objective's projection starts at P
        return min(
            float(torch.nn.functional.cosine_similarity(a, b[keep], dim=-1).mean())
            for a, b in zip(lifted, t, strict=True)
        )

    random = student_for(teacher, hidden=24, layers=2, unit_width=24, units=2)
    projected = student_for(teacher, hidden=24, layers=2, unit_width=24, units=2)
    project_teacher(projected, teacher, basis, layer_map(2, 2))
    assert cosine(projected) > 0.8 > 0.2 > cosine(random)


def test_head_from_teacher_gives_the_teachers_logits_at_full_width() -> None:
    from transformers import BertForQuestionAnswering, BertForSequenceClassification

    from effbert.methods.efficientbert.modeling_effbert import (
        EffBertForQuestionAnswering,
        EffBertForSequenceClassification,
    )
    from effbert.methods.efficientbert.student_init import head_from_teacher

    encoder = tiny_teacher(layers=2)
    batch = inputs()
    for teacher_class, student_class in (
        (BertForSequenceClassification, EffBertForSequenceClassification),
        (BertForQuestionAnswering, EffBertForQuestionAnswering),
    ):
        torch.manual_seed(3)
        teacher = teacher_class(encoder.config).eval()
        teacher.base_model.load_state_dict(encoder.state_dict(), strict=False)
        if teacher.base_model.pooler is not None:  # a pooler that matters
            teacher.base_model.pooler.dense.bias.data.normal_(0.0, 0.5)
        bare = student_for(encoder, hidden=32, layers=2, unit_width=32)
        project_teacher(bare, encoder, torch.eye(32), layer_map(2, 2))
        student = student_class(bare.config).eval()
        student.effbert.load_state_dict(bare.state_dict(), strict=False)
        head_from_teacher(student, teacher, torch.eye(32), torch.zeros(32))
        with torch.no_grad():
            t, s = teacher(**batch), student(**batch)
        for name in ("logits", "start_logits", "end_logits"):
            if name in t:
                keep = batch["attention_mask"].bool() if name != "logits" else slice(None)
                assert torch.allclose(s[name][keep], t[name][keep], atol=1e-4), name


def bert_student(teacher: BertModel, hidden: int, layers: int, ffn: int) -> BertModel:
    """A TinyBERT-shaped student: a plain BERT with the teacher's heads (``tinybert.init_student``)."""
    config = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=ffn,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    torch.manual_seed(1)
    return BertModel(config, add_pooling_layer=False).eval()


def test_a_bert_student_at_full_width_is_the_teacher_and_a_narrow_one_starts_close() -> None:
    teacher = tiny_teacher(layers=4)
    batch = inputs()
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        t = teacher(**batch, output_hidden_states=True).hidden_states
    full = bert_student(teacher, hidden=32, layers=4, ffn=32)
    project_teacher(full, teacher, torch.eye(32), layer_map(4, 4))
    with torch.no_grad():
        s = full(**batch, output_hidden_states=True).hidden_states
    for student_state, teacher_state in zip(s, t, strict=True):
        assert torch.allclose(student_state[keep], teacher_state[keep], atol=1e-4)
    skipping = bert_student(teacher, hidden=32, layers=2, ffn=32)
    project_teacher(skipping, teacher, torch.eye(32), layer_map(2, 4))  # student layers <- teacher layers 2 and 4
    for student_layer, teacher_index in zip(skipping.encoder.layer, (2, 4), strict=True):
        ffn, teacher_ffn = student_layer.intermediate.dense, teacher.encoder.layer[teacher_index - 1].intermediate.dense
        assert torch.equal(ffn.weight.sort(dim=0).values, teacher_ffn.weight.sort(dim=0).values)

    basis = hidden_basis([h[keep] for h in t], 24)

    def cosine(student: BertModel) -> float:
        with torch.no_grad():
            states = student(**batch, output_hidden_states=True).hidden_states
        pairs = zip(states, (t[0], t[2], t[4]), strict=True)
        return min(
            float(torch.nn.functional.cosine_similarity(a[keep] @ basis.T, b[keep], dim=-1).mean()) for a, b in pairs
        )

    random, projected = bert_student(teacher, 24, 2, 20), bert_student(teacher, 24, 2, 20)
    project_teacher(projected, teacher, basis, layer_map(2, 4))
    assert cosine(projected) > 0.7 > 0.2 > cosine(random)
