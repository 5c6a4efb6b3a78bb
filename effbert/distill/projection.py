"""The trained hidden-state projection ``fit_dense`` (student H -> teacher H) of the KD objective, kept next to a
student whose distillation a later stage continues (as the official code does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effbert.distill.losses import DistillationLoss
from effbert.errors import EffbertError

FIT_DENSE_FILE = "fit_dense.safetensors"
"""The projection's file inside a model directory."""


def save_projection(loss: DistillationLoss, directory: Path) -> None:
    """Write the trained ``fit_dense`` projection so that the next distillation stage continues with it."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in loss.hidden_loss.state_dict().items()}
    save_file(state, str(directory / FIT_DENSE_FILE))


def set_projection(loss: DistillationLoss, matrix: Any) -> None:
    """Start ``fit_dense`` at ``matrix`` (D_teacher, H_student) with a zero bias."""
    import torch

    fit_dense = loss.hidden_loss.fit_dense
    with torch.no_grad():
        fit_dense.weight.copy_(matrix)
        fit_dense.bias.zero_()


def load_projection(loss: DistillationLoss, directory: Path, *, leading: bool = False) -> None:
    """Continue with the projection trained by the stage that wrote ``directory``.

    Args:
        loss: the objective whose ``fit_dense`` is set.
        directory: the model directory holding ``fit_dense.safetensors``.
        leading: a narrower student than the one it was trained for (EfficientBERT-TINY and ++ cut from the
            supernet): take the leading block of every tensor (the first student columns).

    Raises:
        EffbertError: the file is missing or its shapes do not match.
    """
    from safetensors.torch import load_file

    path = directory / FIT_DENSE_FILE
    if not path.is_file():
        raise EffbertError(f"{path}: missing (the hidden-state projection of the previous distillation stage)")
    state = load_file(str(path))
    if leading:
        wanted = loss.hidden_loss.state_dict()
        state = {
            key: value[tuple(slice(0, n) for n in wanted[key].shape)] if key in wanted else value
            for key, value in state.items()
        }
    try:
        loss.hidden_loss.load_state_dict(state)
    except RuntimeError as err:
        raise EffbertError(f"{path}: does not fit this student/teacher pair: {str(err).splitlines()[-1]}") from None
