"""The ONNX export of a task student as ``export@<task>`` records it (``onnx.json``).

:func:`export_onnx` exports the student (`effbert.export.onnx`), checks parity with PyTorch on real dev rows
(:func:`require_parity` fails above ``export.parity_tolerance``) and times PyTorch and ONNX Runtime side by side on
the CPU at every ``latency.batch_sizes`` (:func:`latency_rows`, `effbert.measure.latency.compare_latency`), logging
the figures to the stage's MLflow run. :func:`onnx_facts` is what the model card says about that record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from effbert import tracking
from effbert.compute import device
from effbert.errors import EffbertError
from effbert.eval.inference import padded_batches
from effbert.export.model_card import LatencyRow, OnnxFacts
from effbert.export.onnx import EXPORTER, OnnxRuntimeModel, onnx_bytes, parity
from effbert.measure.latency import compare_latency, machine_description
from effbert.params import Params

__all__ = [
    "EXAMPLE_ROWS",
    "LATENCY_PROTOCOL",
    "ONNX_FILE",
    "export_onnx",
    "latency_rows",
    "onnx_facts",
    "onnx_record",
    "require_parity",
]

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
"""The ONNX file in the export's output (the card, one folder down, links to ``../model.onnx``)."""
EXAMPLE_ROWS = 2
"""Dev rows (padded to the longer one) that trace the ONNX graph; parity then runs on other shapes."""
LATENCY_PROTOCOL = "effbert.measure.latency.compare_latency"
"""How the latency was measured, as recorded in ``onnx.json``."""


def require_parity(task: str, checked: Mapping[str, Any], tolerance: float) -> None:
    """Fail the export when ONNX Runtime and PyTorch differ by more than ``tolerance``.

    Args:
        task: task id (named in the error).
        checked: a :func:`effbert.export.onnx.parity` record (``max_abs_diff``, ``rows``).
        tolerance: ``export.parity_tolerance``.

    Raises:
        EffbertError: the difference is above the tolerance (or NaN, which parity reports as infinite).
    """
    if not checked["max_abs_diff"] <= tolerance:
        raise EffbertError(
            f"export of {task}: ONNX Runtime differs from PyTorch by {checked['max_abs_diff']:.3g} on "
            f"{checked['rows']} dev rows, above export.parity_tolerance={tolerance:g}"
        )


def latency_rows(params: Params, model: Any, onnx_model: OnnxRuntimeModel) -> list[dict[str, Any]]:
    """PyTorch and ONNX Runtime side by side on the CPU at every ``latency.batch_sizes``.

    Raises:
        EffbertError: ``latency.seq_len`` beyond the model's positions.
    """
    hp = params.latency
    rows = []
    for batch in hp.batch_sizes:
        try:
            results = compare_latency(
                {"pytorch": model, "onnxruntime": onnx_model},
                batch,
                hp.seq_len,
                warmup=hp.warmup,
                runs=hp.runs,
                rounds=hp.rounds,
                threads=hp.threads,
                device="cpu",
            )
        except ValueError as err:
            raise EffbertError(f"latency.seq_len={hp.seq_len}: {err}") from None
        torch_ms, ort_ms = results["pytorch"].median_ms, results["onnxruntime"].median_ms
        log.info("batch %d: PyTorch %.2f ms, ONNX Runtime %.2f ms", batch, torch_ms, ort_ms)
        rows.append(
            {
                "batch_size": batch,
                "seq_len": hp.seq_len,
                "pytorch": results["pytorch"].to_dict(),
                "onnxruntime": results["onnxruntime"].to_dict(),
                "pytorch_over_onnxruntime": torch_ms / ort_ms,
            }
        )
    return rows


def _latency_metrics(latency: list[dict[str, Any]]) -> dict[str, float]:
    """The MLflow metrics of :func:`latency_rows`: both medians and their ratio per batch size."""
    metrics = {}
    for row in latency:
        batch = row["batch_size"]
        metrics[f"latency/pytorch_ms/b{batch}"] = row["pytorch"]["median_ms"]
        metrics[f"latency/onnxruntime_ms/b{batch}"] = row["onnxruntime"]["median_ms"]
        metrics[f"latency/pytorch_over_onnxruntime/b{batch}"] = row["pytorch_over_onnxruntime"]
    return metrics


