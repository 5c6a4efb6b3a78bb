"""ONNX export of a task student, an ONNX Runtime model that times like a PyTorch one, and the parity check.

:func:`onnx_bytes` exports a sequence-classification or span-QA model (EffBert or any Hugging Face model with the
same forward signature) through a thin wrapper whose forward takes ``(input_ids, attention_mask, token_type_ids)``
and returns plain tensors: ``logits``, or ``start_logits`` and ``end_logits``. Batch and sequence axes are dynamic.
The TorchScript exporter (``dynamo=False``) is used: it exports the student in about a second where the dynamo
exporter takes ten, with the same parity.

:class:`OnnxRuntimeModel` runs those bytes in an ``onnxruntime.InferenceSession`` on the CPU behind an
``nn.Module`` interface, so :func:`effbert.measure.latency.compare_latency` (the project's one latency protocol)
times it side by side with the PyTorch model. :func:`parity` compares both on real batches. Nothing here reads or
writes files.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "EXPORTER",
    "INPUT_NAMES",
    "OnnxRuntimeModel",
    "TaskOutputs",
    "onnx_bytes",
    "output_names",
    "parity",
]

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
"""The exported graph's inputs, int64 (batch, sequence) each, in this order."""

EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"
"""How the graph was produced, as recorded next to it."""

_SPAN_OUTPUTS = ("start_logits", "end_logits")
_CLASSIFICATION_OUTPUTS = ("logits",)


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The task outputs of ``model``: ``("start_logits", "end_logits")`` for span QA, else ``("logits",)``.

    Args:
        model: a Hugging Face sequence-classification or question-answering model (``...ForQuestionAnswering``).

    Returns:
        The output names, in the order the exported graph returns them.
    """
    return _SPAN_OUTPUTS if type(model).__name__.endswith("ForQuestionAnswering") else _CLASSIFICATION_OUTPUTS


class TaskOutputs(nn.Module):
    """``model`` with a positional ``(input_ids, attention_mask, token_type_ids)`` forward returning plain tensors.

    Args:
        model: a sequence-classification or span-QA model returning a ``ModelOutput``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, ...]:
        """Run the model.

        Args:
            input_ids: token ids (B, T).
            attention_mask: (B, T), 1 = token, 0 = padding.
            token_type_ids: segment ids (B, T).

        Returns:
            The task outputs named by :func:`output_names`: logits (B, C), or start and end logits (B, T) each.
        """
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        )
        return tuple(out[name] for name in self.names)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the TorchScript exporter's deprecation, tracer and constant-folding warnings inside the block only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        yield


