"""The corpus pairs added to a pair task's KD inputs: shapes, segments, neighbour words, seeding."""

from __future__ import annotations

import datasets
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from effbert.data.prepared import TaskRows
from effbert.distill.transfer import corpus_pairs, is_pair_task, with_corpus_pairs, word_neighbours
from effbert.params import TaskKDParams

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "happy", "glad", "sad", "run", "##s", "blue", "green"]


@pytest.fixture
def tokenizer() -> BertTokenizer:
    vocab = {word: i for i, word in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def _embeddings(tokenizer: BertTokenizer) -> torch.Tensor:
    table = torch.randn(len(tokenizer.get_vocab()), 8, generator=torch.Generator().manual_seed(0))
    vocab = tokenizer.get_vocab()
    table[vocab["glad"]] = table[vocab["happy"]] + 0.01  # the nearest word of "happy"
    return table


def _row(tokenizer: BertTokenizer, a: str, b: str) -> dict[str, list[int]]:
    return dict(tokenizer(a, b or None))


def test_word_neighbours_are_nearest_first_and_exclude_the_word_and_non_words(tokenizer: BertTokenizer) -> None:
    near = word_neighbours(_embeddings(tokenizer), tokenizer.get_vocab(), ["happy", "the", "##s", "zebra"], k=3)
    assert set(near) == {"happy"}  # stop word, piece and unknown word have none
    assert near["happy"][0] == "glad" and "happy" not in near["happy"] and len(near["happy"]) == 3
    assert not {"the", "on", "##s", "[CLS]"} & set(near["happy"])


def test_corpus_pairs_cut_both_segments_and_make_a_near_copy(tokenizer: BertTokenizer) -> None:
    rows = [_row(tokenizer, "the happy cat sat on the mat", "the dog runs"), _row(tokenizer, "blue green cat dog", "")]
    table = _embeddings(tokenizer)
    pairs = corpus_pairs(rows, tokenizer, table, segment_tokens=4, replace_prob=0.0, neighbours=2, seed=0)
    assert len(pairs) == 4
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for pair in pairs:
        ids, types = pair["input_ids"], pair["token_type_ids"]
        assert ids[0] == cls and ids[-1] == sep and ids.count(sep) == 2 and pair["attention_mask"] == [1] * len(ids)
        assert types == sorted(types) and types[0] == 0 and types[-1] == 1  # segment A, then segment B
    decode = tokenizer.convert_ids_to_tokens
    assert decode(pairs[0]["input_ids"]) == [
        "[CLS]",
        "the",
        "happy",
        "cat",
        "sat",
        "[SEP]",
        "the",
        "dog",
        "run",
        "##s",
        "[SEP]",
    ]
    assert decode(pairs[1]["input_ids"]) == [
        "[CLS]",
        "the",
        "happy",
        "cat",
        "sat",
        "[SEP]",
        "the",
        "happy",
        "cat",
        "sat",
        "[SEP]",
    ]
    assert decode(pairs[2]["input_ids"]) == [
        "[CLS]",
        "blue",
        "green",
        "[SEP]",
        "cat",
        "dog",
        "[SEP]",
    ]  # one segment: halves


def test_near_copies_replace_whole_content_words_only_and_are_seeded(tokenizer: BertTokenizer) -> None:
    rows = [_row(tokenizer, "the happy cat runs on the mat", "dog")]
    table = _embeddings(tokenizer)

    def make(seed: int) -> list[dict[str, list[int]]]:
        return corpus_pairs(rows, tokenizer, table, segment_tokens=16, replace_prob=1.0, neighbours=1, seed=seed)

    copy = tokenizer.convert_ids_to_tokens(make(0)[1]["input_ids"])
    original = ["the", "happy", "cat", "run", "##s", "on", "the", "mat"]
    assert copy[1 + len(original) + 1 : -1] != original
    changed = [o for o, c in zip(original, copy[len(original) + 2 : -1], strict=True) if o != c]
    assert "happy" in changed and not {"the", "on", "run", "##s"} & set(changed)  # "run" continues as "##s"
    assert copy[len(original) + 2 + 1] == "glad"  # its one nearest neighbour
    assert make(0) == make(0)


def test_with_corpus_pairs_adds_the_pairs_to_a_pair_task(tokenizer: BertTokenizer) -> None:
    train = datasets.Dataset.from_list(
        [{**_row(tokenizer, "the cat", "the dog"), "text_b": "the dog", "label": 1} for _ in range(3)]
    )
    single = train.map(lambda _: {"text_b": ""})
    assert is_pair_task(train) and not is_pair_task(single)
    corpus = datasets.Dataset.from_list([_row(tokenizer, "the happy cat sat", "on the mat")] * 2)
    config = BertConfig(
        vocab_size=len(tokenizer.get_vocab()), hidden_size=8, num_hidden_layers=1, num_attention_heads=2
    )
    teacher = BertModel(config)
    rows = with_corpus_pairs(TaskRows(train, train), corpus, tokenizer, teacher, TaskKDParams().transfer, seed=0)
    assert len(rows.train) == 3 + 4 and rows.heldout is train
    assert rows.train.column_names == ["input_ids", "token_type_ids", "attention_mask"]
