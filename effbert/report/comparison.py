"""The like-for-like comparison of the compression methods (issue 13): one table per task of every method's models
with size, multiply-accumulates, latency under the one protocol and the dev score, and the Pareto fronts.

Every model is measured here, by the same code, on this machine: parameters in the paper's convention
(`effbert.report.measurements.size_row`: the encoder, no pooler or head), MACs of one sequence of
``report.macs_seq_len`` tokens, latency by `effbert.measure.latency.compare_latency` with every model on the same
linear kernel (`effbert.report.measurements.LINEAR_KERNEL`), side by side. Latency and size depend on the shape,
not on the weights, so each shape (the teacher, EfficientBERT's student, TinyBERT's, Theseus's, every DynaBERT
sub-network) is timed once, on the first task that has it, and stands for every task. FastBERT's latency depends on
the data (its exits), so it is timed per task on real dev rows at every threshold
(`effbert.methods.fastbert.evaluation.time_sweep`).

The functions here read model directories and evaluation records they are given; the ``compare`` stage writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert.data.tasks import get_task, selection_score
from effbert.params import METHOD_MODELS, VARIANT_MODELS, Params

log = logging.getLogger(__name__)

METHOD_LABELS = {
    "teacher": "teacher (fine-tuned)",
    "efficientbert": "EfficientBERT (ours)",
    "tinybert": "TinyBERT",
    "theseus": "BERT-of-Theseus",
    "dynabert": "DynaBERT",
    "fastbert": "FastBERT",
    "student_plus": "EfficientBERT+ (ours)",
    "student_tiny": "EfficientBERT-TINY (ours)",
    "student_plusplus": "EfficientBERT++ (ours)",
}
"""How the table and the figures name each method (and each EfficientBERT variant, by its model name)."""


@dataclass(frozen=True)
class Candidate:
    """One model of the comparison: a method's model (a DynaBERT sub-network: ``width``/``depth``) on a task."""

    method: str
    task: str
    model_dir: Path
    record: dict[str, Any]
    width: float = 1.0
    depth: float = 1.0

    @property
    def shape_key(self) -> str:
        """The key its size and latency are measured under (one per shape, shared by the tasks)."""
        return self.method if self.method != "dynabert" else f"dynabert w{self.width:g} d{self.depth:g}"


def candidates(params: Params, results: Path, eval_dir: Path, read_record: Any) -> dict[str, list[Candidate]]:
    """Per task of ``tasks``, the models of every method in ``methods`` (and the teacher) and of every EfficientBERT
    variant in ``variants`` (its ``method`` is its model name, ``student_tiny``), with their evaluation records.

    Args:
        params: the run's params (``tasks``, ``methods``).
        results: the results folder (``models/<name>/<task>``).
        eval_dir: the evaluations (``<name>/<task>/metrics.json``).
        read_record: reads a ``metrics.json`` (path, what) -> dict (errors name the file).
    """
    from effbert.params import method_tasks, variant_tasks

    found: dict[str, list[Candidate]] = {task: [] for task in params.tasks}
    methods = ["teacher", *params.methods, *(VARIANT_MODELS[v] for v in params.variants)]
    variant_of = {model: variant for variant, model in VARIANT_MODELS.items()}
    for method in methods:
        name = "teacher" if method == "teacher" else METHOD_MODELS.get(method, method)
        if method in variant_of:
            tasks = variant_tasks(variant_of[method], params.tasks)
        else:
            tasks = params.tasks if method in ("teacher", "efficientbert") else method_tasks(method, params.tasks)
        for task in tasks:
            record = read_record(eval_dir / name / task / "metrics.json", f"evaluate@{name}-{task}")
            model_dir = results / "models" / name / task
            if method == "dynabert":
                found[task] += [
                    Candidate(method, task, model_dir, point, point["width"], point["depth"])
                    for point in record["grid"]
                ]
            else:
                found[task].append(Candidate(method, task, model_dir, record))
    return found


def encoder_of_candidate(candidate: Candidate) -> Any:
    """The bare encoder of a candidate (a DynaBERT sub-network extracted as its own compact model)."""
    from effbert.models.auto import load_encoder

    if candidate.method != "dynabert":
        return load_encoder(str(candidate.model_dir))
    from effbert.methods.dynabert.evaluation import compact_subnetwork
    from effbert.models.auto import load_task_model

    model = load_task_model(str(candidate.model_dir), get_task(candidate.task))
    return compact_subnetwork(model, candidate.width, candidate.depth).base_model


