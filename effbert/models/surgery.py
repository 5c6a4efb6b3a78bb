"""Working on a BERT-family model's structure: finding its encoder, and running it with some submodules swapped
(another layer list, sliced linear layers) for the length of a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn

__all__ = ["encoder_of", "swapped"]


def encoder_of(model: nn.Module) -> Any:
    """The BERT-family encoder (its ``.layer`` an ``nn.ModuleList``) of a bare or task model.

    Raises:
        ValueError: ``model`` has no ``base_model.encoder.layer`` list.
    """
    encoder = getattr(getattr(model, "base_model", None), "encoder", None)
    if encoder is None or not isinstance(getattr(encoder, "layer", None), nn.ModuleList):
        raise ValueError(f"{type(model).__name__}: no BERT-style encoder (base_model.encoder.layer)")
    return encoder


@contextlib.contextmanager
def swapped(replacements: Mapping[tuple[nn.Module, str], nn.Module]) -> Iterator[None]:
    """Within the block, each ``(parent, attribute)`` holds its replacement module; the originals are put back after,
    also when the block raises."""
    originals = {key: getattr(*key) for key in replacements}
    try:
        for (parent, name), module in replacements.items():
            setattr(parent, name, module)
        yield
    finally:
        for (parent, name), module in originals.items():
            setattr(parent, name, module)
