"""What a training wrapper shares around a model it does not train: freezing it, keeping it in inference mode
whatever the wrapper's mode, and passing on only the inputs a batch holds."""

from __future__ import annotations

from typing import Self, TypeVar

from torch import Tensor, nn

__all__ = ["FrozenParts", "freeze", "given_inputs"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def freeze(model: ModuleT) -> ModuleT:
    """``model`` in place with no gradients (never optimised, outside the clipping norm) and in inference mode."""
    model.requires_grad_(False)
    return model.train(False)


def given_inputs(**inputs: Tensor | None) -> dict[str, Tensor]:
    """The keyword inputs that are not None (a Trainer's batch holds only some of a forward's arguments)."""
    return {name: value for name, value in inputs.items() if value is not None}


class FrozenParts(nn.Module):
    """A module whose submodules named in ``frozen_parts`` always compute as at inference: ``train(mode)`` sets
    every other submodule to ``mode`` and keeps those in inference mode (no dropout)."""

    frozen_parts: tuple[str, ...] = ()

    def train(self, mode: bool = True) -> Self:
        """``mode`` everywhere but in the frozen parts."""
        super().train(mode)
        for name in self.frozen_parts:
            getattr(self, name).train(False)
        return self