def onnx_bytes(model: nn.Module, example_inputs: Mapping[str, Tensor], opset: int) -> bytes:
    """Export ``model`` (in eval mode) to an ONNX graph with dynamic batch and sequence axes.

    The model stays where it is and is left in eval mode (the exporter can switch it to training mode, and dropout
    would then break every later comparison).

    Args:
        model: a sequence-classification or span-QA model taking ``input_ids``, ``attention_mask`` and
            ``token_type_ids``.
        example_inputs: the three inputs (B, T) used to trace the graph; the graph accepts any other B and T. Give
            a batch with padding so that the masking path is traced as it runs on padded batches.
        opset: the ONNX opset version.

    Returns:
        The serialised ONNX model.

    Raises:
        KeyError: an input of :data:`INPUT_NAMES` is missing from ``example_inputs``.
    """
    wrapper = TaskOutputs(model).eval()
    device = next(model.parameters()).device
    args = tuple(example_inputs[name].to(device) for name in INPUT_NAMES)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    for name in wrapper.names:
        axes[name] = {0: "batch"} if name == "logits" else {0: "batch", 1: "sequence"}
    buffer = io.BytesIO()
    model.eval()
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(
                wrapper,
                args,
                buffer,  # type: ignore[arg-type]  # a file object works; the stub names paths only
                input_names=list(INPUT_NAMES),
                output_names=list(wrapper.names),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.eval()
    return buffer.getvalue()


class OnnxRuntimeModel(nn.Module):
    """An ONNX Runtime CPU session behind an ``nn.Module`` forward, to be timed and compared like the PyTorch model.

    It has no parameters; ``.to(device)`` and ``.eval()`` change nothing. Inputs are converted to int64 NumPy arrays
    and outputs come back as CPU float tensors.

    Args:
        model_bytes: a graph from :func:`onnx_bytes`.
        config: the PyTorch model's config (`effbert.measure.latency.compare_latency` reads ``vocab_size`` and
            ``max_position_embeddings`` from it).
        threads: ONNX Runtime intra-op threads; None takes torch's current thread count, so both sides of a
            comparison run with the same number.

    Attributes:
        config: as given.
        threads: the intra-op thread count of the session.
        input_names: the graph's inputs.
        output_names: the graph's outputs, in the order :meth:`forward` returns them.

    Raises:
        ValueError: ``threads`` < 1.
    """

    def __init__(self, model_bytes: bytes, config: Any, threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__()
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.config = config
        self.threads = threads or torch.get_num_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        # Idle ONNX Runtime threads would otherwise busy-wait for work and starve PyTorch's threads when the two
        # are timed in turns on the same cores (measured: PyTorch 10 ms -> 600 ms per batch on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor | tuple[Tensor, ...]:
        """Run the session.

        Args:
            input_ids: token ids (B, T).
            attention_mask: (B, T), 1 = token, 0 = padding; None = all ones.
            token_type_ids: segment ids (B, T); None = zeros.

        Returns:
            The one output (logits), or a tuple (start and end logits), as CPU tensors.
        """
        given = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
            "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
        }
        feed = {name: given[name].detach().cpu().numpy().astype(np.int64, copy=False) for name in self.input_names}
        outputs = [torch.from_numpy(array) for array in self.session.run(list(self.output_names), feed)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _named_outputs(result: Any, names: tuple[str, ...]) -> dict[str, Tensor]:
    """Task outputs of either model as ``{name: CPU float tensor}``."""
    if isinstance(result, Tensor):
        values: tuple[Any, ...] = (result,)
    elif isinstance(result, tuple) and not hasattr(result, "keys"):
        values = result
    else:
        values = tuple(result[name] for name in names)
    return {name: value.detach().float().cpu() for name, value in zip(names, values, strict=True)}


def parity(model: nn.Module, onnx_model: OnnxRuntimeModel, batches: Iterable[Mapping[str, Tensor]]) -> dict[str, Any]:
    """Largest absolute difference between the PyTorch model and its ONNX export over ``batches``.

    The PyTorch model runs in eval mode on its own device under ``torch.inference_mode()``; its training flag is
    restored afterwards.

    Args:
        model: the exported PyTorch model.
        onnx_model: its ONNX Runtime counterpart.
        batches: model inputs (``input_ids``, ``attention_mask``, ``token_type_ids``; (B, T) each).

    Returns:
        ``max_abs_diff`` over every output, ``per_output`` (name -> max abs difference), ``rows`` compared and
        ``batches``. A NaN difference counts as infinite.

    Raises:
        ValueError: ``batches`` is empty, or an output's shape differs between the two models.
    """
    names = onnx_model.output_names
    per_output = dict.fromkeys(names, 0.0)
    rows = count = 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                inputs = {name: batch[name] for name in INPUT_NAMES}
                expected = _named_outputs(
                    model(**{k: v.to(device) for k, v in inputs.items()}, return_dict=True), names
                )
                got = _named_outputs(onnx_model(**inputs), names)
                for name in names:
                    if expected[name].shape != got[name].shape:
                        raise ValueError(
                            f"output {name}: PyTorch shape {tuple(expected[name].shape)}, "
                            f"ONNX shape {tuple(got[name].shape)}"
                        )
                    diff = float((expected[name] - got[name]).abs().max()) if expected[name].numel() else 0.0
                    per_output[name] = max(per_output[name], math.inf if math.isnan(diff) else diff)
                rows += int(inputs["input_ids"].shape[0])
                count += 1
    finally:
        model.train(was_training)
    if not count:
        raise ValueError("no batches to compare")
    return {"max_abs_diff": max(per_output.values()), "per_output": per_output, "rows": rows, "batches": count}
