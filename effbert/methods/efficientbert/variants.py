"""The EfficientBERT variants of the paper (reference sections 3.4 and 3.6), built beside the main student.

- ``plus`` (EfficientBERT+): the searched architecture cut from stage 3's weight-sharing supernet *after* its
  multi-task task KD (`plus_student`), task heads and ``fit_dense`` included; no general KD, task KD starts from those
  weights and that task's head (`load_plus_head`; WNLI, which the multi-task KD leaves out, borrows QNLI's head).
- ``tiny`` (EfficientBERT-TINY): the searched sizes and expressions at ``student.tiny_hidden_size`` (paper: 360 of
  540), cut from the warm-up supernet's leading dims (`supernet.slice_frame`), then general and task KD.
- ``plusplus`` (EfficientBERT++): the same slice with every searched layer twice (12 layers from 6), supernet layer
  ``i`` starting student layers ``2i`` and ``2i + 1``; the teacher's layers then map 1:1.

Functions of params sections, models and state dicts; the stage recipes read and write the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from effbert.methods.efficientbert.architecture import Architecture
from effbert.params import VARIANTS, StudentParams

__all__ = [
    "HEAD_DONOR",
    "VARIANT_LABELS",
    "VARIANT_SUMMARIES",
    "load_plus_head",
    "plus_student",
    "supernet_layers",
    "variant_frame",
]

VARIANT_LABELS = {"plus": "EfficientBERT+", "tiny": "EfficientBERT-TINY", "plusplus": "EfficientBERT++"}
"""How cards, tables and figures name each variant."""

VARIANT_SUMMARIES = {
    "plus": "EfficientBERT+: no task-agnostic distillation of its own; the searched architecture's weights and task "
    "head were cut from the search's stage-3 supernet after its multi-task distillation over the GLUE tasks, then "
    "distilled on the task",
    "tiny": "EfficientBERT-TINY: the searched expressions and sizes at a narrower hidden size, every weight cut from "
    "the leading dimensions of the warm-up supernet, then distilled task-agnostically and on the task",
    "plusplus": "EfficientBERT++: as EfficientBERT-TINY, with every searched layer twice (each pair starting from one "
    "supernet layer), the teacher's layers mapped one to one",
}
"""A variant in one sentence (its model card's "What it is")."""

HEAD_DONOR = {"wnli": "qnli"}
"""EfficientBERT+: the task whose multi-task head a task without one starts from (the official code's rule)."""


def _known(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (known: {' '.join(VARIANTS)})")


def variant_frame(student: StudentParams, variant: str) -> StudentParams:
    """The frame a variant's student has: EfficientBERT+ the main one; TINY ``student.tiny_hidden_size`` wide; ++
    as wide as TINY and twice as deep."""
    _known(variant)
    if variant == "plus":
        return student
    layers = student.num_layers * (2 if variant == "plusplus" else 1)
    return student.model_copy(update={"hidden_size": student.tiny_hidden_size, "num_layers": layers})


def supernet_layers(variant: str, num_layers: int) -> list[int]:
    """The supernet layer each student layer starts from: ``[0, 0, 1, 1, ...]`` for ++, else ``[0, 1, ...]``.

    Args:
        variant: the variant.
        num_layers: the supernet's (main frame's) layer count.
    """
    _known(variant)
    if variant == "plusplus":
        return [layer // 2 for layer in range(2 * num_layers)]
    return list(range(num_layers))


def plus_student(
    supernet: Any, state: Mapping[str, torch.Tensor], architecture: Architecture
) -> tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """EfficientBERT+'s start: ``architecture`` cut from stage 3's multi-task weight-sharing supernet.

    Args:
        supernet: an `EffBertModel` of the main frame (the warm-up supernet; its weights are replaced).
        state: the weight-sharing module's state dict (``body.*``, ``classifiers.<task>.*``, ``criterion.*``), as
            stage 3 writes it.
        architecture: the searched architecture, at the main frame.

    Returns:
        The compact encoder (pooler included), the task heads (``<task>.weight`` / ``<task>.bias``) and the
        ``fit_dense`` projection's state (``fit_dense.weight`` / ``fit_dense.bias``).

    Raises:
        ValueError: a state without the body, heads or projection, or one of another frame.
    """
    from effbert.methods.efficientbert.supernet import materialize

    parts: dict[str, dict[str, torch.Tensor]] = {"body.": {}, "classifiers.": {}, "criterion.hidden_loss.": {}}
    for key, value in state.items():
        for prefix, found in parts.items():
            if key.startswith(prefix):
                found[key.removeprefix(prefix)] = value
    missing = [prefix.rstrip(".") for prefix, found in parts.items() if not found]
    if missing:
        raise ValueError(f"the weight-sharing state has no {', '.join(missing)} weights")
    try:
        supernet.load_state_dict(parts["body."], strict=True)
    except RuntimeError as err:
        raise ValueError(f"the weight-sharing body does not fit the supernet: {str(err).splitlines()[-1]}") from None
    return materialize(supernet, architecture), parts["classifiers."], parts["criterion.hidden_loss."]


def load_plus_head(model: Any, heads: Mapping[str, torch.Tensor], task: str) -> str:
    """Start a task model's classifier at its multi-task head (a task without one: `HEAD_DONOR`'s).

    Returns:
        The task whose head was loaded.

    Raises:
        ValueError: neither the task nor its donor has a head of the model's shape.
    """
    source = task if f"{task}.weight" in heads else HEAD_DONOR.get(task, task)
    weight, bias = heads.get(f"{source}.weight"), heads.get(f"{source}.bias")
    if weight is None or bias is None:
        raise ValueError(f"stage 3's multi-task KD has no head for {task} (heads: {sorted(_tasks(heads))})")
    classifier = model.classifier
    if tuple(classifier.weight.shape) != tuple(weight.shape):
        raise ValueError(
            f"the {source} head has shape {tuple(weight.shape)}, the {task} model's classifier "
            f"{tuple(classifier.weight.shape)}"
        )
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    return source


def _tasks(heads: Mapping[str, Any]) -> set[str]:
    return {key.rsplit(".", 1)[0] for key in heads}
