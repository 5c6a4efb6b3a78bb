"""Section "Export and submission": ONNX parity and latency and the registry entry per task (the export stage), the
submission files and what is missing from them (predict_test); each part says so when its stage did not run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from effbert.report.sections.blocks import bullets, pick, section, table, text


def _parity_row(task: str, onnx: Mapping[str, Any], registry: Mapping[str, Any]) -> dict[str, Any]:
    parity = onnx.get("parity", {})
    return {
        "task": task,
        "opset": onnx.get("opset"),
        "diff": parity.get("max_abs_diff"),
        "tolerance": parity.get("tolerance"),
        "rows": parity.get("rows"),
        "passed": parity.get("passed"),
        "registry": f"{registry['name']}@{registry['alias']} (version {registry.get('version')})"
        if registry.get("name")
        else None,
    }


def _latency_rows(task: str, onnx: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "task": task,
            "batch": row.get("batch_size"),
            "seq": row.get("seq_len"),
            "pytorch": row.get("pytorch", {}).get("median_ms"),
            "ort": row.get("onnxruntime", {}).get("median_ms"),
            "ratio": row.get("pytorch_over_onnxruntime"),
        }
        for row in onnx.get("latency", {}).get("by_batch", [])
    ]


def _export_tables(exports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The parity/registry table and, when measured, the ONNX Runtime vs PyTorch latency table."""
    parity_rows, latency_rows = [], []
    for task, found in exports.items():
        parity_rows.append(_parity_row(task, found["onnx"], found.get("registry") or {}))
        latency_rows += _latency_rows(task, found["onnx"])
    blocks = [
        table(
            "ONNX export per task: max |ONNX Runtime - PyTorch| over the outputs on real dev rows, and the "
            "MLflow registry entry (name@alias)",
            [
                ("task", "task", "text"),
                ("opset", "opset", "int"),
                ("diff", "max abs diff", "scientific"),
                ("tolerance", "tolerance", "scientific"),
                ("rows", "dev rows", "int"),
                ("passed", "parity passed", "text"),
                ("registry", "registered model", "text"),
            ],
            parity_rows,
        )
    ]
    if latency_rows:
        blocks.append(
            table(
                "ONNX Runtime vs PyTorch latency of the student (CPU, same threads, effbert.measure.latency protocol)",
                [
                    ("task", "task", "text"),
                    ("batch", "batch", "int"),
                    ("seq", "seq", "int"),
                    ("pytorch", "PyTorch median ms", "ms"),
                    ("ort", "ONNX Runtime median ms", "ms"),
                    ("ratio", "PyTorch / ONNX Runtime", "ratio"),
                ],
                latency_rows,
            )
        )
    return blocks


def _submission_blocks(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The submission files of predict_test, the GLUE zip and what it misses, the SQuAD splits used."""
    blocks = []
    files = manifest.get("files", {})
    if files:
        blocks.append(
            table(
                "Submission files (predict_test): GLUE server files and SQuAD predictions of the final students",
                [
                    ("file", "file", "text"),
                    ("task", "task", "text"),
                    ("split", "split", "text"),
                    ("rows", "rows", "int"),
                    ("server_rows", "server expects", "int"),
                ],
                [
                    {"file": name, **pick(record, "task", "split", "rows", "server_rows")}
                    for name, record in files.items()
                ],
            )
        )
    glue = manifest.get("glue", {})
    missing = glue.get("missing") or []
    items = [
        f"GLUE zip: {glue.get('zip') or 'none (no GLUE task)'}; "
        + (f"missing server files: {', '.join(missing)}." if missing else "all server files present.")
    ]
    items += [
        f"{task}: split {info.get('split')}: {info.get('reason')}" for task, info in manifest.get("squad", {}).items()
    ]
    blocks.append(bullets(items))
    return blocks


def export_section(exports: Mapping[str, Mapping[str, Any]], manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    """ONNX parity and latency, the registry entries, the submission files.

    Args:
        exports: from `effbert.report.inputs.collect_exports` (empty when the export did not run).
        manifest: predict_test's ``manifest.json``, or None when it did not run.
    """
    not_run = text("ONNX export and registry: not run (no results/export).")
    blocks = _export_tables(exports) if exports else [not_run]
    if manifest is None:
        blocks.append(text("Submission files: not run (no results/predict_test/manifest.json)."))
    else:
        blocks += _submission_blocks(manifest)
    return section("export", "Export and submission", blocks)
