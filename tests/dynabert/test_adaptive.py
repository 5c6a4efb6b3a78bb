"""DynaBERT's adaptive distillation: grid order, one teacher pass, and one backward equal to the per-sub-network
gradients summed (the official loop's accumulation)."""

from __future__ import annotations

import copy

import torch

from effbert.distill.losses import soft_cross_entropy
from effbert.methods.dynabert.adaptive import AdaptiveDistiller, grid
from effbert.methods.dynabert.subnetworks import kept_layers, subnetwork
from tests.dynabert.test_subnetworks import batch, tiny_model


def test_grid_runs_deepest_then_widest_first() -> None:
    assert grid([0.5, 1.0, 0.25], [0.5, 1.0]) == [
        (1.0, 1.0),
        (0.5, 1.0),
        (0.25, 1.0),
        (1.0, 0.5),
        (0.5, 0.5),
        (0.25, 0.5),
    ]


def test_the_summed_loss_has_the_accumulated_gradients_of_every_subnetwork() -> None:
    teacher = tiny_model()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    distiller = AdaptiveDistiller(student, teacher, widths=[1.0, 0.5], depths=[1.0, 0.5], hidden_weight=0.5).train()
    student.eval()  # no dropout: the two computations below must see the same function
    out = distiller(**batch())
    out["loss"].backward()
    combined = [p.grad.clone() for p in student.parameters() if p.grad is not None]
    assert set(out) >= {"loss_w1_d1", "loss_w0.5_d1", "loss_w1_d0.5", "loss_w0.5_d0.5", "logits"}
    assert all(p.grad is None for p in teacher.parameters())
    student.zero_grad(set_to_none=True)
    with torch.no_grad():
        target = teacher(**batch(), output_hidden_states=True)
    for width, depth in grid([1.0, 0.5], [1.0, 0.5]):  # the official loop: backward per sub-network, then one step
        with subnetwork(student, width, depth):
            got = student(**batch(), output_hidden_states=True)
        pairs = [0, *(i + 1 for i in kept_layers(4, depth))]
        hidden = sum(((s - target.hidden_states[t]) ** 2).mean() for s, t in zip(got.hidden_states, pairs, strict=True))
        (soft_cross_entropy(got.logits, target.logits) + 0.5 * hidden).backward()
    separate = [p.grad for p in student.parameters() if p.grad is not None]
    assert len(separate) == len(combined)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(combined, separate, strict=True))
