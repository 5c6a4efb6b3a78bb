"""EffBert model: shapes of every head, embeddings, masks, losses, gradients, Auto round trip, score capture, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from effbert_helpers import VOCAB, batch, tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from effbert.distill import forward_with_signals
from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
from effbert.methods.efficientbert.modeling_effbert import (
    EffBertForQuestionAnswering,
    EffBertForSequenceClassification,
    EffBertModel,
)
from effbert.methods.efficientbert.supernet import param_count


def test_model_shapes_and_hidden_states() -> None:
    config = tiny_config()
    model = EffBertModel(config).eval()
    inputs = batch()
    out = model(**inputs, output_hidden_states=True)
    assert out.last_hidden_state.shape == (3, 7, 32)
    assert out.pooler_output.shape == (3, 32)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (3, 7, 32) for h in out.hidden_states)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert out.attentions is None
    assert model(**inputs).hidden_states is None
    as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.last_hidden_state)
    assert sum(p.numel() for p in model.parameters()) == param_count(config, include_pooler=True)
    assert param_count(model) == param_count(config)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_fused_attention_equals_bert_attention(implementation: str) -> None:
    """The fused ``qkv`` projection computes what BERT's separate query/key/value projections compute."""
    from transformers.models.bert.modeling_bert import BertAttention

    config = tiny_config()
    config._attn_implementation = implementation
    fused = EffBertModel(config).encoder.layer[0].attention.eval()
    separate = BertAttention(config, layer_idx=0).eval()
    hidden = config.hidden_size
    with torch.no_grad():
        for row, name in enumerate(("query", "key", "value")):
            rows = slice(row * hidden, (row + 1) * hidden)
            getattr(separate.self, name).weight.copy_(fused.self.qkv.weight[rows])
            getattr(separate.self, name).bias.copy_(fused.self.qkv.bias[rows])
        separate.output.load_state_dict(fused.output.state_dict())
        states = torch.randn(2, 7, hidden)
        mask = torch.zeros(2, 1, 7, 7)
        mask[1, :, :, 5:] = torch.finfo(torch.float32).min if implementation == "eager" else 0.0
        mask = mask if implementation == "eager" else None
        (expected, expected_probs), (got, got_probs) = separate(states, mask), fused(states, mask)
    torch.testing.assert_close(got, expected)
    if implementation == "eager":
        torch.testing.assert_close(got_probs, expected_probs)
    else:
        assert got_probs is None and expected_probs is None


def test_heads_shapes_and_losses() -> None:
    inputs = batch()
    classifier = EffBertForSequenceClassification(tiny_config(num_labels=3)).eval()
    out = classifier(**inputs, labels=torch.tensor([0, 2, 1]))
    assert out.logits.shape == (3, 3) and out.loss.ndim == 0
    assert classifier.config.problem_type == "single_label_classification"
    regressor = EffBertForSequenceClassification(tiny_config(num_labels=1)).eval()
    out = regressor(**inputs, labels=torch.tensor([0.5, 1.0, 4.0]))
    assert out.logits.shape == (3, 1) and regressor.config.problem_type == "regression"
    assert torch.allclose(out.loss, ((out.logits.squeeze(-1) - torch.tensor([0.5, 1.0, 4.0])) ** 2).mean())
    qa = EffBertForQuestionAnswering(tiny_config()).eval()
    assert qa.effbert.pooler is None
    out = qa(**inputs, start_positions=torch.tensor([1, 2, 50]), end_positions=torch.tensor([3, 2, 50]))
    assert out.start_logits.shape == (3, 7) and out.end_logits.shape == (3, 7) and torch.isfinite(out.loss)
    out = qa(**inputs, output_hidden_states=True)
    assert out.loss is None and len(out.hidden_states) == 3


