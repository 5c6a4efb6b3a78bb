"""Model size as the report and ``effbert bench`` state it: parameters (paper convention) and counted MACs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from effbert.measure.latency import model_mode, shared_inputs


def model_params(model: nn.Module) -> int:
    """Parameters without the pooler: `param_count` (paper convention) for EffBert, else the sum of the rest."""
    from effbert.methods.efficientbert.modeling_effbert import EffBertPreTrainedModel
    from effbert.methods.efficientbert.supernet import param_count

    if isinstance(model, EffBertPreTrainedModel):
        return param_count(model)
    return sum(p.numel() for name, p in model.named_parameters() if "pooler" not in name.split("."))


def count_macs(model: nn.Module, seq_len: int, batch_size: int = 1) -> int:
    """Multiply-accumulates of one forward pass at (``batch_size``, ``seq_len``), counted, not estimated.

    The convention (stated wherever the figure is shown): matrix products only (linear layers, attention scores and
    the attention-weighted sum, as ``torch.utils.flop_counter.FlopCounterMode`` counts them: mm, addmm, bmm, baddbmm
    and scaled-dot-product attention), MACs = FLOPs / 2; embeddings lookups, LayerNorm, activations and softmax are
    not counted. The model runs once on the protocol's fixed inputs (on its own device, eval mode); its training flag
    is restored.

    Args:
        model: a model taking ``input_ids``, ``attention_mask``, ``token_type_ids``.
        seq_len: T.
        batch_size: B (1 gives MACs per sequence).

    Returns:
        the MAC count.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return sdpa_flop_count(query, key, value)  # FlopCounterMode passes tensor shapes

    target = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = shared_inputs([model], batch_size, seq_len, target)
    # torch counts the CUDA attention kernels but not the CPU one that scaled_dot_product_attention dispatches to
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_sdpa: cpu_sdpa_flops})
    # with autograd on: FlopCounterMode's module tracker hooks tensors that require grad (an EffBert MLP unit gets its
    # weight slices as arguments), which fails under no_grad / inference_mode
    with model_mode(model, training=False), torch.enable_grad(), counter:
        model(**inputs)
    return counter.get_total_flops() // 2
