"""DynaBERT's sub-networks of a BERT-family model: sizes, kept layers, importance, rewiring, sliced forward passes.

A sub-network at width ``w`` keeps ``round(heads * w)`` heads and ``int(ffn * round(heads * w) / heads)`` FFN
neurons of every layer (the first ones: `rewire` puts the most important first); at depth ``d`` it keeps layers
``floor(i / d)`` for ``i < round(layers * d)``. Hidden size and embeddings are never sliced. `subnetwork` runs the
model's own forward on slices of its weights (views: gradients reach the full weights), so training and
evaluation share one code path with the full model.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effbert.models.surgery import encoder_of, swapped

__all__ = [
    "SlicedLinear",
    "extract",
    "importance",
    "kept_layers",
    "rewire",
    "subnetwork",
    "width_sizes",
]


def width_sizes(num_heads: int, intermediate_size: int, width: float) -> tuple[int, int]:
    """``(heads, ffn neurons)`` kept at width multiplier ``width`` (DynaBERT's rounding).

    Raises:
        ValueError: ``width`` outside (0, 1] or keeping no head.
    """
    heads = round(num_heads * width)
    if not 0 < width <= 1 or heads < 1:
        raise ValueError(f"width must be in (0, 1] and keep at least one of {num_heads} heads, got {width!r}")
    return heads, int(intermediate_size * heads / num_heads)


def kept_layers(num_layers: int, depth: float) -> list[int]:
    """The layers a sub-network at depth multiplier ``depth`` runs: ``floor(i / depth)`` for ``i < round(L d)``.

    Raises:
        ValueError: ``depth`` outside (0, 1] or keeping no layer.
    """
    count = round(num_layers * depth)
    if not 0 < depth <= 1 or count < 1:
        raise ValueError(f"depth must be in (0, 1] and keep at least one of {num_layers} layers, got {depth!r}")
    return [math.floor(i / depth + 1e-9) for i in range(count)]


class SlicedLinear(nn.Module):
    """``F.linear`` on the first ``rows`` output rows and the first ``cols`` input columns of ``full``'s weight
    (views of the parameters: gradients flow to ``full``)."""

    def __init__(self, full: nn.Linear, rows: int | None = None, cols: int | None = None) -> None:
        super().__init__()
        self.full = full
        self.rows = rows if rows is not None else full.out_features
        self.cols = cols if cols is not None else full.in_features

    def forward(self, x: Tensor) -> Tensor:
        """``x @ W[:rows, :cols].T + b[:rows]``."""
        bias = self.full.bias[: self.rows] if self.full.bias is not None else None
        return F.linear(x, self.full.weight[: self.rows, : self.cols], bias)


def _slices(layer: nn.Module, head_dim: int, heads: int, neurons: int) -> dict[tuple[Any, str], nn.Module]:
    """(parent module, attribute) -> its sliced stand-in, for one layer."""
    attention: Any = layer.attention
    ffn_in: Any = layer.intermediate
    ffn_out: Any = layer.output
    width = heads * head_dim
    return {
        (attention.self, "query"): SlicedLinear(attention.self.query, rows=width),
        (attention.self, "key"): SlicedLinear(attention.self.key, rows=width),
        (attention.self, "value"): SlicedLinear(attention.self.value, rows=width),
        (attention.output, "dense"): SlicedLinear(attention.output.dense, cols=width),
        (ffn_in, "dense"): SlicedLinear(ffn_in.dense, rows=neurons),
        (ffn_out, "dense"): SlicedLinear(ffn_out.dense, cols=neurons),
    }


@contextlib.contextmanager
def subnetwork(model: nn.Module, width: float = 1.0, depth: float = 1.0) -> Iterator[nn.Module]:
    """Within the block, ``model``'s forward is its sub-network at ``(width, depth)``; restored after."""
    config: Any = model.config
    heads, neurons = width_sizes(config.num_attention_heads, config.intermediate_size, width)
    head_dim = config.hidden_size // config.num_attention_heads
    encoder = encoder_of(model)
    own = encoder.layer
    kept = kept_layers(len(own), depth)
    swaps: dict[tuple[Any, str], nn.Module] = {(encoder, "layer"): nn.ModuleList(own[i] for i in kept)}
    for index in kept:
        swaps.update(_slices(own[index], head_dim, heads, neurons))
    with swapped(swaps):
        yield model


def extract(model: nn.Module, width: float = 1.0, depth: float = 1.0) -> nn.Module:
    """A standalone copy of the sub-network at ``(width, depth)``: smaller ``nn.Linear`` layers holding copies of the
    kept weights (the model's forward infers the head count from them), ``num_hidden_layers`` set."""
    with subnetwork(model, width, depth):
        compact = copy.deepcopy(model)
    for module in list(compact.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, SlicedLinear):
                linear = nn.Linear(child.cols, child.rows, bias=child.full.bias is not None)
                with torch.no_grad():
                    linear.weight.copy_(child.full.weight[: child.rows, : child.cols])
                    if linear.bias is not None and child.full.bias is not None:
                        linear.bias.copy_(child.full.bias[: child.rows])
                setattr(module, name, linear)
    config: Any = compact.config
    config.num_hidden_layers = len(encoder_of(compact).layer)
    return compact


def importance(model: nn.Module, batches: Iterable[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
    """Head and FFN-neuron importance of every layer on ``batches`` (each holding ``labels``): per batch, the
    absolute first-order effect of removing a head (``|sum(context_h * dL/dcontext_h)|``, the gradient of a head
    gate) or a neuron (``|sum(W1_j * dL/dW1_j) + b1_j * dL/db1_j|``), summed over batches. Gradients are cleared
    before every batch (the official code accumulates them, weighting early batches more).

    Returns:
        ``(heads (L, H), neurons (L, I))``.
    """
    config: Any = model.config
    layers = encoder_of(model).layer
    head_dim = config.hidden_size // config.num_attention_heads
    heads = torch.zeros(len(layers), config.num_attention_heads)
    neurons = torch.zeros(len(layers), config.intermediate_size)
    contexts: list[Tensor] = []

    def keep_context(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        args[0].retain_grad()
        contexts.append(args[0])

    hooks = [layer.attention.output.dense.register_forward_pre_hook(keep_context) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            contexts.clear()
            model(**batch).loss.backward()
            for index, (layer, context) in enumerate(zip(layers, contexts, strict=True)):
                assert context.grad is not None
                gate = (context * context.grad).reshape(*context.shape[:-1], -1, head_dim).sum(dim=(0, 1, 3))
                heads[index] += gate.abs().detach().cpu()
                dense = layer.intermediate.dense
                assert dense.weight.grad is not None and dense.bias.grad is not None
                effect = (dense.weight * dense.weight.grad).sum(1) + dense.bias * dense.bias.grad
                neurons[index] += effect.abs().detach().cpu()
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return heads, neurons


@torch.no_grad()
def rewire(model: nn.Module, head_scores: Tensor, neuron_scores: Tensor) -> None:
    """Reorder every layer's heads and FFN neurons by descending score, in place: the full model computes the same
    function (a permutation of the units), and every width keeps its most important units first."""
    config: Any = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    for layer, head_score, neuron_score in zip(encoder_of(model).layer, head_scores, neuron_scores, strict=True):
        order = torch.argsort(head_score, descending=True, stable=True)
        rows = (order[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)
        for projection in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
            projection.weight.copy_(projection.weight[rows])
            projection.bias.copy_(projection.bias[rows])
        out = layer.attention.output.dense
        out.weight.copy_(out.weight[:, rows])
        neuron_order = torch.argsort(neuron_score, descending=True, stable=True)
        ffn_in, ffn_out = layer.intermediate.dense, layer.output.dense
        ffn_in.weight.copy_(ffn_in.weight[neuron_order])
        ffn_in.bias.copy_(ffn_in.bias[neuron_order])
        ffn_out.weight.copy_(ffn_out.weight[:, neuron_order])
