"""Parameter and MAC counts against real tensors, torch's FLOP counter and the reference's per-block table."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from effbert.methods.efficientbert.expr import (
    ALL_SIZES,
    compile_expr,
    expr_params,
    intermediate_width,
    mlp_macs,
    mlp_params,
    paper_architectures,
    unit_macs,
    unit_params,
    vanilla,
)

# Reference section 2.2: FFN block parameters in millions at H = 540 for each size id "s_r".
REFERENCE_540 = {
    (1, 1): 0.5854, (1, 2): 0.2935, (1, 3): 0.1962, (1, 4): 0.1476,
    (2, 1): 1.1707, (2, 2): 0.5870, (2, 3): 0.3924, (2, 4): 0.2951,
    (3, 1): 1.7561, (3, 2): 0.8805, (3, 3): 0.5886, (3, 4): 0.4427,
    (4, 1): 2.3414, (4, 2): 1.1740, (4, 3): 0.7848, (4, 4): 0.5902,
}  # fmt: skip


@pytest.mark.parametrize(("hidden", "k"), [(540, 540), (540, 270), (540, 135), (360, 90), (13, 4)])
def test_unit_params_equal_real_module_numel(hidden: int, k: int) -> None:
    unit = nn.ModuleList([nn.Linear(hidden, k), nn.Linear(k, hidden), nn.LayerNorm(hidden)])
    assert unit_params(hidden, k) == sum(p.numel() for p in unit.parameters())
    assert unit_params(hidden, k, layer_norm=False) == sum(p.numel() for p in unit[:2].parameters())


@pytest.mark.parametrize("size", ALL_SIZES)
def test_mlp_params_equal_sliced_supernet_tensors(size: tuple[int, int]) -> None:
    """A layer owning 4 full-width units uses the first s units and the first k neurons, as in the reference."""
    hidden, (s, r) = 540, size
    k = intermediate_width(hidden, r)
    units = [
        (torch.empty(hidden, hidden), torch.empty(hidden), torch.empty(hidden, hidden), torch.empty(hidden))
        for _ in range(4)
    ]
    norms = [nn.LayerNorm(hidden) for _ in range(4)]
    used = 0
    for (w1, b1, w2, b2), norm in zip(units[:s], norms[:s], strict=True):
        used += w1[:k].numel() + b1[:k].numel() + w2[:, :k].numel() + b2.numel()
        used += sum(p.numel() for p in norm.parameters())
    assert mlp_params(hidden, s, r) == used
    assert round(mlp_params(hidden, s, r) / 1e6, 4) == REFERENCE_540[size]
    assert expr_params(vanilla(size), hidden) == used


def test_compiled_expressions_add_no_parameters() -> None:
    for expr in paper_architectures():
        assert sum(p.numel() for p in compile_expr(expr).parameters()) == 0


def test_final_model_mlp_total() -> None:
    total = sum(expr_params(expr, 540) for expr in paper_architectures())
    assert total == sum(mlp_params(540, s, r) for s, r in [(4, 2), (2, 1), (1, 2), (2, 2), (1, 2), (2, 3)])
    with pytest.raises(ValueError, match="no size id"):
        expr_params(vanilla(), 540)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (4, 3), (3, 4)])
def test_macs_match_torch_flop_counter(size: tuple[int, int]) -> None:
    hidden, tokens = 24, 10
    s, r = size
    k = intermediate_width(hidden, r)
    module = compile_expr(paper_architectures()[4])  # includes a mul; only the matmuls count
    x = torch.randn(tokens, hidden)
    args = (torch.randn(k, hidden), torch.randn(k), torch.randn(hidden, k), torch.randn(hidden))
    with FlopCounterMode(display=False) as counter:
        module(x, *args)
    assert counter.get_total_flops() == 2 * tokens * unit_macs(hidden, k)
    assert mlp_macs(hidden, s, r, tokens=tokens) == s * tokens * unit_macs(hidden, k)


def test_count_argument_errors() -> None:
    with pytest.raises(ValueError, match="width divisor"):
        intermediate_width(540, 5)
    with pytest.raises(ValueError, match="too small"):
        intermediate_width(3, 4)
    with pytest.raises(ValueError, match="size id"):
        mlp_params(540, 0, 1)
    with pytest.raises(ValueError, match="k must be"):
        unit_params(540, 0)
    with pytest.raises(ValueError, match="tokens"):
        mlp_macs(540, 1, 1, tokens=0)
