"""Sliding-window features and answer postprocessing for span QA (SQuAD v1.1 / v2.0).

Windows come from a fast tokenizer's overflow mechanism, laid out by one of two rules (`Windows`): a window starts
every ``doc_stride`` context tokens (the official BERT and EfficientBERT meaning of ``doc_stride``), or neighbouring
windows share ``overlap`` context tokens (the Hugging Face ``stride`` meaning). The two differ because a window's
context room depends on its question's length. Questions are cut to ``max_query_length`` WordPiece tokens before
pairing. Everything here is pure: no file I/O and no model code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import BatchEncoding, PreTrainedTokenizerBase


def _truncate_questions(
    questions: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_query_length: int
) -> list[str]:
    """Cut each question's text so that it tokenises to at most ``max_query_length`` tokens."""
    stripped = [q.strip() for q in questions]
    enc = tokenizer(stripped, add_special_tokens=False, return_offsets_mapping=True)
    out: list[str] = []
    for text, offsets in zip(stripped, enc["offset_mapping"], strict=True):
        keep = max_query_length
        while len(offsets) > max_query_length and keep > 0:
            # Cut at the end of the last kept token; greedy WordPiece re-tokenises a prefix cut at a piece
            # boundary identically, but re-check and drop one more token if it ever does not.
            text = text[: offsets[keep - 1][1]].rstrip()
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            keep -= 1
        out.append(text)
    return out


@dataclass(frozen=True)
class Windows:
    """How a SQuAD example is cut into windows of ``max_seq_length`` tokens (special tokens and padding included).

    Exactly one rule is set: ``doc_stride`` (a window starts every ``doc_stride`` context tokens, as BERT's
    official ``run_squad.py`` and EfficientBERT lay them out) or ``overlap`` (neighbouring windows share ``overlap``
    context tokens, Hugging Face's ``stride``).
    """

    max_seq_length: int
    max_query_length: int
    doc_stride: int | None = None
    overlap: int | None = None

    def __post_init__(self) -> None:
        if (self.doc_stride is None) == (self.overlap is None):
            raise ValueError("SQuAD windows: set exactly one of doc_stride and overlap")

    def overlap_for(self, question_tokens: int) -> int:
        """The Hugging Face ``stride`` (shared context tokens) of an example whose question has this many tokens:
        under ``doc_stride`` its context room minus the step (0 when the step is at least the room)."""
        if self.overlap is not None:
            return self.overlap
        assert self.doc_stride is not None
        room = self.max_seq_length - question_tokens - 3  # [CLS] question [SEP] context [SEP]
        return max(room - self.doc_stride, 0)


def _tokenize(batch: Mapping[str, list], tokenizer: PreTrainedTokenizerBase, windows: Windows) -> BatchEncoding:
    """Tokenise (question, context) pairs into padded windows laid out by ``windows``; the windows come in example
    order (``overflow_to_sample_mapping`` indexes ``batch``)."""
    questions = _truncate_questions(batch["question"], tokenizer, windows.max_query_length)
    groups: dict[int, list[int]] = defaultdict(list)  # one tokenizer call per overlap value
    if windows.overlap is not None:  # one overlap for every example: no question lengths needed
        groups[windows.overlap] = list(range(len(questions)))
    else:
        for i, ids in enumerate(tokenizer(questions, add_special_tokens=False)["input_ids"]):
            groups[windows.overlap_for(len(ids))].append(i)
    encoded: dict[int, tuple[BatchEncoding, list[int]]] = {}
    for overlap, members in groups.items():
        enc = tokenizer(
            [questions[i] for i in members],
            [batch["context"][i] for i in members],
            truncation="only_second",
            max_length=windows.max_seq_length,
            stride=overlap,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
            padding="max_length",
        )
        for row, member in enumerate(enc["overflow_to_sample_mapping"]):
            encoded.setdefault(members[member], (enc, []))[1].append(row)
    if len(groups) == 1:
        return enc
    data: dict[str, list[Any]] = defaultdict(list)
    encodings = []
    for example in range(len(questions)):
        enc, rows = encoded[example]
        for row in rows:
            for key in ("input_ids", "token_type_ids", "attention_mask", "offset_mapping"):
                data[key].append(enc[key][row])
            data["overflow_to_sample_mapping"].append(example)
            assert enc.encodings is not None  # a fast tokenizer's output
            encodings.append(enc.encodings[row])
    return BatchEncoding(dict(data), encoding=encodings)


