"""TinyBERT's data augmentation: word-level replacement with masked-LM or embedding-neighbour candidates.

For each example field (a sentence; a pair task's fields each in turn, the other field left as it is), the words
are split as BERT's basic tokenizer does. A word is a candidate position when it is alphabetic and not a stop word.
Its candidates are:

- a word that is one WordPiece: the masked language model's top ``k`` predictions at that position (pieces starting
  with ``##`` dropped), the model reading the **masked sentence alone** (the official code also shows the unmasked
  original as segment B, which pulls the predictions toward the original word);
- a word of several pieces, or every word when there is no masked LM (the demo's sentence-embedding teacher has no
  MLM head): its ``k`` nearest whole words in the teacher's input embeddings (the paper uses GloVe vectors, which
  cannot be shipped; a word of several pieces is queried by the mean of its pieces' rows;
  `effbert.distill.transfer.nearest_words`).

Each field is tried ``n`` times; each try replaces every candidate position with probability ``p`` by a uniform
draw from its candidates; duplicate variants (and the original) are dropped, so a field yields at most ``n``
variants. Everything is a pure function of the text, the models and the seeded ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from effbert.distill.transfer import STOP_WORDS, nearest_words

__all__ = ["MaskedLM", "augment_words", "candidate_lists", "is_candidate_word", "mlm_candidates"]

MaskedLM = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""A masked language model as a function: a tokenised batch -> (B, T, vocab) logits."""


def is_candidate_word(word: str) -> bool:
    """Whether a word may be replaced: alphabetic (ASCII), not a stop word (lower-cased)."""
    return word.isascii() and word.isalpha() and word.lower() not in STOP_WORDS


def mlm_candidates(
    words: Sequence[str], positions: Sequence[int], tokenizer: Any, mlm: MaskedLM, k: int
) -> dict[int, list[str]]:
    """The top ``k`` whole-word predictions of ``mlm`` at each of ``positions`` (words of one WordPiece), each from
    the sentence with that word masked, alone as segment A; one batch for all positions. The original word is
    dropped from its own list."""
    if not positions:
        return {}
    masked = [[tokenizer.mask_token if i == p else w for i, w in enumerate(words)] for p in positions]
    batch = tokenizer(masked, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = mlm(dict(batch))
    mask_rows, mask_cols = (batch["input_ids"] == tokenizer.mask_token_id).nonzero(as_tuple=True)
    out: dict[int, list[str]] = {}
    for row, col in zip(mask_rows.tolist(), mask_cols.tolist(), strict=True):
        depth = min(3 * k + 1, logits.shape[-1])  # deep enough to keep k after dropping pieces and the original
        ranked = tokenizer.convert_ids_to_tokens(logits[row, col].topk(depth).indices.tolist())
        original = words[positions[row]].lower()
        whole = [t for t in ranked if not t.startswith("##") and t.isalpha() and t != original]
        out[positions[row]] = whole[:k]
    return out


def candidate_lists(
    words: Sequence[str], tokenizer: Any, embeddings: torch.Tensor, k: int, mlm: MaskedLM | None = None
) -> dict[int, list[str]]:
    """Position -> candidate words for every candidate position of ``words`` (see the module doc); positions with no
    candidate are left out."""
    vocab = tokenizer.get_vocab()
    positions = [i for i, w in enumerate(words) if is_candidate_word(w)]
    single = [i for i in positions if len(tokenizer.tokenize(words[i])) == 1]
    from_mlm = mlm_candidates(words, single, tokenizer, mlm, k) if mlm is not None else {}
    rest = {i: words[i].lower() for i in positions if i not in from_mlm}
    pieces = {w: tokenizer.convert_tokens_to_ids(tokenizer.tokenize(w)) for w in rest.values()}
    vectors = {w: embeddings[ids].mean(0) for w, ids in pieces.items() if ids}  # a word of several pieces: their mean
    near = nearest_words(embeddings, vocab, vectors, k)
    lists = {**from_mlm, **{i: near[w] for i, w in rest.items() if w in near}}
    return {i: lists[i] for i in sorted(lists) if lists[i]}


def augment_words(
    words: Sequence[str], candidates: dict[int, list[str]], n: int, p: float, rng: random.Random
) -> list[list[str]]:
    """Up to ``n`` distinct variants of ``words``: ``n`` tries, each replacing every candidate position with
    probability ``p`` by a uniform draw from its list; the original and repeats are dropped (but count as tries)."""
    seen = {tuple(words)}
    variants: list[list[str]] = []
    for _ in range(n):
        variant = [
            rng.choice(candidates[i]) if i in candidates and rng.random() < p else word for i, word in enumerate(words)
        ]
        if tuple(variant) not in seen:
            seen.add(tuple(variant))
            variants.append(variant)
    return variants
