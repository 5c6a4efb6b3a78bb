"""A complete synthetic report, built by the report's own builder (`effbert.report.document.build_report`) from
made-up inputs (no models, no files).

The inputs have every field the stage collects (the optional ones too: search_quality, export, predict_test), so the
renderers and the browser check see a document shaped exactly like a real one, in milliseconds.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from effbert import params as params_mod
from effbert.measure.latency import LatencyResult
from effbert.params import Params
from effbert.report.document import build_report
from effbert.report.inputs import ReportInputs
from effbert.report.paper import load_paper_results

ROOT = Path(__file__).resolve().parents[2]
SMOKE_PARAMS = ROOT / "params" / "smoke.yaml"

STAGE_LAYERS = [
    ("linear2_3(tanh(mul(linear2_3(x,wb1),x)),wb2)", 2, 16, "2×(H/3): W2·tanh((W1·x + b1) ⊙ x) + b2"),
    ("linear4_2(relu(linear4_2(x,wb1)),wb2)", 4, 24, "4×(H/2): W2·relu(W1·x + b1) + b2"),
    ("linear1_3(add(x,sigmoid(linear1_3(x,wb1))),wb2)", 1, 16, "1×(H/3): W2·(x + sigmoid(W1·x + b1)) + b2"),
]
"""(expression, units, width, formula) of each layer of the made-up winners: the formula is what
`effbert.methods.efficientbert.search.hall_of_fame.describe_layer` gives (checked in test_report_stage.py; not
imported here because importing the search package loads LightGBM and scikit-learn, seconds the browser test does not
need)."""


def stand_in_png(label: str, size: tuple[int, int] = (360, 200)) -> bytes:
    """A small PNG standing in for a figure another stage draws (a framed box with a label and a few bars)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((4, 4, size[0] - 5, size[1] - 5), outline="black")
    for index, height in enumerate((60, 110, 90)):
        draw.rectangle((40 + 60 * index, size[1] - 20 - height, 80 + 60 * index, size[1] - 20), fill="steelblue")
    draw.text((12, 10), label, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def smoke_params() -> Params:
    """The smoke profile (tasks sst2, mrpc, squad_v1; latency at batch 1 and 4, BERT-base at batch 1)."""
    return params_mod.load(SMOKE_PARAMS)


def _latency(model: str, batch: int, median: float, seq_len: int) -> dict[str, Any]:
    times = [median * (0.9 + 0.01 * i) for i in range(20)]
    result = LatencyResult.from_times(times, warmup=1, batch_size=batch, seq_len=seq_len, threads=2, device="cpu")
    return {"model": model, **{k: v for k, v in result.to_dict().items() if k != "machine"}}


def _summary() -> dict[str, Any]:
    """eval_summary's ``summary.json``: teacher and student on sst2, mrpc and squad_v1."""
    return {
        "teacher": {
            "sst2": {"rows": 872, "score": 0.8635, "vs_teacher": 1.0, "accuracy": 0.8635},
            "mrpc": {"rows": 408, "score": 0.7721, "vs_teacher": 1.0, "f1": 0.8235, "accuracy": 0.7206},
            "squad_v1": {"rows": 601, "score": 23.88, "vs_teacher": 1.0, "f1": 30.12, "exact_match": 17.64},
        },
        "student": {
            "sst2": {"rows": 872, "score": 0.8188, "vs_teacher": 0.9482, "accuracy": 0.8188},
            "mrpc": {"rows": 408, "score": 0.7547, "vs_teacher": 0.9775, "f1": 0.8133, "accuracy": 0.6961},
            "squad_v1": {"rows": 601, "score": 6.70, "vs_teacher": 0.2805, "f1": 10.23, "exact_match": 3.16},
        },
        "majority": {  # sentence tasks only
            "sst2": {"rows": 872, "score": 0.5092, "vs_teacher": 0.5897, "accuracy": 0.5092},
            "mrpc": {"rows": 408, "score": 0.7480, "vs_teacher": 0.9688, "f1": 0.8122, "accuracy": 0.6838},
        },
    }


def _sizes() -> dict[str, Any]:
    """The size rows of the student, the teacher and BERT-base."""
    return {
        "student": {
            "model": "student",
            "layers": 3,
            "hidden_size": 48,
            "params": 1_600_000,
            "params_without_embeddings": 90_000,
            "macs": 25_000_000,
            "fit_dense": 18_816,
            "params_with_fit_dense": 1_618_816,
        },
        "teacher": {
            "model": "teacher",
            "layers": 6,
            "hidden_size": 384,
            "params": 22_565_376,
            "params_without_embeddings": 10_646_784,
            "macs": 1_430_000_000,
        },
        "bert_base": {
            "model": "bert_base",
            "layers": 12,
            "hidden_size": 768,
            "params": 108_891_648,
            "params_without_embeddings": 85_054_464,
            "macs": 11_173_625_856,
        },
    }


def _latencies(seq: int) -> list[dict[str, Any]]:
    """Latency rows at batch 1 (BERT-base too) and 4."""
    return [
        _latency("student", 1, 1.8, seq),
        _latency("teacher", 1, 6.5, seq),
        _latency("bert_base", 1, 31.0, seq),
        _latency("student", 4, 4.1, seq),
        _latency("teacher", 4, 19.0, seq),
    ]


def _machine() -> dict[str, Any]:
    """Where the made-up latencies were measured."""
    return {
        "device": "cpu",
        "cpu": "Test CPU",
        "logical_cores": 2,
        "usable_cores": 2,
        "torch_threads": 2,
        "torch": "2.x",
        "transformers": "5.x",
        "python": "3.11",
        "platform": "Linux",
    }


def _stage(number: int) -> dict[str, Any]:
    """The collected outputs of search stage ``number`` (1-3)."""
    return {
        "stage": number,
        "dir": f"results/search_stage{number}",
        "metrics": {
            "stage": number,
            "strategy": "lanas",
            "candidates": 4 * number,
            "failed": 0,
            "best_fitness": 0.72 + 0.01 * number,
            "vanilla_fitness": 0.7075,
            "gain_over_vanilla": 0.0125 + 0.01 * number,
            "proxy_noise": {"seeds": [42, 43, 44], "fitness": [0.7075, 0.7, 0.715], "mean": 0.7075, "std": 0.0075},
            "gain_in_noise_sd": (0.0125 + 0.01 * number) / 0.0075,
            "gain_verdict": f"{(0.0125 + 0.01 * number) / 0.0075:.1f} SD of the proxy's noise: beyond noise",
            "winner_params": 1_610_000,
            "winner_latency_ms": 2.2,
            "param_window": [1_560_000, 1_620_000],
            "search_seconds": 95.0,
            "candidates_per_minute": 2.5,
            "latency_protocol": {
                "batch_size": 1,
                "seq_len": 128,
                "threads": 1,
                "runs": 20,
                "machine": {"cpu": "Test CPU"},
            },
        },
        "hidden_size": 48,
        "layers": [
            {"expr": expr, "units": units, "width": width, "formula": formula}
            for expr, units, width, formula in STAGE_LAYERS
        ],
        "figure": stand_in_png(f"search stage {number}"),
    }


def _exports(seq: int) -> dict[str, Any]:
    """The export stage's records of sst2 (parity, latency, registry entry)."""
    return {
        "sst2": {
            "onnx": {
                "opset": 17,
                "parity": {"max_abs_diff": 2.4e-7, "rows": 48, "tolerance": 1e-4, "passed": True},
                "latency": {
                    "by_batch": [
                        {
                            "batch_size": 1,
                            "seq_len": seq,
                            "pytorch": {"median_ms": 1.9},
                            "onnxruntime": {"median_ms": 1.1},
                            "pytorch_over_onnxruntime": 1.9 / 1.1,
                        }
                    ]
                },
            },
            "registry": {"name": "effbert-sst2", "version": 3, "alias": "champion"},
        }
    }


def _manifest() -> dict[str, Any]:
    """predict_test's ``manifest.json``: two GLUE files, one SQuAD prediction file, missing GLUE files."""
    return {
        "files": {
            "SST-2.tsv": {"task": "sst2", "split": "test", "rows": 1821, "server_rows": 1821},
            "MRPC.tsv": {"task": "mrpc", "split": "test", "rows": 1725, "server_rows": 1725},
            "squad_v1-dev-predictions.json": {"task": "squad_v1", "split": "dev", "rows": 601},
        },
        "glue": {"zip": "glue_submission.zip", "present": ["MRPC.tsv", "SST-2.tsv"], "missing": ["CoLA.tsv", "AX.tsv"]},
        "squad": {"squad_v1": {"split": "dev", "reason": "the official test set is hidden"}},
    }


def _lineage(params: Params) -> dict[str, Any]:
    """The lineage of a report made from uncommitted changes, one input without ``lineage.json``."""
    return {
        "git_commit": "0123456789abcdef0123456789abcdef01234567-dirty",
        "code_digest": "c0ffee0123456789",
        "effbert_version": "0.1.0",
        "params_file": "params.yaml",
        "params_sha256": "ab" * 32,
        "experiment": "effbert",
        "generated_at": "2026-01-01T00:00:00+00:00",
        "data": [{"task": task, "split": "dev", "sha256": "cd" * 32, "tokenizer": "dist:x"} for task in params.tasks],
        "runs": [
            {"output": "results/eval_summary", "stage": "eval_summary", "run_id": "f" * 32, "git_commit": "0" * 40,
             "digest": "e" * 64, "bf16": None},
            {"output": "results/models/student/sst2", "stage": "final_distill@sst2", "run_id": "a" * 32,
             "git_commit": "0" * 40, "digest": "b" * 64, "bf16": "on"},
            {"output": "results/search_stage1", "stage": None, "run_id": None, "git_commit": None, "digest": None,
             "bf16": None},
        ],
        "bf16": {"setting": "auto", "cpu_bf16_flags": ["avx512_bf16"]},
    }  # fmt: skip


def _quality() -> dict[str, Any]:
    """search_quality's ``metrics.json``, the scratch proxy's tau undefined."""
    return {
        "candidates": 5,
        "proxy_task": "sst2",
        "kendall_tau_inherit": 0.6,
        "kendall_p_inherit": 0.14,
        "kendall_tau_scratch": math.nan,  # undefined (constant scores): shown as a dash
        "kendall_p_scratch": math.nan,
        "search_stage": "search_stage1",
    }


def sample_inputs(params: Params) -> ReportInputs:
    """Made-up but complete report inputs for ``params``' tasks, every optional input present."""
    seq = params.latency.seq_len
    measured = {
        "task": "sst2",
        "sizes": _sizes(),
        "latency": _latencies(seq),
        "machine": _machine(),
        "protocol": {**params.latency.model_dump(), "linear_kernel": "oneDNN for every model"},
    }
    return ReportInputs(
        summary=_summary(),
        measured=measured,
        stages=[_stage(number) for number in (1, 2, 3)],
        lineage=_lineage(params),
        quality=_quality(),
        quality_png=stand_in_png("search quality"),
        exports=_exports(seq),
        manifest=_manifest(),
        cost=_cost(params),
    )


def _cost(params: Params) -> dict[str, Any]:
    """The run's cost as `collect_cost` gives it, on made-up prepared sizes."""
    from effbert.measure import cost
    from effbert.report.inputs import cost_record

    return cost_record(params, cost.data_sizes(params, dict.fromkeys(params.tasks, 400), 2_000))


def sample_report(params: Params | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A complete report dict and its figures, as the stage builds them, from `sample_inputs`."""
    params = params or smoke_params()
    return build_report(params, sample_inputs(params), load_paper_results())