def test_trigram_embedding() -> None:
    """Projection input at position i is [e(t[i+1]), e(t[i]), e(t[i-1])] with zeros beyond the ends."""
    model = EffBertModel(tiny_config()).eval()
    emb = model.embeddings
    ids = torch.tensor([[5, 6, 7]])
    seen: list[torch.Tensor] = []
    handle = emb.embedding_transformation.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    emb(input_ids=ids)
    handle.remove()
    table, zero = emb.word_embeddings.weight, torch.zeros(8)
    expected = torch.stack(
        [
            torch.cat([table[6], table[5], zero]),
            torch.cat([table[7], table[6], table[5]]),
            torch.cat([zero, table[7], table[6]]),
        ]
    )
    assert seen[0].shape == (1, 3, 24) and torch.allclose(seen[0][0], expected)
    assert torch.equal(table[0], torch.zeros(8))  # padding row starts at zero
    via_embeds = emb(inputs_embeds=emb.word_embeddings(ids))
    assert torch.allclose(via_embeds, emb(input_ids=ids))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_padding_does_not_change_real_tokens(implementation: str) -> None:
    """HF mask convention (1 = keep): appending padding leaves every real token's output unchanged."""
    config = tiny_config()
    config._attn_implementation = implementation
    model = EffBertModel(config).eval()
    short = batch(lengths=(5,), seq_len=5)
    padded = {key: torch.nn.functional.pad(value, (0, 3)) for key, value in short.items()}
    with torch.no_grad():
        a = model(**short).last_hidden_state
        b = model(**padded).last_hidden_state[:, :5]
    assert torch.allclose(a, b, atol=1e-5)


def test_eager_sdpa_agree_and_attentions() -> None:
    sdpa = EffBertModel(tiny_config()).eval()
    eager_config = tiny_config()
    eager_config._attn_implementation = "eager"
    eager = EffBertModel(eager_config).eval()
    eager.load_state_dict(sdpa.state_dict())
    inputs = batch()
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True)
        assert torch.allclose(out.last_hidden_state, sdpa(**inputs).last_hidden_state, atol=1e-5)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 4, 7, 7)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(3, 4, 7))
    assert torch.all(out.attentions[0][1, :, :, 4:] == 0)  # padded keys get no attention
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        sdpa(**inputs, output_attentions=True)


def test_gradients_reach_every_active_parameter() -> None:
    model = EffBertForSequenceClassification(tiny_config(num_labels=2))
    model.train()
    model(**batch(), labels=torch.tensor([0, 1, 1])).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert torch.equal(model.effbert.embeddings.word_embeddings.weight.grad[0], torch.zeros(8))  # padding row


def test_score_capture_on_the_student() -> None:
    config = tiny_config(num_labels=2)
    model = EffBertForSequenceClassification(config).eval()
    inputs = batch()
    signals = forward_with_signals(model, **inputs)
    assert signals.num_layers == 2 and len(signals.attention_scores) == 2
    assert all(s.shape == (3, config.num_attention_heads, 7, 7) for s in signals.attention_scores)
    assert signals.attention_scores[0][2, :, :, 1:].max() < -1e30  # padding masked with finfo.min
    assert model.config._attn_implementation == "sdpa"  # restored
    with torch.no_grad():
        assert torch.allclose(signals.logits, model(**inputs).logits, atol=1e-5)
    signals.attention_scores[1][0, :, :, :].sum().backward()
    assert model.effbert.encoder.layer[1].attention.self.qkv.weight.grad is not None


def test_auto_round_trip(tmp_path: Path) -> None:
    config = tiny_config(num_labels=3)
    model = EffBertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), EffBertConfig)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, EffBertForSequenceClassification)
    assert loaded.config.ffn_exprs == config.ffn_exprs and loaded.config.ffn_widths == config.ffn_widths
    inputs = batch()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
    body = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(body, EffBertModel)
    with torch.no_grad():
        assert torch.equal(body(**inputs).pooler_output, model.effbert(**inputs).pooler_output)
    qa = EffBertForQuestionAnswering(tiny_config())
    qa.save_pretrained(tmp_path / "qa")
    assert isinstance(AutoModelForQuestionAnswering.from_pretrained(tmp_path / "qa"), EffBertForQuestionAnswering)


def test_gelu_approximation_is_configurable() -> None:
    exact = EffBertModel(tiny_config(gelu_approximate="none")).eval()
    tanh = EffBertModel(tiny_config(gelu_approximate="tanh")).eval()
    tanh.load_state_dict(exact.state_dict())
    for layer in exact.encoder.layer:
        for unit in layer.mlp.units:
            torch.nn.init.normal_(unit.intermediate.weight, std=1.0)
    tanh.load_state_dict(exact.state_dict())
    inputs = {"input_ids": torch.randint(1, VOCAB, (1, 5))}
    with torch.no_grad():
        assert not torch.allclose(exact(**inputs).last_hidden_state, tanh(**inputs).last_hidden_state, atol=1e-7)
