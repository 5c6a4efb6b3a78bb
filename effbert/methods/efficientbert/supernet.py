"""The weight-sharing supernet: select a sub-architecture by slicing, extract it as a compact model, count params.

A supernet is an ordinary `EffBertModel` (or head model) whose config sets ``max_ffn_units`` (4) and
``max_ffn_width`` (H): every layer then owns 4 units of full width. `set_active` / `active` choose, per layer, the
expression, the first ``s`` units and the first ``k`` intermediate neurons; the choice is runtime state of the
modules (the config keeps its defaults, so checkpoints always hold the full supernet, as in the paper). `materialize`
copies the active slice into a compact model with contiguous weights whose outputs equal the sliced supernet's;
`slice_frame` cuts a narrower or deeper frame out of it (EfficientBERT-TINY and ++).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn

from effbert.methods.efficientbert.architecture import Architecture, check_layer
from effbert.methods.efficientbert.configuration_effbert import VANILLA_EXPR, EffBertConfig
from effbert.methods.efficientbert.expr import unit_params
from effbert.methods.efficientbert.modeling_effbert import (
    EffBertLayer,
    EffBertMLP,
    EffBertModel,
    EffBertPreTrainedModel,
)

__all__ = [
    "active",
    "active_architecture",
    "attention_params",
    "compact_config",
    "embedding_params",
    "materialize",
    "param_count",
    "set_active",
    "slice_frame",
    "supernet_config",
]

ModelT = TypeVar("ModelT", bound=EffBertPreTrainedModel)


def supernet_config(
    hidden_size: int = 540,
    num_hidden_layers: int = 6,
    num_attention_heads: int = 12,
    max_ffn_units: int = 4,
    **kwargs: Any,
) -> EffBertConfig:
    """A supernet config: every layer owns ``max_ffn_units`` units of width ``hidden_size``, all active, GELU MLPs.

    This is the maximal network of the paper's warm-up distillation (6 layers x 4 units x 540 at the defaults).

    Args:
        hidden_size: hidden size H (also the maximum intermediate width).
        num_hidden_layers: number of layers L.
        num_attention_heads: attention heads (the teacher's count).
        max_ffn_units: units owned by every layer.
        **kwargs: any other `EffBertConfig` field.
    """
    return EffBertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        ffn_exprs=[VANILLA_EXPR] * num_hidden_layers,
        ffn_units=[max_ffn_units] * num_hidden_layers,
        ffn_widths=[hidden_size] * num_hidden_layers,
        max_ffn_units=max_ffn_units,
        max_ffn_width=hidden_size,
        **kwargs,
    )


def _body(model: nn.Module) -> EffBertModel:
    """The `EffBertModel` of a bare or head model."""
    body = model if isinstance(model, EffBertModel) else getattr(model, "effbert", None)
    if not isinstance(body, EffBertModel):
        raise TypeError(f"expected an EffBertModel or an EffBert head model, got {type(model).__name__}")
    return body


def _blocks(model: nn.Module) -> list[EffBertMLP]:
    return [layer.mlp for layer in _body(model).encoder.layer if isinstance(layer, EffBertLayer)]


def _check_fits(model: nn.Module, architecture: Architecture) -> None:
    """Raise ValueError unless ``architecture`` can run on ``model``'s owned weights."""
    config = _body(model).config
    if architecture.hidden_size != config.hidden_size or architecture.num_layers != config.num_hidden_layers:
        raise ValueError(
            f"architecture {architecture.name!r} has hidden size {architecture.hidden_size} and "
            f"{architecture.num_layers} layers, the model {config.hidden_size} and {config.num_hidden_layers}"
        )
    for index, (block, layer) in enumerate(zip(_blocks(model), architecture.layers, strict=True)):
        units, width = block.capacity
        if layer.units > units or layer.width > width:
            raise ValueError(
                f"architecture {architecture.name!r}: layer {index + 1} needs {layer.units} units of width "
                f"{layer.width}, the model's layer owns {units} units of width {width}"
            )


def set_active(model: nn.Module, architecture: Architecture) -> None:
    """Make ``model`` (a supernet) run ``architecture``: per layer its expression, first units and first neurons.

    Args:
        model: an `EffBertModel` or head model.
        architecture: the sub-architecture, at the model's hidden size and layer count.

    Raises:
        ValueError: the architecture does not fit the model's owned weights.
        TypeError: not an EffBert model.
    """
    _check_fits(model, architecture)
    for block, layer in zip(_blocks(model), architecture.layers, strict=True):
        block.set_active(layer.expr, layer.units, layer.width)


def active_architecture(model: nn.Module, name: str = "active") -> Architecture:
    """The architecture ``model`` currently runs (validated as an `Architecture`).

    Raises:
        ValueError: a layer's active setting is not a valid architecture layer.
    """
    hidden = _body(model).config.hidden_size
    for index, block in enumerate(_blocks(model)):
        errors = check_layer(block.expr_text, block.active_units, block.active_width, hidden)
        if errors:
            raise ValueError(f"layer {index + 1} of the active setting: {'; '.join(errors)}")
    layers = [
        {"expr": block.expr_text, "units": block.active_units, "width": block.active_width} for block in _blocks(model)
    ]
    return Architecture.from_dict({"name": name, "hidden_size": hidden, "layers": layers})


@contextmanager
def active(model: nn.Module, architecture: Architecture) -> Iterator[nn.Module]:
    """Run ``architecture`` on ``model`` inside the block and restore the previous setting on exit.

    Yields:
        ``model`` itself.
    """
    saved = [(block.expr_text, block.active_units, block.active_width) for block in _blocks(model)]
    set_active(model, architecture)
    try:
        yield model
    finally:
        for block, setting in zip(_blocks(model), saved, strict=True):
            block.set_active(*setting)


def _leading_block(source: torch.Tensor, shape: torch.Size, key: str) -> torch.Tensor:
    """``source[:shape[0], :shape[1], ...]`` as a new contiguous tensor."""
    if source.dim() != len(shape) or any(want > have for want, have in zip(shape, source.shape, strict=True)):
        raise ValueError(f"cannot slice {key} of shape {tuple(source.shape)} to {tuple(shape)}")
    return source[tuple(slice(0, n) for n in shape)].detach().clone().contiguous()


def compact_config(config: EffBertConfig, architecture: Architecture) -> EffBertConfig:
    """``config`` (a supernet's) running exactly ``architecture``: its hidden size and depth, its ``ffn_*`` lists
    and no spare capacity."""
    values = config.to_dict()
    values.update(
        hidden_size=architecture.hidden_size,
        num_hidden_layers=architecture.num_layers,
        ffn_exprs=architecture.exprs,
        ffn_units=architecture.units,
        ffn_widths=architecture.widths,
        max_ffn_units=None,
        max_ffn_width=None,
    )
    return EffBertConfig.from_dict(values)


def materialize(supernet: ModelT, architecture: Architecture | None = None) -> ModelT:
    """Extract ``architecture`` from a supernet as a compact model of the same class with contiguous weights.

    The compact model owns exactly the active units and neurons: unit ``j < s`` of layer ``l`` gets
    ``W1[:k]``, ``b1[:k]``, ``W2[:, :k]``, ``b2`` and the LayerNorm of the supernet's unit ``j``; embeddings,
    attention, pooler and task heads are copied. Its config is the supernet's with the architecture's ``ffn_*``
    lists and no capacity (``max_ffn_units = max_ffn_width = None``). Device, dtype and train/eval mode follow the
    supernet. The supernet itself is not changed.

    Args:
        supernet: an `EffBertModel` or head model.
        architecture: what to extract; default: the supernet's active architecture.

    Returns:
        The compact model; its outputs equal the supernet's with ``architecture`` active.

    Raises:
        ValueError: the architecture does not fit the supernet.
    """
    architecture = active_architecture(supernet) if architecture is None else architecture
    _check_fits(supernet, architecture)
    return _copy_leading(supernet, compact_config(supernet.config, architecture), list(range(architecture.num_layers)))


def slice_frame(supernet: ModelT, architecture: Architecture, layers: Sequence[int] | None = None) -> ModelT:
    """Cut ``architecture`` of a narrower frame out of a supernet, as EfficientBERT-TINY and ++ are (reference 3.6).

    Every tensor keeps its leading block at the architecture's hidden size H' (embedding projection rows, position
    and segment columns, LayerNorms, every encoder matrix ``[:H', :H']`` with query, key and value sliced each on
    its own); the heads stay as many, each ``H' / heads`` wide. Student layer ``j`` comes from supernet layer
    ``layers[j]`` (default: layer ``j``; EfficientBERT++ ``[0, 0, 1, 1, ...]``); its first units and neurons are
    taken as `materialize` takes them. At the supernet's own frame and ``layers`` the identity, the result equals
    ``materialize(supernet, architecture)``.

    Raises:
        ValueError: a wider architecture, a layer map of another length or out of range, or a layer that needs more
            units or neurons than its source layer owns.
    """
    config = _body(supernet).config
    picked = list(range(architecture.num_layers)) if layers is None else list(layers)
    if architecture.hidden_size > config.hidden_size:
        raise ValueError(f"architecture {architecture.name!r} is wider ({architecture.hidden_size}) than the supernet")
    if len(picked) != architecture.num_layers or not all(0 <= i < config.num_hidden_layers for i in picked):
        raise ValueError(
            f"layer map {picked} must give each of the {architecture.num_layers} layers a supernet layer "
            f"(0..{config.num_hidden_layers - 1})"
        )
    blocks = _blocks(supernet)
    for index, (source, layer) in enumerate(zip(picked, architecture.layers, strict=True)):
        units, width = blocks[source].capacity
        if layer.units > units or layer.width > width:
            raise ValueError(
                f"architecture {architecture.name!r}: layer {index + 1} needs {layer.units} units of width "
                f"{layer.width}, supernet layer {source + 1} owns {units} units of width {width}"
            )
    return _copy_leading(supernet, compact_config(supernet.config, architecture), picked)


_LAYER_KEY = re.compile(r"(^|\.)encoder\.layer\.(\d+)\.")


def _copy_leading(supernet: ModelT, config: EffBertConfig, layers: Sequence[int]) -> ModelT:
    """A model of ``config`` whose every tensor is the leading block of the supernet's (layer ``j`` from
    ``layers[j]``; the fused query/key/value tensors sliced per part). Device, dtype and mode follow the supernet."""
    config._attn_implementation = supernet.config._attn_implementation
    if isinstance(supernet, EffBertModel):
        compact: Any = EffBertModel(config, add_pooling_layer=supernet.pooler is not None)
    else:
        compact = type(supernet)(config)
    reference = next(supernet.parameters())
    compact.to(device=reference.device, dtype=reference.dtype)
    source = supernet.state_dict()
    state = {}
    for key, target in compact.state_dict().items():
        origin = _LAYER_KEY.sub(lambda m: f"{m.group(1)}encoder.layer.{layers[int(m.group(2))]}.", key, count=1)
        if key.endswith(("qkv.weight", "qkv.bias")):
            parts = zip(source[origin].chunk(3), target.chunk(3), strict=True)
            state[key] = torch.cat([_leading_block(have, want.shape, origin) for have, want in parts])
        else:
            state[key] = _leading_block(source[origin], target.shape, origin)
    compact.load_state_dict(state, strict=True)
    compact.train(supernet.training)
    return compact


def embedding_params(config: EffBertConfig) -> int:
    """Parameters of the embeddings: token table, trigram projection, positions, segments, LayerNorm."""
    hidden, emb = config.hidden_size, config.embedding_size
    return (
        config.vocab_size * emb
        + 3 * emb * hidden
        + hidden
        + (config.max_position_embeddings + config.type_vocab_size) * hidden
        + 2 * hidden
    )


def attention_params(hidden_size: int) -> int:
    """Parameters of one attention block: Q, K, V and output projections with biases, plus its LayerNorm."""
    return 4 * (hidden_size * hidden_size + hidden_size) + 2 * hidden_size


def param_count(
    config_or_model: EffBertConfig | nn.Module,
    include_embeddings: bool = True,
    include_pooler: bool = False,
    fit_dense_size: int | None = None,
) -> int:
    """Parameters of the ACTIVE architecture, in the paper's convention (no pooler or task head by default).

    For a model, the active setting of its modules counts (a supernet with `set_active` counts only the slice);
    for a config, its ``ffn_*`` lists. Counted: embeddings, every attention block, and the active MLP units
    (``W1[:k]``, ``b1[:k]``, ``W2[:, :k]``, ``b2``, LayerNorm).

    Args:
        config_or_model: an `EffBertConfig`, or an EffBert bare/head model.
        include_embeddings: count the embedding block.
        include_pooler: add the pooler (``H*H + H``); for a model only when it has one.
        fit_dense_size: when given, add the distillation projection ``Linear(H -> fit_dense_size)`` that the paper
            counts (768 for a BERT-base teacher: 15.74M for EfficientBERT, 15.32M without it).

    Returns:
        The parameter count.
    """
    if isinstance(config_or_model, EffBertConfig):
        config = config_or_model
        architecture = config.architecture()
        has_pooler = True
    else:
        body = _body(config_or_model)
        config = body.config
        architecture = active_architecture(body)
        has_pooler = body.pooler is not None
    hidden = config.hidden_size
    total = config.num_hidden_layers * attention_params(hidden)
    total += sum(layer.units * unit_params(hidden, layer.width) for layer in architecture.layers)
    if include_embeddings:
        total += embedding_params(config)
    if include_pooler and has_pooler:
        total += hidden * hidden + hidden
    if fit_dense_size is not None:
        total += hidden * fit_dense_size + fit_dense_size
    return total
