"""The student's linear layers at inference: one oneDNN call for a linear layer and what follows it.

On a CPU in fp32 with autograd off, ``torch.ops.mkldnn._linear_pointwise`` (the kernel behind torch.compile's CPU
linear layers) multiplies faster than ``F.linear`` (MKL) at the student's shapes and applies an activation or a
residual add inside the same call, so the result is not written and read again. Everywhere else (training, any
other device or dtype, autocast, tracing and export, a torch without oneDNN) the same functions compute the eager
composite. `tanh` is the one element-wise function here: torch's own is three times slower than the logistic function
on a CPU. The results agree to float rounding (a different summation order in the multiply; oneDNN's activation
approximations), about 1e-6 on the student's activations.

A parameter's weight is handed to oneDNN in its blocked layout, converted on first use and cached per parameter
(module-level: the modules stay deep-copyable and picklable); an in-place change (an optimizer step,
``load_state_dict``) bumps the parameter's version counter and the next call converts it again.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FusedLinear", "PostOp", "fused_path", "linear", "linear_add", "tanh", "use_fused_linears"]

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")

_PACKED: dict[int, tuple[weakref.ref[Tensor], int, int, Tensor]] = {}
"""id(parameter) -> (the parameter, its version, its data pointer, its weight in oneDNN's layout)."""


@dataclass(frozen=True)
class PostOp:
    """An activation as oneDNN applies it after the multiply (see ``mkldnn::_linear_pointwise``).

    Attributes:
        attr: the post-op name (``"gelu"``, ``"tanh"``, ...).
        scalars: its scalar arguments (the negative slope of ``"leaky_relu"``).
        algorithm: its variant (GELU's ``"none"`` or ``"tanh"``), ``""`` when it has none.
    """

    attr: str
    scalars: tuple[float, ...] = ()
    algorithm: str = ""


def fused_path(x: Tensor, weight: Tensor) -> bool:
    """Whether ``x @ weight.T`` runs on the fused oneDNN kernel: fp32 CPU tensors, autograd off (the kernel has no
    backward), no autocast, not under tracing or torch.compile/export, and a torch built with oneDNN."""
    return (
        _ONEDNN
        and not _eager(x)
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
    )


def _eager(t: Tensor) -> bool:
    """Whether to keep torch's own ops: autograd on, another device than the CPU, tracing or torch.compile/export."""
    return torch.is_grad_enabled() or t.device.type != "cpu" or torch.jit.is_tracing() or torch.compiler.is_compiling()


def tanh(t: Tensor) -> Tensor:
    """``torch.tanh(t)``; on a CPU with autograd off as ``2 sigmoid(2t) - 1``, the same function (about 2e-7 apart
    in fp32) in a third of the time at the student's shapes."""
    if _eager(t):
        return torch.tanh(t)
    return torch.sigmoid(t * 2).mul_(2).sub_(1)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, post_op: PostOp | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, with ``post_op`` applied inside the kernel on the fused path.

    Callers apply the activation themselves when `fused_path` is False; without ``post_op`` this function is
    ``F.linear`` there.
    """
    if not fused_path(x, weight):
        assert post_op is None, "post_op needs the fused path; apply the activation after F.linear"
        return F.linear(x, weight, bias)
    op = post_op or PostOp("none")
    packed = _packed(weight, x)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, op.attr, list(op.scalars), op.algorithm)


def linear_add(x: Tensor, weight: Tensor, bias: Tensor | None, other: Tensor) -> Tensor:
    """``other + F.linear(x, weight, bias)`` (a residual connection), the add inside the kernel on the fused path."""
    fits = other.shape == (*x.shape[:-1], weight.shape[0]) and other.dtype == x.dtype and other.is_contiguous()
    if not (fits and fused_path(x, weight)):
        return other + F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, _packed(weight, x), bias, "add")


def _packed(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` in oneDNN's blocked layout (any number of rows of ``x`` can use it), cached while the parameter
    is unchanged; a non-parameter (a supernet's slice) or an inference tensor (no version counter) is passed as is."""
    if not isinstance(weight, nn.Parameter) or torch.is_inference(weight):
        return weight
    key = id(weight)
    entry = _PACKED.get(key)
    live = entry is not None and entry[0]() is weight
    if entry is not None and live and entry[1] == weight._version and entry[2] == weight.data_ptr():
        return entry[3]
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, max(1, x.numel() // x.shape[-1]))
    if not live:  # first sight of this parameter: drop its entry when it is freed
        weakref.finalize(weight, _PACKED.pop, key, None)
    _PACKED[key] = (weakref.ref(weight), weight._version, weight.data_ptr(), packed)
    return packed


class FusedLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state_dict keys) whose forward runs on `linear`."""

    def forward(self, input: Tensor) -> Tensor:
        """``F.linear(input, weight, bias)``, on oneDNN at inference."""
        return linear(input, self.weight, self.bias)


def use_fused_linears(model: nn.Module) -> nn.Module:
    """Run every plain ``nn.Linear`` of ``model`` on `linear` (same parameters, keys and outputs to float rounding),
    in place: ``effbert bench`` times BERT-base this way beside its stock form, so the speed-up can be read with the
    same multiply kernel on both sides."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = FusedLinear
    return model