def shape_text(encoder: Any) -> str:
    """``3L H264`` plus the feed-forward width of a BERT layer (``FFN 936``) or ``searched MLPs`` (EffBert)."""
    config = encoder.config
    ffn = getattr(config, "intermediate_size", None)
    if getattr(config, "model_type", "") == "effbert":
        ffn_text = "searched MLPs"
    else:
        layer = encoder.encoder.layer[0]
        ffn = layer.intermediate.dense.out_features
        heads = layer.attention.self.query.out_features // (config.hidden_size // config.num_attention_heads)
        ffn_text = f"FFN {ffn}, {heads} heads"
    return f"{config.num_hidden_layers}L H{config.hidden_size}, {ffn_text}"


def measure_shapes(params: Params, by_task: Mapping[str, Sequence[Candidate]]) -> dict[str, dict[str, Any]]:
    """Size, MACs and protocol latency of every shape (FastBERT's aside), timed side by side.

    Returns:
        shape key -> ``shape``, ``params``, ``params_without_embeddings``, ``macs``, ``latency_ms_b<B>`` for each of
        ``latency.batch_sizes``.
    """
    from effbert.methods.efficientbert.kernels import use_fused_linears
    from effbert.report.measurements import latency_rows, size_row

    encoders: dict[str, Any] = {}
    for task_candidates in by_task.values():
        for candidate in task_candidates:
            if candidate.method != "fastbert" and candidate.shape_key not in encoders:
                encoders[candidate.shape_key] = encoder_of_candidate(candidate)
    shapes = {}
    for key, encoder in encoders.items():
        row = size_row(key, encoder, params.report.macs_seq_len)
        shapes[key] = {**{k: row[k] for k in ("params", "params_without_embeddings", "macs")}}
        shapes[key]["shape"] = shape_text(encoder)
        use_fused_linears(encoder)
    rows, _ = latency_rows(
        params.model_copy(update={"report": params.report.model_copy(update={"bert_base_batch_sizes": []})}), encoders
    )
    for row in rows:
        shapes[row["model"]][f"latency_ms_b{row['batch_size']}"] = row["median_ms"]
    return shapes


def fastbert_rows(params: Params, candidate: Candidate, data_dir: Path) -> list[dict[str, Any]]:
    """FastBERT's rows on one task: per threshold of ``fastbert.speeds``, the dev score, the mean exit layer and the
    latency of real dev rows at each batch size (a batch exits when all its samples do)."""
    from effbert.data.prepared import eval_splits
    from effbert.methods.efficientbert.kernels import use_fused_linears
    from effbert.methods.fastbert.evaluation import time_sweep
    from effbert.models.auto import load_task_model
    from effbert.report.measurements import size_row

    spec = get_task(candidate.task)
    model = load_task_model(str(candidate.model_dir), spec)
    size = size_row("fastbert", model.base_model, params.report.macs_seq_len)
    use_fused_linears(model)
    dev = eval_splits(spec, data_dir)[0].features
    hp, protocol = params.fastbert, params.latency
    timings = time_sweep(
        model,
        dev,
        hp.speeds,
        protocol.batch_sizes,
        protocol.seq_len,
        runs=protocol.runs,
        warmup=protocol.warmup,
        threads=protocol.threads,
        latency_rows=hp.latency_rows,
    )
    layers = model.config.num_hidden_layers
    rows = []
    for point in candidate.record["sweep"]:
        timed = {t["batch_size"]: t for t in timings if t["speed"] == point["speed"]}
        run = point.get("mean_layers_run", layers)
        rows.append(
            {
                "method": "fastbert",
                "variant": f"speed {point['speed']:g}",
                "shape": f"{layers}L H{model.config.hidden_size}, exits after {run:.2f} layers on average",
                "params": size["params"],
                "params_without_embeddings": size["params_without_embeddings"],
                "macs": int(size["macs"] * run / layers),  # the layers run, in expectation (branches not counted)
                **{f"latency_ms_b{b}": timed[b]["median_ms"] for b in timed},
                "score": selection_score(candidate.task, point["metrics"]),
                "mean_exit_layer": point.get("mean_exit_layer"),
            }
        )
    return rows


def pareto_front(points: Iterable[tuple[float, float]]) -> list[bool]:
    """Whether each (cost, score) point is on the Pareto front: no other point costs no more and scores no less,
    with one of the two strictly better."""
    values = list(points)
    return [
        not any((c <= cost and s >= score) and (c < cost or s > score) for c, s in values) for cost, score in values
    ]