def onnx_record(
    params: Params,
    task: str,
    blob: bytes,
    onnx_model: OnnxRuntimeModel,
    checked: Mapping[str, Any],
    latency: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``onnx.json`` record of an export whose parity passed (see :func:`export_onnx`)."""
    import onnxruntime
    import torch

    hp = params.export
    return {
        "task": task,
        "file": ONNX_FILE,
        "bytes": len(blob),
        "opset": hp.opset,
        "exporter": EXPORTER,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "inputs": list(onnx_model.input_names),
        "outputs": list(onnx_model.output_names),
        "parity": {
            "max_abs_diff": checked["max_abs_diff"],
            "per_output": checked["per_output"],
            "rows": checked["rows"],
            "split": "dev",
            "tolerance": hp.parity_tolerance,
            "passed": True,  # require_parity raised otherwise
            "pytorch_device": device(),
        },
        "latency": {
            "device": "cpu",
            "threads": onnx_model.threads,
            "protocol": LATENCY_PROTOCOL,
            "by_batch": latency,
        },
        "machine": machine_description("cpu"),
    }


def export_onnx(
    params: Params, task: str, model: Any, tokenizer: Any, dev: Any, stage: tracking.StageRun
) -> tuple[bytes, dict[str, Any]]:
    """Export ``model`` to ONNX, check its parity on real dev rows and time both runtimes side by side.

    Args:
        params: the run's params (``export``, ``latency``, ``evaluate.batch_size``).
        task: task id.
        model: the task student (on the CPU; it runs on `effbert.compute.device` for the parity check only).
        tokenizer: its tokenizer.
        dev: the task's prepared ``dev`` split (at least one row).
        stage: the MLflow run the parity and latency figures are logged to.

    Returns:
        The ONNX bytes and the ``onnx.json`` record (:func:`onnx_record`).

    Raises:
        EffbertError: a parity difference above ``export.parity_tolerance`` (logged before it fails), or a
            ``latency.seq_len`` beyond the model's positions.
    """
    hp = params.export
    traced = dev.select(range(min(EXAMPLE_ROWS, len(dev))))
    example = next(padded_batches(traced, tokenizer, EXAMPLE_ROWS, complete=True))
    compared = dev.select(range(min(hp.parity_rows, len(dev))))
    blob = onnx_bytes(model, example, hp.opset)
    onnx_model = OnnxRuntimeModel(blob, model.config, threads=params.latency.threads)
    model.to(device())
    checked = parity(model, onnx_model, padded_batches(compared, tokenizer, params.evaluate.batch_size, complete=True))
    model.to("cpu")
    stage.log_metrics(
        {"parity/max_abs_diff": checked["max_abs_diff"], **{f"parity/{k}": v for k, v in checked["per_output"].items()}}
    )
    log.info("ONNX parity on %d dev rows: max |diff| %.3g", checked["rows"], checked["max_abs_diff"])
    require_parity(task, checked, hp.parity_tolerance)
    latency = latency_rows(params, model, onnx_model)
    stage.log_metrics(_latency_metrics(latency))
    return blob, onnx_record(params, task, blob, onnx_model, checked, latency)


def onnx_facts(params: Params, report: Mapping[str, Any]) -> OnnxFacts:
    """What the model card says about the export, from its ``onnx.json`` record.

    Args:
        params: the run's params (``latency.runs``).
        report: the :func:`onnx_record`.
    """
    parity_record, latency = report["parity"], report["latency"]
    return OnnxFacts(
        file=f"../{ONNX_FILE}",
        opset=report["opset"],
        exporter=report["exporter"],
        max_abs_diff=parity_record["max_abs_diff"],
        tolerance=parity_record["tolerance"],
        rows=parity_record["rows"],
        latency=tuple(
            LatencyRow(r["batch_size"], r["seq_len"], r["pytorch"]["median_ms"], r["onnxruntime"]["median_ms"])
            for r in latency["by_batch"]
        ),
        runs=params.latency.runs,
        threads=latency["threads"],
        device=latency["device"],
        machine=str(report["machine"]["cpu"]),
    )
