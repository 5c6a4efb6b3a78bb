"""Stage ``export@<task>``: the final student as a documented, portable, registered model.

Output ``results/export/<task>/``:

- ``model/``: the student's Hugging Face directory with its full model card (``README.md``: architecture, parameter
  counts, teacher, data, labelled dev metrics, ONNX parity and latency, lineage, limitations, how to load);
- ``model.onnx``: the student exported with dynamic batch and sequence axes (`effbert.export.onnx`);
- ``onnx.json``: opset, exporter, the parity check on the first ``export.parity_rows`` rows of the task's prepared
  ``dev`` split (max |ONNX Runtime - PyTorch| per output, tolerance, passed), and PyTorch and ONNX Runtime latency
  side by side at every ``latency.batch_sizes`` (`effbert.bench.compare_latency`, CPU, same threads), with the
  machine description;
- ``registry.json``: the MLflow model-registry entry (``<export.registry_prefix>-<task>``, version, alias
  ``export.registry_alias``, ``models:/<name>@<alias>``, run id) of the student logged as a pyfunc model.

A parity difference above ``export.parity_tolerance`` fails the stage (nothing is written). The card's facts come
from :mod:`effbert.stages.model_card`, which ``final_distill@<task>`` also uses for the first card.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.bench import compare_latency, machine_description
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.export.model_card import (
    LatencyRow,
    LineageFacts,
    OnnxFacts,
    RegistryFacts,
    render_model_card,
)
from effbert.export.onnx import EXPORTER, OnnxRuntimeModel, onnx_bytes, parity
from effbert.inference import MODEL_INPUTS
from effbert.params import Params
from effbert.stages.common import device, seed_everything
from effbert.stages.model_card import (
    CARD_FILE,
    card_facts,
    data_facts,
    dev_metric_rows,
    read_json,
    registered_name,
    require_student,
)

log = logging.getLogger(__name__)

MODEL_DIR = "model"
"""The Hugging Face directory inside the export's output."""
ONNX_FILE = "model.onnx"
ONNX_REPORT = "onnx.json"
REGISTRY_FILE = "registry.json"
EXAMPLE_ROWS = 2
"""Dev rows (padded to the longer one) that trace the ONNX graph; parity then runs on other shapes."""


def padded_batches(dataset: Any, tokenizer: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    """Model inputs of ``dataset`` in row order, padded per batch like `effbert.inference.predict_logits` does.

    Args:
        dataset: a tokenised ``datasets.Dataset`` (other columns are ignored).
        tokenizer: its tokenizer (pads with its pad token).
        batch_size: rows per batch.

    Yields:
        ``input_ids``, ``attention_mask`` and ``token_type_ids`` (zeros when the data has none), (B, T) tensors.
    """
    import torch

    rows = dataset.select_columns([c for c in MODEL_INPUTS if c in dataset.column_names])
    for start in range(0, len(rows), batch_size):
        batch = dict(tokenizer.pad(rows[start : start + batch_size], return_tensors="pt"))
        batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
        batch.setdefault("token_type_ids", torch.zeros_like(batch["input_ids"]))
        yield batch


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


def _latency(params: Params, model: Any, onnx_model: OnnxRuntimeModel) -> list[dict[str, Any]]:
    """PyTorch and ONNX Runtime side by side on the CPU at every ``latency.batch_sizes``."""
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


def export_onnx(
    params: Params, task: str, model: Any, tokenizer: Any, dev: Any, stage: tracking.StageRun
) -> tuple[bytes, dict[str, Any]]:
    """Export ``model`` to ONNX, check its parity on real dev rows and time both runtimes side by side.

    Args:
        params: the run's params (``export``, ``latency``, ``evaluate.batch_size``).
        task: task id.
        model: the task student (on the CPU; it runs on `effbert.stages.common.device` for the parity check only).
        tokenizer: its tokenizer.
        dev: the task's prepared ``dev`` split (at least one row).
        stage: the MLflow run the parity and latency figures are logged to.

    Returns:
        The ONNX bytes and the ``onnx.json`` record.

    Raises:
        EffbertError: a parity difference above ``export.parity_tolerance``, or a ``latency.seq_len`` beyond the
            model's positions.
    """
    import onnxruntime
    import torch

    hp = params.export
    example = next(padded_batches(dev.select(range(min(EXAMPLE_ROWS, len(dev)))), tokenizer, EXAMPLE_ROWS))
    compared = dev.select(range(min(hp.parity_rows, len(dev))))
    blob = onnx_bytes(model, example, hp.opset)
    onnx_model = OnnxRuntimeModel(blob, model.config, threads=params.latency.threads)
    model.to(device())
    checked = parity(model, onnx_model, padded_batches(compared, tokenizer, params.evaluate.batch_size))
    model.to("cpu")
    stage.log_metrics(
        {"parity/max_abs_diff": checked["max_abs_diff"], **{f"parity/{k}": v for k, v in checked["per_output"].items()}}
    )
    log.info("ONNX parity on %d dev rows: max |diff| %.3g", checked["rows"], checked["max_abs_diff"])
    require_parity(task, checked, hp.parity_tolerance)
    latency = _latency(params, model, onnx_model)
    for row in latency:
        batch = row["batch_size"]
        stage.log_metrics(
            {
                f"latency/pytorch_ms/b{batch}": row["pytorch"]["median_ms"],
                f"latency/onnxruntime_ms/b{batch}": row["onnxruntime"]["median_ms"],
                f"latency/pytorch_over_onnxruntime/b{batch}": row["pytorch_over_onnxruntime"],
            }
        )
    report = {
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
            "protocol": "effbert.bench.compare_latency",
            "by_batch": latency,
        },
        "machine": machine_description("cpu"),
    }
    return blob, report


