"""ONNX export of tiny random EffBert task models: parity with PyTorch on other shapes than the traced one (padded
rows included), the exporter leaving the model in eval mode, the parity failure path, and ONNX Runtime timed by the
project's latency protocol."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch

from effbert.errors import EffbertError
from effbert.export.onnx import OnnxRuntimeModel, onnx_bytes, output_names, parity
from effbert.export.onnx_report import require_parity
from effbert.measure.latency import compare_latency
from effbert.methods.efficientbert.modeling_effbert import EffBertForQuestionAnswering, EffBertForSequenceClassification
from tests.efficientbert.models.effbert_helpers import batch, tiny_config

TOLERANCE = 1e-4
OPSET = 17


@pytest.fixture(autouse=True)
def _single_thread_seeded() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _classifier() -> EffBertForSequenceClassification:
    return EffBertForSequenceClassification(tiny_config(num_labels=3)).eval()


def _span_model() -> EffBertForQuestionAnswering:
    return EffBertForQuestionAnswering(tiny_config()).eval()


def _other_shapes() -> list[dict[str, torch.Tensor]]:
    """Batches whose batch size and length differ from the traced (2, 6) example, with padded rows."""
    return [batch((11, 3, 9), seq_len=11, seed=1), batch((5,), seq_len=5, seed=2), batch((13, 13), seq_len=13, seed=3)]


@pytest.mark.parametrize(
    ("build", "names"),
    [(_classifier, ("logits",)), (_span_model, ("start_logits", "end_logits"))],
    ids=["classification", "span"],
)
def test_parity_on_shapes_other_than_the_traced_one(build: type, names: tuple[str, ...]) -> None:
    model = build()
    onnx_model = OnnxRuntimeModel(onnx_bytes(model, batch((6, 2), seq_len=6), OPSET), model.config, threads=1)
    assert onnx_model.output_names == names == output_names(model)
    assert onnx_model.input_names == ("input_ids", "attention_mask", "token_type_ids")

    checked = parity(model, onnx_model, _other_shapes())

    assert checked["rows"] == 6 and checked["batches"] == 3
    assert set(checked["per_output"]) == set(names)
    assert checked["max_abs_diff"] <= TOLERANCE
    assert checked["max_abs_diff"] == max(checked["per_output"].values())
    ort_out = onnx_model(**batch((11, 3, 9), seq_len=11, seed=1))
    shapes = [tuple(t.shape) for t in (ort_out if isinstance(ort_out, tuple) else (ort_out,))]
    assert shapes == ([(3, 3)] if names == ("logits",) else [(3, 11), (3, 11)])


def test_graph_traced_without_padding_still_masks_padded_rows() -> None:
    model = _classifier()
    unpadded = batch((6, 6), seq_len=6)
    onnx_model = OnnxRuntimeModel(onnx_bytes(model, unpadded, OPSET), model.config, threads=1)
    padded = batch((9, 2, 4), seq_len=9, seed=5)
    assert parity(model, onnx_model, [padded])["max_abs_diff"] <= TOLERANCE


def test_export_of_a_model_in_training_mode_leaves_it_in_eval_mode_without_dropout_in_the_graph() -> None:
    model = _classifier().train()
    blob = onnx_bytes(model, batch((6, 2), seq_len=6), OPSET)
    assert not any(m.training for m in model.modules())
    onnx_model = OnnxRuntimeModel(blob, model.config, threads=1)
    assert parity(model, onnx_model, _other_shapes())["max_abs_diff"] <= TOLERANCE


def test_graph_declares_opset_inputs_and_dynamic_axes() -> None:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load_model_from_string(onnx_bytes(_span_model(), batch((6, 2), seq_len=6), OPSET))
    assert {entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")} == {OPSET}
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in proto.graph.output] == ["start_logits", "end_logits"]
    for value in [*proto.graph.input, *proto.graph.output]:
        assert [d.dim_param for d in value.type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in proto.graph.input)


def test_parity_restores_the_training_flag_and_rejects_no_batches() -> None:
    model = _classifier()
    onnx_model = OnnxRuntimeModel(onnx_bytes(model, batch((6, 2), seq_len=6), OPSET), model.config, threads=1)
    model.train()
    parity(model, onnx_model, [batch()])
    assert model.training
    with pytest.raises(ValueError, match="no batches"):
        parity(model, onnx_model, [])


def test_a_perturbed_model_fails_the_parity_check() -> None:
    model = _classifier()
    onnx_model = OnnxRuntimeModel(onnx_bytes(model, batch((6, 2), seq_len=6), OPSET), model.config, threads=1)
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.classifier.bias.add_(0.01)

    checked = parity(perturbed, onnx_model, _other_shapes())

    assert checked["max_abs_diff"] == pytest.approx(0.01, rel=1e-3)
    require_parity("sst2", parity(model, onnx_model, _other_shapes()), TOLERANCE)  # the original passes
    with pytest.raises(EffbertError, match=r"export of sst2: .* by 0\.01 on 6 dev rows, .*parity_tolerance=0\.0001"):
        require_parity("sst2", checked, TOLERANCE)
    with pytest.raises(EffbertError, match="by inf"):
        require_parity("sst2", {**checked, "max_abs_diff": float("inf")}, TOLERANCE)


def test_onnxruntime_model_is_timed_by_the_latency_protocol() -> None:
    model = _span_model()
    onnx_model = OnnxRuntimeModel(onnx_bytes(model, batch((6, 2), seq_len=6), OPSET), model.config, threads=1)
    onnx_model.to("cpu")  # harmless: no parameters

    results = compare_latency(
        {"pytorch": model, "onnxruntime": onnx_model}, 2, 16, warmup=1, runs=20, rounds=2, threads=1, device="cpu"
    )

    assert list(results) == ["pytorch", "onnxruntime"]
    for result in results.values():
        assert result.runs == 20 and result.batch_size == 2 and result.seq_len == 16 and result.threads == 1
        assert 0 < result.min_ms <= result.median_ms <= result.max_ms
    with pytest.raises(ValueError, match="max_position_embeddings"):
        compare_latency({"onnxruntime": onnx_model}, 1, 65, runs=20, device="cpu")


def test_thread_count_follows_torch_when_not_given() -> None:
    model = _classifier()
    blob = onnx_bytes(model, batch((6, 2), seq_len=6), OPSET)
    assert OnnxRuntimeModel(blob, model.config).threads == torch.get_num_threads() == 1
    assert OnnxRuntimeModel(blob, model.config, threads=2).threads == 2
    with pytest.raises(ValueError, match="threads"):
        OnnxRuntimeModel(blob, model.config, threads=0)