def task_table(
    params: Params, task: str, task_candidates: Sequence[Candidate], shapes: Mapping[str, Any], data_dir: Path
) -> list[dict[str, Any]]:
    """The comparison rows of one task (teacher first), with the share of the teacher's score and Pareto flags."""
    rows: list[dict[str, Any]] = []
    for candidate in task_candidates:
        if candidate.method == "fastbert":
            rows += fastbert_rows(params, candidate, data_dir)
            continue
        variant = f"width {candidate.width:g}, depth {candidate.depth:g}" if candidate.method == "dynabert" else ""
        record = candidate.record
        score = record["score"] if "score" in record else selection_score(task, record["metrics"])
        rows.append({"method": candidate.method, "variant": variant, **shapes[candidate.shape_key], "score": score})
    teacher = next((r["score"] for r in rows if r["method"] == "teacher"), None)
    first_batch = params.latency.batch_sizes[0]
    latency = [r.get(f"latency_ms_b{first_batch}", float("inf")) for r in rows]
    on_latency = pareto_front(zip(latency, (r["score"] for r in rows), strict=True))
    on_params = pareto_front(zip((r["params"] for r in rows), (r["score"] for r in rows), strict=True))
    for row, lat, par in zip(rows, on_latency, on_params, strict=True):
        row["method_label"] = METHOD_LABELS[row["method"]]
        row["vs_teacher"] = row["score"] / teacher if teacher else None
        row["pareto_latency"], row["pareto_params"] = lat, par
    return rows


def compare(params: Params, results: Path, eval_dir: Path, read_record: Any) -> dict[str, Any]:
    """The comparison of every method on every task: ``tasks`` -> rows (`task_table`), the protocol and machine.

    Args:
        params: the run's params.
        results: the results folder (``models/``, ``prepare_data/``).
        eval_dir: the evaluations (``<name>/<task>/metrics.json``).
        read_record: reads an evaluation record (path, what) -> dict.
    """
    from effbert.measure.latency import machine_description
    from effbert.report.measurements import LINEAR_KERNEL

    by_task = candidates(params, results, eval_dir, read_record)
    shapes = measure_shapes(params, by_task)
    tables = {
        task: task_table(params, task, rows, shapes, results / "prepare_data" / task) for task, rows in by_task.items()
    }
    return {
        "tasks": tables,
        "methods": list(params.methods),
        "variants": list(params.variants),
        "machine": machine_description(),
        "protocol": {**params.latency.model_dump(), "linear_kernel": LINEAR_KERNEL},
        "macs_seq_len": params.report.macs_seq_len,
    }


COLUMNS = (
    ("method", "method_label"),
    ("variant", "variant"),
    ("shape", "shape"),
    ("params (M)", "params"),
    ("params w/o emb. (M)", "params_without_embeddings"),
    ("MACs (G)", "macs"),
)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("params", "params_without_embeddings"):
        return f"{value / 1e6:.2f}"
    if key == "macs":
        return f"{value / 1e9:.3f}"
    if isinstance(value, float):
        return f"{value:.4f}" if key in ("score", "vs_teacher") else f"{value:.1f}"
    return str(value)


def comparison_markdown(comparison: Mapping[str, Any]) -> str:
    """One Markdown table per task: method, variant, shape, parameters (with and without embeddings), MACs, latency
    at each batch size, dev score, share of the teacher's; ``*`` marks the Pareto front of score against latency at
    the first batch size."""
    batches = comparison["protocol"]["batch_sizes"]
    columns = [*COLUMNS, *((f"latency b{b} (ms)", f"latency_ms_b{b}") for b in batches)]
    columns += [("dev score", "score"), ("share of teacher", "vs_teacher"), ("Pareto", "pareto_latency")]
    parts = []
    for task, rows in comparison["tasks"].items():
        parts += [f"### {task}", "", "| " + " | ".join(c for c, _ in columns) + " |", "|" + "---|" * len(columns)]
        for row in rows:
            cells = [_cell(key, row.get(key)) for _, key in columns[:-1]] + ["*" if row["pareto_latency"] else ""]
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
    machine = comparison["machine"]
    parts.append(
        f"Measured on {machine.get('cpu') or machine.get('gpu') or 'this machine'}, sequence length "
        f"{comparison['protocol']['seq_len']}, MACs at {comparison['macs_seq_len']} tokens; FastBERT's latency on "
        "real dev rows (a batch exits when all its samples do)."
    )
    return "\n".join(parts) + "\n"