def _answer_span(answers: Mapping[str, list], context: str) -> tuple[int, int] | None:
    """Character span [start, end) of the first gold answer, with surrounding whitespace trimmed."""
    texts, starts = answers.get("text", []), answers.get("answer_start", [])
    if not texts or not starts:
        return None
    start, end = int(starts[0]), int(starts[0]) + len(texts[0])
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def prepare_train_features(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, windows: Windows
) -> dict[str, list]:
    """Turn a batch of examples into training windows with start/end token labels.

    Args:
        batch: columns ``question``, ``context``, ``answers`` (and optional ``is_impossible``).
        tokenizer: a fast tokenizer (offset mappings are needed).
        windows: the window length (padded to it), the question cut and how windows follow each other.

    Returns:
        Columns ``input_ids``, ``token_type_ids``, ``attention_mask``, ``start_positions``, ``end_positions``.
        Windows without the whole first gold answer, and impossible questions, are labelled 0 ([CLS]).
    """
    enc = _tokenize(batch, tokenizer, windows)
    impossible = batch.get("is_impossible") or [False] * len(batch["context"])
    starts: list[int] = []
    ends: list[int] = []
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        context: str = batch["context"][sample]
        span = None if impossible[sample] else _answer_span(batch["answers"][sample], context)
        seq_ids = enc.sequence_ids(i)
        ctx = [j for j, s in enumerate(seq_ids) if s == 1]
        offsets = enc["offset_mapping"][i]
        if span is None or not ctx or offsets[ctx[0]][0] > span[0] or offsets[ctx[-1]][1] < span[1]:
            starts.append(0)
            ends.append(0)
            continue
        start_tok = max(j for j in ctx if offsets[j][0] <= span[0])
        end_tok = min(j for j in ctx if offsets[j][1] >= span[1])
        starts.append(start_tok)
        ends.append(end_tok)
    return {
        "input_ids": enc["input_ids"],
        "token_type_ids": enc["token_type_ids"],
        "attention_mask": enc["attention_mask"],
        "start_positions": starts,
        "end_positions": ends,
    }


def prepare_eval_features(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, windows: Windows
) -> dict[str, list]:
    """Turn a batch of examples into evaluation windows that remember their example and context offsets.

    Args:
        batch: columns ``id``, ``question``, ``context``.
        tokenizer, windows: as for :func:`prepare_train_features`.

    Returns:
        Columns ``input_ids``, ``token_type_ids``, ``attention_mask``, ``example_id`` and ``offset_mapping``
        (``[start, end]`` character offsets for context tokens, None for question, special and padding tokens).
    """
    enc = _tokenize(batch, tokenizer, windows)
    example_ids: list[str] = []
    offset_mapping: list[list[list[int] | None]] = []
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        example_ids.append(batch["id"][sample])
        seq_ids = enc.sequence_ids(i)
        offset_mapping.append(
            [list(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq_ids, strict=True)]
        )
    return {
        "input_ids": enc["input_ids"],
        "token_type_ids": enc["token_type_ids"],
        "attention_mask": enc["attention_mask"],
        "example_id": example_ids,
        "offset_mapping": offset_mapping,
    }


def _columns(rows: Any, names: Sequence[str]) -> dict[str, list]:
    """Columns ``names`` of a ``datasets.Dataset`` or of a list of dicts, as python lists."""
    if hasattr(rows, "column_names"):
        return rows.select_columns(list(names)).to_dict()
    rows = list(rows)
    return {n: [r[n] for r in rows] for n in names}


