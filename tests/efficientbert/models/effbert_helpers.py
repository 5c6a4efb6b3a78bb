"""Tiny EffBert configs and padded batches shared by the model tests."""

from __future__ import annotations

import torch

from effbert.methods.efficientbert.configuration_effbert import EffBertConfig

VOCAB = 99
TINY_EXPRS = ["tanh(linear2_2(gelu(linear2_2(x,wb1)),wb2))", "linear1_4(relu(mul(linear1_4(x,wb1),x)),wb2)"]


def tiny_config(**overrides: object) -> EffBertConfig:
    """A tiny compact config: H 32, 2 layers, 4 heads, vocab 99, two different searched layers (2x16 and 1x8)."""
    values: dict[str, object] = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "embedding_size": 8,
        "max_position_embeddings": 64,
        "ffn_exprs": TINY_EXPRS,
        "ffn_units": [2, 1],
        "ffn_widths": [16, 8],
    }
    values.update(overrides)
    return EffBertConfig(**values)  # type: ignore[arg-type]


def batch(lengths: tuple[int, ...] = (7, 4, 1), seq_len: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids (B, T) padded with id 0 after each row's length, HF mask (1 = keep), two segments."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (len(lengths), seq_len), generator=generator)
    mask = torch.zeros(len(lengths), seq_len, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    token_types = torch.zeros_like(ids)
    token_types[:, seq_len // 2 :] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": token_types * mask}
