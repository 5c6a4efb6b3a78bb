"""Optional initialisation of the student's token table from the teacher's word embeddings.

EfficientBERT initialises the supernet at random and warms it up on Wikipedia + BookCorpus for 10 epochs. At demo
scale (a few hundred thousand corpus tokens on a CPU) most of the 30522 x 128 token table would never see a
gradient, so ``warmup_kd.init_embeddings: teacher_pca`` starts it from the teacher's own word embeddings projected
onto their top principal components: the same vocabulary, a 128-d summary of what the teacher already knows
about each word. Off (``random``) in the paper profile.
"""

from __future__ import annotations

import torch

__all__ = ["pca_token_table"]


def pca_token_table(teacher_table: torch.Tensor, width: int, std: float) -> torch.Tensor:
    """Project a (V, D) embedding table onto its top ``width`` principal components, rescaled to ``std``.

    Args:
        teacher_table: the teacher's word-embedding matrix (V, D) with D >= ``width``.
        width: the student's token-table width (128 in the paper).
        std: the standard deviation of the result (the student's initializer range keeps LayerNorm inputs in the
            range the rest of its init expects).

    Returns:
        A (V, ``width``) float32 tensor; deterministic (SVD of the centred table, signs fixed so each component's
        largest-magnitude entry is positive).

    Raises:
        ValueError: ``width`` is larger than the teacher's width.
    """
    table = teacher_table.detach().to(torch.float64)
    if width > table.shape[1]:
        raise ValueError(f"cannot take {width} principal components of a {tuple(table.shape)} table")
    centred = table - table.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    components = u[:, :width] * s[:width]
    flip = torch.sign(components.gather(0, components.abs().argmax(dim=0, keepdim=True)))
    components = components * flip
    return (components * (std / components.std())).to(torch.float32)