def _offset_arrays(offsets: Iterable[Sequence[int] | None], seq: int) -> tuple[np.ndarray, np.ndarray]:
    """Character starts/ends per token; -1 where a token is not part of the context."""
    starts = np.full(seq, -1, dtype=np.int64)
    ends = np.full(seq, -1, dtype=np.int64)
    for j, o in enumerate(offsets):
        if j >= seq:
            break
        if o is not None:
            starts[j], ends[j] = o[0], o[1]
    return starts, ends


def _best_span(
    s: np.ndarray, e: np.ndarray, valid: np.ndarray, cand_s: np.ndarray, cand_e: np.ndarray, max_answer_length: int
) -> tuple[float, int, int] | None:
    """Best-scoring (score, start, end) over candidate start/end token indices, or None if none is valid."""
    ok = valid[cand_s][:, None] & valid[cand_e][None, :]
    length = cand_e[None, :] - cand_s[:, None]
    ok &= (length >= 0) & (length < max_answer_length)
    if not ok.any():
        return None
    scores = np.where(ok, s[cand_s][:, None] + e[cand_e][None, :], -np.inf)
    a, b = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[a, b]), int(cand_s[a]), int(cand_e[b])


def postprocess_predictions(
    examples: Any,
    features: Any,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, float]]:
    """Map window logits back to answer texts, one per example.

    Args:
        examples: list of dicts or ``datasets.Dataset`` with ``id`` and ``context``.
        features: list of dicts or ``datasets.Dataset`` with ``example_id`` and ``offset_mapping``,
            in the same order as the logits rows.
        start_logits: ``[n_features, seq]`` start scores.
        end_logits: ``[n_features, seq]`` end scores.
        n_best: top-k start and end tokens searched per window.
        max_answer_length: longest answer in tokens.
        version_2: if True, predict "" when the null odds exceed ``null_threshold``.
        null_threshold: decision threshold on the null odds (SQuAD v2 only).

    Returns:
        ``(predictions, null_odds)``: answer text per example id (a slice of the original context), and
        per example the best null score (min over its windows of start[0] + end[0]) minus the best span score
        (``inf`` when an example has no context token at all).
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    ex = _columns(examples, ["id", "context"])
    feats = _columns(features, ["example_id", "offset_mapping"])
    if len(feats["example_id"]) != start_logits.shape[0] or start_logits.shape != end_logits.shape:
        raise ValueError(f"{len(feats['example_id'])} features but logits of shape {start_logits.shape}")
    by_example: dict[str, list[int]] = defaultdict(list)
    for i, eid in enumerate(feats["example_id"]):
        by_example[eid].append(i)
    seq = start_logits.shape[1]
    k = min(n_best, seq)
    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    for eid, context in zip(ex["id"], ex["context"], strict=True):
        null_score = np.inf
        best: tuple[float, int, int, int] | None = None  # score, feature, start token, end token
        chars: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for fi in by_example.get(eid, []):
            s, e = start_logits[fi], end_logits[fi]
            null_score = min(null_score, float(s[0] + e[0]))
            chars[fi] = _offset_arrays(feats["offset_mapping"][fi], seq)
            top_s, top_e = np.argsort(-s, kind="stable")[:k], np.argsort(-e, kind="stable")[:k]
            found = _best_span(s, e, chars[fi][0] >= 0, top_s, top_e, max_answer_length)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], fi, found[1], found[2])
        # Nothing valid among the top-k: search every context token so v1 always gets a span.
        for fi in chars if best is None else []:
            idx = np.flatnonzero(chars[fi][0] >= 0)
            found = _best_span(start_logits[fi], end_logits[fi], chars[fi][0] >= 0, idx, idx, max_answer_length)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], fi, found[1], found[2])
        if best is None:
            predictions[eid], null_odds[eid] = "", float("inf")
            continue
        score, fi, a, b = best
        null_odds[eid] = float(null_score - score)
        text = context[int(chars[fi][0][a]) : int(chars[fi][1][b])]
        predictions[eid] = "" if version_2 and null_odds[eid] > null_threshold else text
    return predictions, null_odds
