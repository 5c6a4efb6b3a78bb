"""Architectures as data: shipped JSON files, validation messages, scaling, JSON round trips, and the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from effbert.methods.efficientbert.architecture import (
    Architecture,
    LayerSpec,
    check_layer,
    list_architectures,
    load_architecture,
)
from effbert.methods.efficientbert.configuration_effbert import VANILLA_EXPR, EffBertConfig
from effbert.methods.efficientbert.expr import PAPER_EXPRESSIONS, parse, size_id
from effbert.methods.efficientbert.supernet import param_count

PAPER_SIZES = [(4, 2), (2, 1), (1, 2), (2, 2), (1, 2), (2, 3)]


def test_shipped_architectures_load_and_validate() -> None:
    assert list_architectures() == ["efficientbert", "efficientbert_pp", "efficientbert_tiny", "vanilla"]
    final = load_architecture("efficientbert")
    assert final.hidden_size == 540
    assert final.exprs == list(PAPER_EXPRESSIONS)
    assert final.size_ids == PAPER_SIZES
    assert final.widths == [270, 540, 270, 270, 270, 180]
    tiny = load_architecture("efficientbert_tiny")
    assert (tiny.hidden_size, tiny.exprs, tiny.size_ids) == (360, final.exprs, PAPER_SIZES)
    assert tiny.widths == [180, 360, 180, 180, 180, 120]
    plus_plus = load_architecture("efficientbert_pp")
    assert plus_plus.hidden_size == 360 and plus_plus.num_layers == 12
    assert plus_plus.layers[::2] == tiny.layers and plus_plus.layers[1::2] == tiny.layers
    vanilla = load_architecture("vanilla")
    assert vanilla.num_layers == 6 and vanilla.size_ids == [(1, 1)] * 6 and vanilla.widths == [540] * 6
    assert all(parse(e) == parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)") for e in vanilla.exprs)


def test_paper_parameter_counts() -> None:
    """The repo's convention: embeddings + attention + active units (+ fit_dense to 768), no pooler/classifier."""
    counts = {
        name: param_count(EffBertConfig.from_architecture(load_architecture(name))) for name in list_architectures()
    }
    assert counts["efficientbert"] == 15_322_236  # 15.32M without fit_dense
    fit = 540 * 768 + 768
    assert counts["efficientbert"] + fit == 15_737_724  # 15.74M with fit_dense
    assert round((counts["vanilla"] + fit) / 1e6, 2) == 15.34
    assert round((counts["efficientbert_tiny"] + 360 * 768 + 768) / 1e6, 2) == 9.38
    assert round((counts["efficientbert_pp"] + 360 * 768 + 768) / 1e6, 2) == 14.24


def test_scaled_keeps_size_ids() -> None:
    final = load_architecture("efficientbert")
    scaled = final.scaled(48, name="small")
    assert scaled.name == "small" and scaled.hidden_size == 48
    assert scaled.size_ids == final.size_ids
    assert scaled.widths == [24, 48, 24, 24, 24, 16]
    assert scaled.scaled(540).layers == final.layers


def test_from_size_ids_writes_sizes_into_the_expression() -> None:
    arch = Architecture.from_size_ids([VANILLA_EXPR, VANILLA_EXPR], [(3, 4), (1, 1)], 32)
    assert arch.units == [3, 1] and arch.widths == [8, 32]
    assert size_id(parse(arch.exprs[0])) == (3, 4)
    with pytest.raises(ValueError, match="1 size ids"):
        Architecture.from_size_ids([VANILLA_EXPR, VANILLA_EXPR], [(1, 1)], 32)
    with pytest.raises(ValueError, match="layer 2"):
        Architecture.from_size_ids([VANILLA_EXPR, VANILLA_EXPR], [(1, 1), (5, 1)], 32)


