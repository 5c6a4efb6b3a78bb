"""Optional initialisations of the student from the teacher: the token table, or the whole encoder.

EfficientBERT initialises the supernet at random and warms it up on Wikipedia + BookCorpus for 10 epochs. At demo
scale (a few hundred thousand corpus tokens on a CPU) most of the 30522 x 128 token table would never see a
gradient, so ``warmup_kd.init_embeddings: teacher_pca`` starts it from the teacher's own word embeddings projected
onto their top principal components: the same vocabulary, a 128-d summary of what the teacher already knows
about each word. ``warmup_kd.init_encoder: teacher_projection`` starts the rest of the supernet from the teacher
projected onto the principal subspace of its hidden states (`project_teacher`); TinyBERT's plain BERT student gets
the same start (``tinybert.init_student``), so that the compared methods start alike. Off (``random``) in the paper
profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["head_from_teacher", "hidden_basis", "pca_token_table", "project_teacher"]


def _fix_signs(columns: torch.Tensor) -> torch.Tensor:
    """Flip each column so that its largest-magnitude entry is positive (principal directions have no sign)."""
    return columns * torch.sign(columns.gather(0, columns.abs().argmax(dim=0, keepdim=True)))


def pca_token_table(teacher_table: torch.Tensor, width: int, std: float) -> torch.Tensor:
    """Project a (V, D) embedding table onto its top ``width`` principal components, rescaled to ``std``.

    Args:
        teacher_table: the teacher's word-embedding matrix (V, D) with D >= ``width``.
        width: the student's token-table width (128 in the paper).
        std: the standard deviation of the result (the student's initializer range keeps LayerNorm inputs in the
            range the rest of its init expects).

    Returns:
        A (V, ``width``) float32 tensor; deterministic (SVD of the centred table, signs fixed so each component's
        largest-magnitude entry is positive).

    Raises:
        ValueError: ``width`` is larger than the teacher's width.
    """
    table = teacher_table.detach().to(torch.float64)
    if width > table.shape[1]:
        raise ValueError(f"cannot take {width} principal components of a {tuple(table.shape)} table")
    centred = table - table.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    components = u[:, :width] * s[:width]
    components = _fix_signs(components)
    return (components * (std / components.std())).to(torch.float32)


# --- the whole student from the teacher, projected onto the principal subspace of its hidden states ---------------


def hidden_basis(hidden_states: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """The top ``width`` principal directions (uncentred) of the teacher's hidden states, pooled over layers.

    Args:
        hidden_states: one (N, D) tensor of token states per teacher layer (embedding output included), padding
            removed.
        width: the student's hidden size H <= D.

    Returns:
        P (D, H) with orthonormal columns, float32; deterministic (eigenvectors' signs fixed as in `pca_token_table`).
    """
    states = torch.cat([h.detach().to(torch.float64) for h in hidden_states])
    if width > states.shape[1]:
        raise ValueError(f"cannot take {width} principal directions of {states.shape[1]}-wide hidden states")
    values, vectors = torch.linalg.eigh(states.T @ states)
    return _fix_signs(vectors[:, values.argsort(descending=True)[:width]]).to(torch.float32)


def _layer_norm(student_ln: Any, teacher_ln: Any, basis: torch.Tensor) -> None:
    """gamma_s = diag(P^T diag(gamma_t) P), beta_s = P^T beta_t."""
    student_ln.weight.copy_((basis * basis * teacher_ln.weight[:, None]).sum(0))
    student_ln.bias.copy_(basis.T @ teacher_ln.bias)


def _with_bias(linear: Any, basis_1: torch.Tensor) -> torch.Tensor:
    """[W | b] of a teacher Linear on the augmented input, mapped to the student's augmented space: (out, H+1)."""
    return torch.cat([linear.weight, linear.bias[:, None]], dim=1) @ basis_1


def _low_rank(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A, B with A @ B the best rank-``rank`` approximation of ``matrix``, the singular values split evenly."""
    u, s, vh = torch.linalg.svd(matrix.to(torch.float64), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(torch.float32), (root[:, None] * vh[:rank]).to(torch.float32)


def _attention(student_layer: Any, teacher_layer: Any, basis: torch.Tensor, heads: int) -> None:
    """Per head, the best rank-d_s factorisations of the teacher's query-key form and value-output map.

    Scores: ``q_t.k_t / sqrt(d_t) = x^T M x`` with ``M = Wq_h^T Wk_h`` on the bias-augmented input; the student's
    ``q_s.k_s / sqrt(d_s)`` reproduces its rank-d_s part (hence the (d_s/d_t)^(1/4) factor on each side). Values:
    ``Wo_h Wv_h`` projected on both sides, factorised the same way.
    """
    teacher_self, teacher_out = teacher_layer.attention.self, teacher_layer.attention.output
    student_self, student_out = student_layer.attention.self, student_layer.attention.output
    width = basis.shape[1]
    d_t, d_s = teacher_self.query.weight.shape[0] // heads, width // heads
    basis_1 = torch.zeros(basis.shape[0] + 1, width + 1)
    basis_1[:-1, :-1], basis_1[-1, -1] = basis, 1.0
    query, key, value = (_with_bias(m, basis_1) for m in (teacher_self.query, teacher_self.key, teacher_self.value))
    scale = (d_s / d_t) ** 0.25
    rows: dict[str, list[torch.Tensor]] = {"q": [], "k": [], "v": [], "o": []}
    for h in range(heads):
        span = slice(h * d_t, (h + 1) * d_t)
        left, right = _low_rank(query[span].T @ key[span], d_s)  # (H+1, d_s), (d_s, H+1)
        rows["q"].append(left.T * scale)
        rows["k"].append(right * scale)
        out, val = _low_rank(basis.T @ teacher_out.dense.weight[:, span] @ value[span], d_s)  # (H, d_s), (d_s, H+1)
        rows["v"].append(val)
        rows["o"].append(out)
    qkv = torch.cat([torch.cat(rows[k]) for k in ("q", "k", "v")])  # (3H, H+1), rows q | k | v, heads in order
    if hasattr(student_self, "qkv"):  # EffBERT's fused projection
        student_self.qkv.weight.copy_(qkv[:, :-1])
        student_self.qkv.bias.copy_(qkv[:, -1])
    else:  # a BERT student's query, key and value
        linears = (student_self.query, student_self.key, student_self.value)
        for block, linear in zip(qkv.split(width), linears, strict=True):
            linear.weight.copy_(block[:, :-1])
            linear.bias.copy_(block[:, -1])
    student_out.dense.weight.copy_(torch.cat(rows["o"], dim=1))
    student_out.dense.bias.copy_(basis.T @ teacher_out.dense.bias)
    _layer_norm(student_out.LayerNorm, teacher_out.LayerNorm, basis)


def _ranked_ffn(teacher_layer: Any, basis: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The teacher FFN in the subspace: W1 P (F, H), b1, P^T W2 (H, F), P^T b2, and its neurons most important first
    (|W1 row| x |W2 column| in the subspace)."""
    w1 = teacher_layer.intermediate.dense.weight @ basis
    w2 = basis.T @ teacher_layer.output.dense.weight
    order = (w1.norm(dim=1) * w2.norm(dim=0)).argsort(descending=True)
    return w1, teacher_layer.intermediate.dense.bias, w2, basis.T @ teacher_layer.output.dense.bias, order


def _ffn(student_layer: Any, teacher_layer: Any, basis: torch.Tensor) -> None:
    """A BERT student's FFN: the teacher's most important neurons (see `_ranked_ffn`), as many as it has; neurons
    beyond the teacher's count keep their random initialisation."""
    w1, b1, w2, b2, order = _ranked_ffn(teacher_layer, basis)
    take = order[: student_layer.intermediate.dense.weight.shape[0]]
    n = len(take)
    student_layer.intermediate.dense.weight[:n] = w1[take]
    student_layer.intermediate.dense.bias[:n] = b1[take]
    student_layer.output.dense.weight[:, :n] = w2[:, take]
    student_layer.output.dense.bias.copy_(b2)
    _layer_norm(student_layer.output.LayerNorm, teacher_layer.output.LayerNorm, basis)


def _mlp(student_mlp: Any, teacher_layer: Any, basis: torch.Tensor) -> None:
    """EffBERT's MLP units: the teacher's FFN neurons, most important first (see `_ranked_ffn`), dealt to the units
    in order: unit 1 gets the first ``width``, unit 2 the next, ...; every unit's LayerNorm is the FFN's. Neurons
    beyond the teacher's count keep their random initialisation."""
    w1, b1, w2, b2, order = _ranked_ffn(teacher_layer, basis)
    b2 = b2 / len(student_mlp.units)  # the units' outputs add up to P^T b2
    first = 0
    for unit in student_mlp.units:
        width = unit.intermediate.weight.shape[0]
        take = order[first : first + width]
        first += width
        n = len(take)
        unit.intermediate.weight[:n] = w1[take]
        unit.intermediate.bias[:n] = b1[take]
        unit.output.weight[:, :n] = w2[:, take]
        unit.output.bias.copy_(b2)
        _layer_norm(unit.LayerNorm, teacher_layer.output.LayerNorm, basis)


@torch.no_grad()
def project_teacher(student: Any, teacher: Any, basis: torch.Tensor, teacher_layers: Sequence[int]) -> None:
    """Initialise a student encoder (`EffBertModel`, or a plain BERT with the teacher's head count) from a BERT
    teacher through the basis P (D, H): h_s ~ P^T h_t.

    Embeddings: positions and segments projected; a BERT student's token table is the teacher's projected, an
    EffBERT student's trigram transformation is fitted (least squares over the vocabulary) so that its own token
    table reproduces the teacher's projected word embeddings from the middle token; LayerNorms
    ``gamma_s = diag(P^T diag(gamma_t) P)``, ``beta_s = P^T beta_t``. Student layer ``l`` takes teacher layer
    ``teacher_layers[l]`` (1-based, the KD layer map): attention by per-head low-rank factorisation (see
    `_attention`), the FFN or MLP units from the teacher's FFN neurons (see `_ffn`, `_mlp`). Not in the papers
    (EfficientBERT and TinyBERT start at random); measured against it in RESULTS.md.

    Args:
        student: the student encoder, trained in place afterwards.
        teacher: the Hugging Face BERT encoder.
        basis: P from `hidden_basis`.
        teacher_layers: the teacher layer (1-based) of each student layer.
    """
    se, te = student.embeddings, teacher.embeddings
    se.position_embeddings.weight.copy_(te.position_embeddings.weight[: se.position_embeddings.weight.shape[0]] @ basis)
    se.token_type_embeddings.weight.copy_(te.token_type_embeddings.weight @ basis)
    if hasattr(se, "embedding_transformation"):
        _fit_trigram(se, te.word_embeddings.weight @ basis)
    else:
        se.word_embeddings.weight.copy_(te.word_embeddings.weight @ basis)
    _layer_norm(se.LayerNorm, te.LayerNorm, basis)
    heads = student.config.num_attention_heads
    for student_layer, teacher_index in zip(student.encoder.layer, teacher_layers, strict=True):
        teacher_layer = teacher.encoder.layer[teacher_index - 1]
        _attention(student_layer, teacher_layer, basis, heads)
        if hasattr(student_layer, "mlp"):
            _mlp(student_layer.mlp, teacher_layer, basis)
        else:
            _ffn(student_layer, teacher_layer, basis)


def _fit_trigram(student_embeddings: Any, target: torch.Tensor) -> None:
    """EffBERT's trigram transformation fitted so that the middle token's slot maps its own token table to
    ``target`` (V, H) (least squares with a bias, the other slots zero)."""
    table = student_embeddings.word_embeddings.weight.to(torch.float64)
    system = torch.cat([table, torch.ones(table.shape[0], 1, dtype=torch.float64)], dim=1)  # (V, E+1)
    fit = torch.linalg.lstsq(system, target.to(torch.float64)).solution.to(torch.float32)  # (E+1, H)
    size = student_embeddings.embedding_size
    transform = torch.zeros_like(student_embeddings.embedding_transformation.weight)  # (H, 3E): next | current | prev
    transform[:, size : 2 * size] = fit[:-1].T
    student_embeddings.embedding_transformation.weight.copy_(transform)
    student_embeddings.embedding_transformation.bias.copy_(fit[-1])


@torch.no_grad()
def head_from_teacher(student: Any, teacher: Any, lift_weight: torch.Tensor, lift_bias: torch.Tensor) -> None:
    """Start a task student's head from its fine-tuned teacher's, through the KD projection ``h_t ~ W h_s + b``.

    Span heads (``qa_outputs``): ``W_qa W`` and ``W_qa b + b_qa``, the teacher's logits on the lifted states.
    Classification and regression heads: the student's pooler takes the H teacher pooler neurons the classifier
    weighs most (rows ``W_p[keep] W``, bias ``W_p[keep] b + b_p[keep]``) and the classifier their columns, so the
    student's logits are the teacher's computed from the lifted [CLS] state with the other pooler neurons dropped.
    Not in the paper (random heads); ``final_distill.task.init_head: teacher``.

    Args:
        student: an `EffBertForSequenceClassification` or `EffBertForQuestionAnswering`.
        teacher: the fine-tuned Hugging Face teacher with the same kind of head.
        lift_weight: the trained ``fit_dense`` weight W (D, H).
        lift_bias: its bias b (D,).
    """
    if hasattr(student, "qa_outputs"):
        span = teacher.qa_outputs
        student.qa_outputs.weight.copy_(span.weight @ lift_weight)
        student.qa_outputs.bias.copy_(span.weight @ lift_bias + span.bias)
        return
    pooler, classifier = teacher.base_model.pooler.dense, teacher.classifier
    width = student.base_model.pooler.dense.weight.shape[0]
    keep = classifier.weight.norm(dim=0).argsort(descending=True)[:width].sort().values
    student.base_model.pooler.dense.weight.copy_(pooler.weight[keep] @ lift_weight)
    student.base_model.pooler.dense.bias.copy_(pooler.weight[keep] @ lift_bias + pooler.bias[keep])
    student.classifier.weight.copy_(classifier.weight[:, keep])
    student.classifier.bias.copy_(classifier.bias)
