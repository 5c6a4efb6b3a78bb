"""Extra task-KD inputs for the sentence-pair tasks, cut from the corpus and labelled by the task's teacher.

Task KD only needs inputs: the prediction term matches the fine-tuned teacher's outputs, never gold labels. On a
small pair task (MRPC: 3,301 training pairs in the demo) the student memorises its few inputs and its held-out
accuracy stays near the majority class. Pairs of real text the teacher has not seen widen what the student learns
the teacher's function on (a transfer set, in the sense of Hinton et al.'s distillation):

- a **neighbour pair**: the first ``segment_tokens`` tokens of segment A and of segment B of one corpus row (two
  consecutive spans of one document: mostly unrelated, the teacher's "not a paraphrase" side);
- a **near copy**: segment A against itself with each replaceable word swapped, with probability
  ``replace_prob``, for one of its ``neighbours`` nearest words in the teacher's input embeddings (cosine); a
  replaceable word is one WordPiece, alphabetic, not a stop word and not split into further pieces (the teacher's
  "paraphrase" side; TinyBERT's word-replacement idea without a masked-LM head, which the demo's sentence-embedding
  teacher does not have).

Not in the EfficientBERT paper (it uses no augmentation); ``final_distill.task.transfer.corpus_pairs`` turns it on
for EfficientBERT's task KD and ``tinybert.transfer.corpus_pairs`` for TinyBERT's (the same extra inputs, so the
comparison stays like for like). Pure functions of the corpus rows, the tokenizer and the embeddings: no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from effbert.data.prepared import TaskRows
    from effbert.params import TransferParams

__all__ = ["STOP_WORDS", "corpus_pairs", "is_pair_task", "nearest_words", "with_corpus_pairs", "word_neighbours"]

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "he",
        "she",
        "they",
        "we",
        "you",
        "i",
        "his",
        "her",
        "their",
        "our",
        "your",
        "not",
        "no",
        "so",
        "than",
        "then",
        "there",
        "here",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "each",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
    ]
)
"""Words never replaced in a near copy (function words carry the pair's structure)."""


def _replaceable(token: str) -> bool:
    return token.isascii() and token.isalpha() and len(token) > 1 and token not in STOP_WORDS


def word_neighbours(
    embeddings: torch.Tensor, vocab: Mapping[str, int], words: Iterable[str], k: int
) -> dict[str, list[str]]:
    """For each replaceable word of ``words`` in ``vocab``: its ``k`` nearest replaceable whole words by cosine
    similarity of the rows of ``embeddings`` (the teacher's input token table), nearest first, itself excluded."""
    wanted = sorted({w for w in words if _replaceable(w) and w in vocab})
    return nearest_words(embeddings, vocab, {w: embeddings[vocab[w]] for w in wanted}, k)


def nearest_words(
    embeddings: torch.Tensor, vocab: Mapping[str, int], queries: Mapping[str, torch.Tensor], k: int
) -> dict[str, list[str]]:
    """For each ``word -> vector`` of ``queries``: the ``k`` replaceable whole words of ``vocab`` whose rows of
    ``embeddings`` are nearest to the vector by cosine similarity, nearest first, the word itself excluded."""
    candidates = sorted((i, w) for w, i in vocab.items() if _replaceable(w))
    if not queries or not candidates:
        return {}
    table = torch.nn.functional.normalize(embeddings.detach().float()[[i for i, _ in candidates]], dim=-1)
    words = list(queries)
    vectors = torch.nn.functional.normalize(torch.stack([queries[w].detach().float() for w in words]), dim=-1)
    top = (vectors @ table.T).topk(min(k + 1, len(candidates)), dim=-1).indices.tolist()
    return {w: [candidates[j][1] for j in row if candidates[j][1] != w][:k] for w, row in zip(words, top, strict=True)}


def _segments(row: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """A corpus row ``[CLS] A [SEP] B [SEP]`` (or ``[CLS] A [SEP]``) -> the token ids of A and of B (may be empty)."""
    ids, types = row["input_ids"], row["token_type_ids"]
    first = [t for t, s in zip(ids[1:], types[1:], strict=True) if s == 0][:-1]
    second = [t for t, s in zip(ids, types, strict=True) if s == 1][:-1]
    return first, second


def _pair(a: list[int], b: list[int], cls_id: int, sep_id: int) -> dict[str, list[int]]:
    ids = [cls_id, *a, sep_id, *b, sep_id]
    return {
        "input_ids": ids,
        "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
        "attention_mask": [1] * len(ids),
    }


def corpus_pairs(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    embeddings: torch.Tensor,
    *,
    segment_tokens: int,
    replace_prob: float,
    neighbours: int,
    seed: int,
) -> list[dict[str, list[int]]]:
    """Two model inputs per corpus row (a neighbour pair and a near copy, see the module doc), in row order.

    Args:
        rows: ``prepare_corpus`` rows (``input_ids``, ``token_type_ids``).
        tokenizer: the student's tokenizer (its vocabulary, ``[CLS]`` and ``[SEP]`` ids).
        embeddings: the teacher's input token table (vocabulary x width), for the neighbour words.
        segment_tokens: tokens kept of each segment (from its start).
        replace_prob: chance of replacing each replaceable word of a near copy.
        neighbours: nearest words a replacement is drawn from.
        seed: seeds the replacements.
    """
    vocab = tokenizer.get_vocab()
    cut = [(a[:segment_tokens], b[:segment_tokens]) for a, b in map(_segments, rows)]
    tokens = [tokenizer.convert_ids_to_tokens(a) for a, _ in cut]
    near = word_neighbours(embeddings, vocab, {t for seq in tokens for t in seq}, neighbours)
    rng = random.Random(seed)
    out: list[dict[str, list[int]]] = []
    for (a, b), seq in zip(cut, tokens, strict=True):
        if not a:
            continue
        first, second = (a, b) if b else (a[: len(a) // 2] or a, a[len(a) // 2 :] or a)  # one segment: its halves
        out.append(_pair(first, second, tokenizer.cls_token_id, tokenizer.sep_token_id))
        copy = [
            vocab[rng.choice(near[t])] if t in near and _whole(seq, i) and rng.random() < replace_prob else vocab[t]
            for i, t in enumerate(seq)
        ]
        out.append(_pair(a, copy, tokenizer.cls_token_id, tokenizer.sep_token_id))
    return out


def _whole(tokens: list[str], i: int) -> bool:
    """Whether ``tokens[i]`` is a whole word (the next token does not continue it with ``##``)."""
    return i + 1 >= len(tokens) or not tokens[i + 1].startswith("##")


def with_corpus_pairs(
    rows: TaskRows, corpus: Any, tokenizer: Any, teacher: Any, transfer: TransferParams, *, seed: int
) -> TaskRows:
    """``rows`` with the training split's model inputs followed by the corpus pairs of :func:`corpus_pairs`,
    shuffled together (seeded); gold labels are dropped from training, which never reads them (pure KD).

    Args:
        rows: the task's prepared rows (train, held-out slice).
        corpus: the prepared corpus rows (sentence-pair layout).
        tokenizer: the student's tokenizer.
        teacher: the fine-tuned teacher (its input embeddings give the near copies' replacement words).
        transfer: a ``transfer`` params section (``final_distill.task.transfer``, ``tinybert.transfer``).
        seed: the run's seed.
    """
    import logging

    import datasets

    from effbert.data.prepared import TaskRows

    extra = corpus_pairs(
        corpus,
        tokenizer,
        teacher.get_input_embeddings().weight,
        segment_tokens=transfer.segment_tokens,
        replace_prob=transfer.replace_prob,
        neighbours=transfer.neighbours,
        seed=seed,
    )
    inputs = ["input_ids", "token_type_ids", "attention_mask"]
    own = rows.train.select_columns(inputs)
    combined = datasets.concatenate_datasets([own, datasets.Dataset.from_list(extra).cast(own.features)])
    logging.getLogger(__name__).info("transfer: %d corpus pairs added to %d training rows", len(extra), len(own))
    return TaskRows(combined.shuffle(seed=seed).flatten_indices(), rows.heldout, rows.heldout_examples)


def is_pair_task(train: Any) -> bool:
    """Whether a prepared GLUE training split has a second sentence (SQuAD's features have no ``text_b``)."""
    return "text_b" in train.column_names and any(train.select(range(min(len(train), 100)))["text_b"])
