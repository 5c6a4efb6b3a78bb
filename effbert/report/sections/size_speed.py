"""Section "Size and speed": parameters and MACs of our student and teacher and a random-init BERT-base, their
latency under the protocol of `effbert.measure.latency` with the machine it ran on, and the published size and speed
rows (as printed, not comparable with ours)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from effbert.params import Params
from effbert.report import paper
from effbert.report.sections.blocks import MODEL_NAMES, figure_src, image, section, table, text


def _group(name: str) -> str:
    return "ours" if name != "bert_base" else "reference"


def _size_table(measured: Mapping[str, Any], params: Params) -> dict[str, Any]:
    """Parameters (with and without embeddings, with fit_dense), MACs and the ratios against teacher and BERT-base."""
    sizes, task = measured["sizes"], measured["task"]
    what = {
        "student": f"ours: searched student encoder ({task}; every task's student shares it)",
        "teacher": f"ours: fine-tuned teacher encoder ({params.finetune_teacher.model})",
        "bert_base": "random-init BERT-base from transformers' BertConfig() (no download); size/speed only",
    }
    rows = [
        {
            "_group": _group(name),
            "model": MODEL_NAMES[name],
            "what": what[name],
            "layers": row["layers"],
            "hidden": row["hidden_size"],
            "params": row["params"],
            "without_embeddings": row["params_without_embeddings"],
            "with_fit_dense": row.get("params_with_fit_dense"),
            "macs": row["macs"],
            "vs_teacher": sizes["teacher"]["params"] / row["params"],
            "vs_bert_base": sizes["bert_base"]["params"] / row["params"],
        }
        for name, row in sizes.items()
    ]
    return table(
        "Size: our student and teacher encoders and a random-init BERT-base; ratios = that model's parameters / "
        "this one's (how many times smaller)",
        [
            ("model", "model", "text"),
            ("what", "what the row is", "text"),
            ("layers", "layers", "int"),
            ("hidden", "hidden", "int"),
            ("params", "params", "millions"),
            ("without_embeddings", "without embeddings", "millions"),
            ("with_fit_dense", "with fit_dense", "millions"),
            ("macs", f"MACs / sequence @{params.report.macs_seq_len}", "giga"),
            ("vs_teacher", "teacher / this", "ratio"),
            ("vs_bert_base", "BERT-base / this", "ratio"),
        ],
        rows,
    )


def _size_convention(sizes: Mapping[str, Mapping[str, Any]], macs_seq_len: int) -> dict[str, Any]:
    """How parameters and MACs are counted."""
    student_hidden, teacher_hidden = sizes["student"]["hidden_size"], sizes["teacher"]["hidden_size"]
    return text(
        "Parameters: the encoder (embeddings + transformer layers) without pooler or task head, the paper's "
        "convention; "
        "'without embeddings' drops the embedding block; 'with fit_dense' adds the distillation projection "
        f"(student hidden {student_hidden} -> teacher hidden {teacher_hidden}) that the paper's 15.74M counts "
        "(15.32M without it) and that is discarded after distillation. "
        f"MACs: multiply-accumulates of one sequence of {macs_seq_len} tokens, matrix products only "
        "(linear layers and attention, counted by torch's FlopCounterMode; MACs = FLOPs / 2)."
    )


def _latency_rows(latency: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per batch size and model, with the speed-ups against the teacher and BERT-base at that batch size."""
    by_batch: dict[int, dict[str, Mapping[str, Any]]] = {}
    for row in latency:
        by_batch.setdefault(int(row["batch_size"]), {})[row["model"]] = row
    rows = []
    for batch, results in sorted(by_batch.items()):
        teacher, bert = results.get("teacher"), results.get("bert_base")
        for name, row in results.items():
            rows.append(
                {
                    "_group": _group(name),
                    "batch": batch,
                    "model": MODEL_NAMES[name],
                    "median": row["median_ms"],
                    "spread": [row["p10_ms"], row["p90_ms"]],
                    "throughput": row["sequences_per_s"],
                    "runs": row["runs"],
                    "vs_teacher": teacher["median_ms"] / row["median_ms"] if teacher else None,
                    "vs_bert_base": bert["median_ms"] / row["median_ms"] if bert else None,
                }
            )
    return rows