def test_json_round_trip_and_path_loading(tmp_path: Path) -> None:
    arch = load_architecture("efficientbert").scaled(64, name="mine")
    path = arch.save(tmp_path / "mine.json")
    assert load_architecture(path) == arch
    assert load_architecture(str(path)) == arch
    assert json.loads(path.read_text()) == arch.to_dict()


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"expr": "linear(gelu(linear(x,wb1)),wb2)", "units": 5, "width": 540}, "units must be an int in"),
        ({"expr": "linear(gelu(linear(x,wb1)),wb2)", "units": 1, "width": 500}, "width must be hidden_size // r"),
        ({"expr": "linear(gelu(linear(x,wb1),wb2)", "units": 1, "width": 540}, "cannot parse"),
        ({"expr": "linear2_2(gelu(linear2_2(x,wb1)),wb2)", "units": 1, "width": 270}, "carries size id 2_2"),
        ({"expr": "gelu(linear(x,wb1))", "units": 1, "width": 540}, "wb2 appears 0 times"),
        ({"expr": "add(gelu(linear(x,wb1)),linear(x,wb2))", "units": 1, "width": 270}, "needs an input of width 270"),
    ],
)
def test_invalid_layer_names_file_and_layer(tmp_path: Path, layer: dict[str, object], message: str) -> None:
    good = {"expr": "linear(gelu(linear(x,wb1)),wb2)", "units": 1, "width": 540}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"name": "broken", "hidden_size": 540, "layers": [good, layer]}))
    with pytest.raises(ValueError, match=message) as info:
        load_architecture(path)
    assert str(path) in str(info.value) and "layer 2" in str(info.value)


def test_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_architecture(path)
    path.write_text(json.dumps({"name": "x", "hidden_size": 32, "layers": [], "extra": 1}))
    with pytest.raises(ValueError, match="exactly the keys"):
        load_architecture(path)
    path.write_text(json.dumps({"name": "x", "hidden_size": 32, "layers": [{"expr": VANILLA_EXPR, "units": 1}]}))
    with pytest.raises(ValueError, match="layer 1: expected an object"):
        load_architecture(path)
    with pytest.raises(ValueError, match="no shipped architecture"):
        load_architecture("no_such_architecture")
    with pytest.raises(ValueError, match="layers must be a non-empty"):
        Architecture("empty", 32, ())
    with pytest.raises(ValueError, match="hidden_size must be"):
        Architecture("x", True, (LayerSpec(VANILLA_EXPR, 1, 32),))  # type: ignore[arg-type]


def test_check_layer_accepts_the_paper_layers() -> None:
    for expr, (s, r) in zip(PAPER_EXPRESSIONS, PAPER_SIZES, strict=True):
        assert check_layer(expr, s, 540 // r, 540) == []
        assert check_layer(expr, s, 360 // r, 360) == []


def test_config_defaults_and_architecture_round_trip() -> None:
    config = EffBertConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (540, 6, 12)
    assert (config.embedding_size, config.vocab_size, config.max_position_embeddings) == (128, 30522, 512)
    assert config.ffn_exprs == [VANILLA_EXPR] * 6 and config.ffn_units == [1] * 6 and config.ffn_widths == [540] * 6
    assert config.max_ffn_units is None and config.max_ffn_width is None
    final = load_architecture("efficientbert")
    from_arch = EffBertConfig.from_architecture(final, num_labels=3)
    assert from_arch.num_labels == 3
    assert from_arch.architecture(name=final.name) == final
    restored = EffBertConfig.from_dict(from_arch.to_dict())
    assert restored.ffn_exprs == final.exprs and restored.ffn_widths == final.widths and restored.num_labels == 3
    with pytest.raises(ValueError, match="contradict"):
        EffBertConfig.from_architecture(final, hidden_size=360)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 50, "num_attention_heads": 12}, r"hidden_size \(50\) is not a multiple"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be an int >= 1, got 0"),
        ({"ffn_units": [1, 1]}, r"ffn_units needs one entry per layer .* got \[1, 1\]"),
        ({"ffn_widths": [540] * 5 + [100]}, "layer 5 .*width 100"),
        ({"ffn_units": [4] * 6, "max_ffn_units": 2}, "max_ffn_units=2 is smaller"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be a number in \\[0, 1\\], got 1.5"),
        ({"gelu_approximate": "fast"}, "gelu_approximate must be one of"),
        ({"pad_token_id": 30522}, "pad_token_id must be in"),
        ({"ffn_exprs": ["relu(x)"] * 6}, "layer 0 .*wb1 appears 0 times"),
    ],
)
def test_config_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EffBertConfig(**overrides)  # type: ignore[arg-type]