def _onnx_facts(params: Params, report: Mapping[str, Any]) -> OnnxFacts:
    """What the card says about the export, from its ``onnx.json`` record."""
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


def _trained_lineage(task: str, model_dir: Path, stage: tracking.StageRun) -> LineageFacts:
    """The student's training lineage (its ``lineage.json``) plus this export's run."""
    trained = tracking.read_lineage(model_dir) or {}
    runs = [(f"export@{task} (wrote this card, the ONNX file and the registry entry)", stage.run_id)]
    if trained.get("run_id"):
        runs.insert(0, (f"{trained.get('dvc_stage') or trained.get('stage')} (trained this model)", trained["run_id"]))
    return LineageFacts(
        git_commit=str(trained.get("git_commit") or tracking.git_commit()),
        code_digest=str(trained.get("code_digest") or tracking.code_digest()),
        runs=tuple(runs),
        upstream_run_ids=tuple(trained.get("upstream_run_ids", ())),
        model_digest=trained.get("digest"),
    )


def run(
    params: Params,
    task: str,
    model_dir: Path,
    eval_dir: Path,
    data_dir: Path,
    out_dir: Path,
    stage: tracking.StageRun,
    *,
    teacher_dir: Path | None = None,
) -> dict[str, Any]:
    """Export a task student: model card, ONNX with parity and latency, model-registry entry (see module doc).

    Args:
        params: the run's params (``export``, ``latency``, ``data``, ``evaluate``, ``seed``).
        task: task id.
        model_dir: the final student (``results/models/student/<task>``).
        eval_dir: its ``evaluate`` output (``metrics.json``).
        data_dir: the task's ``prepare_data`` output (``dev`` rows for the parity check, ``meta.json``).
        out_dir: where to write (the CLI renames it into place).
        stage: this stage's MLflow run (metrics, artifacts, the registered model).
        teacher_dir: the fine-tuned teacher, named in the card when given.

    Returns:
        The ``onnx.json`` record plus ``registry`` (the ``registry.json`` record).

    Raises:
        EffbertError: a missing or invalid input, a model that is not an EffBert student, no dev rows, a
            ``latency.seq_len`` beyond the model's positions, or a parity difference above the tolerance.
    """
    import datasets

    from effbert.export.pyfunc import MODEL_ARTIFACT, EffBertPyfunc, pip_requirements, pyfunc_config, pyfunc_signature
    from effbert.models.teacher import load_task_model, load_tokenizer

    spec = get_task(task)
    seed_everything(params.seed)
    record = read_json(eval_dir / "metrics.json", f"evaluate output of the {task} student")
    model = load_task_model(str(model_dir), spec).eval()
    require_student(model, model_dir, task)
    tokenizer = load_tokenizer(str(model_dir))
    dev: Any = datasets.load_from_disk(str(data_dir / "dev"))
    if len(dev) == 0:
        raise EffbertError(f"{data_dir / 'dev'}: no rows to check the ONNX export of {task} on")
    blob, report = export_onnx(params, task, model, tokenizer, dev, stage)

    hf_dir = out_dir / MODEL_DIR
    shutil.copytree(model_dir, hf_dir, ignore=shutil.ignore_patterns(tracking.LINEAGE_FILE, CARD_FILE))
    (out_dir / ONNX_FILE).write_bytes(blob)
    (out_dir / ONNX_REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    registry = RegistryFacts(name=registered_name(params, task), alias=params.export.registry_alias)
    facts = card_facts(
        params,
        task,
        model,
        model_dir,
        data_dir,
        metrics=dev_metric_rows(spec, record, params, data_facts(params, spec, data_dir)),
        lineage=_trained_lineage(task, model_dir, stage),
        teacher_dir=teacher_dir,
        onnx=_onnx_facts(params, report),
        registry=registry,
        notes=("Held-out (checkpoint-selection) scores are in the card `final_distill` wrote with the model.",),
    )
    (hf_dir / CARD_FILE).write_text(render_model_card(facts), encoding="utf-8")

    entry = stage.register_model(
        registry.name,
        registry.alias,
        EffBertPyfunc(),
        {MODEL_ARTIFACT: hf_dir},
        pyfunc_config(params, task),
        pip_requirements(),
        signature=pyfunc_signature(task),
        tags={"effbert.task": task},
    )
    (out_dir / REGISTRY_FILE).write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
    for name in (ONNX_REPORT, REGISTRY_FILE):
        stage.log_artifact(out_dir / name)
    stage.log_artifact(hf_dir / CARD_FILE)
    log.info("registered %s version %s as %s", registry.name, entry["version"], entry["model_uri"])
    return {**report, "registry": entry}