def _latency_setup(measured: Mapping[str, Any], params: Params) -> list[dict[str, Any]]:
    """Where the latencies were measured and under which protocol."""
    machine, protocol = measured["machine"], measured["protocol"]
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    threads = ", ".join(sorted({str(row["threads"]) for row in measured["latency"]}))
    return [
        text(
            f"Measured on: {machine.get('device')}, {machine.get('cpu')} ({machine.get('usable_cores')} of "
            f"{machine.get('logical_cores')} logical cores usable){gpu}; {threads} torch threads "
            f"(latency.threads: {protocol['threads'] or 'null = torch default'}); torch {machine.get('torch')}, "
            f"transformers {machine.get('transformers')}, Python {machine.get('python')}; {machine.get('platform')}."
        ),
        text(
            f"Latency protocol (effbert.measure.latency): sequences of {protocol['seq_len']} tokens (seeded ids, full "
            f"attention mask), at least {protocol['runs']} timed forward passes per model after {protocol['warmup']} "
            f"warm-up passes, the models interleaved in {protocol['rounds']} rounds; median, spread = p10-p90. "
            f"BERT-base is timed at batch sizes {list(params.report.bert_base_batch_sizes)}. "
            f"Linear layers: {protocol.get('linear_kernel', 'torch defaults')}."
        ),
    ]


def _latency_table(latency: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return table(
        "Latency: median and p10-p90 spread per batch size; speed-up = that model's median / this one's",
        [
            ("batch", "batch", "int"),
            ("model", "model", "text"),
            ("median", "median ms", "ms"),
            ("spread", "p10-p90 ms", "ms_range"),
            ("throughput", "sequences / s", "rate"),
            ("runs", "timed runs", "int"),
            ("vs_teacher", "speed-up vs teacher", "ratio"),
            ("vs_bert_base", "speed-up vs BERT-base", "ratio"),
        ],
        _latency_rows(latency),
    )


def _published_row(entry: paper.PaperEntry) -> dict[str, Any]:
    """A published size/speed row with its caveats and headline claims."""
    claims = ", ".join(f"{v} {k.replace('_', ' ').replace('bert base', 'BERT-base')}" for k, v in entry.claims.items())
    caveats = [c for c in (entry.latency_caveat, entry.speedup_caveat) if c]
    if claims:
        caveats.append(f"claims: {claims}" + (f" ({entry.claims_caveat})" if entry.claims_caveat else ""))
    return {
        "_group": "paper",
        "model": entry.model,
        "label": entry.label,
        "params": entry.params,
        "flops": entry.flops,
        "latency": entry.latency,
        "speedup": entry.speedup,
        "caveat": "; ".join(caveats) or None,
    }


def _published_table(entries: Sequence[paper.PaperEntry]) -> dict[str, Any]:
    return table(
        "Published size and speed (as printed; FLOPs as the papers count them); not measured here, not comparable "
        "with the latencies above",
        [
            ("model", "model", "text"),
            ("label", "what the row is", "text"),
            ("params", "params", "text"),
            ("flops", "FLOPs", "text"),
            ("latency", "latency", "text"),
            ("speedup", "speed-up", "text"),
            ("caveat", "measured how / caveat", "text"),
        ],
        [_published_row(entry) for entry in paper.size_speed_rows(entries)],
    )


def size_speed_section(
    measured: Mapping[str, Any], entries: Sequence[paper.PaperEntry], params: Params
) -> dict[str, Any]:
    """Parameters, MACs, latency and the ratios against the teacher and BERT-base; the published size/speed rows.

    Args:
        measured: from `effbert.report.measurements.measure`.
        entries: the published numbers.
        params: the run's params (``report``, ``finetune_teacher.model``).
    """
    seq_len = measured["protocol"]["seq_len"]
    blocks = [
        _size_convention(measured["sizes"], params.report.macs_seq_len),
        _size_table(measured, params),
        *_latency_setup(measured, params),
        _latency_table(measured["latency"]),
        image(
            figure_src("latency"),
            f"Median latency (bars) and p10-p90 spread (whiskers) at sequence length {seq_len}.",
        ),
        _published_table(entries),
    ]
    return section("size-speed", "Size and speed", blocks)
