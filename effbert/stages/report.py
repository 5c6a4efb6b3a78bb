"""Stage ``report``: the run's results beside the paper's, as one self-contained HTML page and as Markdown.

Reads (see :class:`ReportPaths`) the dev metrics (``eval_summary``), the three search stages (and
``search_quality`` when it ran), the teacher and student models, the export and submission outputs when present and
the prepared data's digests; measures size and speed of the student, the teacher and a random-init BERT-base
(parameters, multiply-accumulates, latency under `effbert.bench`'s protocol); and puts the published rows of
`effbert.report.paper` next to ours, every row labelled with what it is.

Writes into ``out_dir``: ``report.html`` (figures embedded, no script, no external reference), ``report.md`` (the
same tables, figures linked), ``report.json`` (the dict both are rendered from, with the raw measurements and the
resolved params) and ``figures/*.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effbert import __version__, tracking
from effbert import params as params_mod
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.params import Params
from effbert.report import paper, render
from effbert.stages.common import is_sample_data
from effbert.stages.model_card import read_json

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

FIGURES_DIR = "figures"
"""Where the PNG figures go inside the report directory (Markdown links them relative to ``report.md``)."""

MODEL_NAMES = {"student": "student (ours)", "teacher": "teacher (ours)", "bert_base": "BERT-base (random init)"}
"""Display name of each model measured for size and speed."""


@dataclass(frozen=True)
class ReportPaths:
    """The inputs of the report stage.

    Attributes:
        eval_summary: ``results/eval_summary`` (``summary.json``).
        search_stages: ``results/search_stage1..3`` in stage order.
        teacher_models: ``results/models/teacher`` (one directory per task).
        student_models: ``results/models/student`` (one directory per task).
        student_general: ``results/models/student_general`` (``fit_dense.safetensors``).
        prepare_data: ``results/prepare_data`` (``<task>/meta.json``).
        params_file: the params file of the run (its sha256 is the params digest).
        search_quality: ``results/search_quality``; used when it exists.
        export: ``results/export`` (``<task>/onnx.json``, ``<task>/registry.json``); used when it exists.
        predict_test: ``results/predict_test`` (``manifest.json``); used when it exists.
    """

    eval_summary: Path
    search_stages: tuple[Path, ...]
    teacher_models: Path
    student_models: Path
    student_general: Path
    prepare_data: Path
    params_file: Path
    search_quality: Path | None = None
    export: Path | None = None
    predict_test: Path | None = None

    @classmethod
    def under(cls, results: Path, params_file: Path = Path("params.yaml")) -> ReportPaths:
        """The standard layout of the pipeline's outputs under ``results``."""
        return cls(
            eval_summary=results / "eval_summary",
            search_stages=tuple(results / f"search_stage{n}" for n in (1, 2, 3)),
            teacher_models=results / "models" / "teacher",
            student_models=results / "models" / "student",
            student_general=results / "models" / "student_general",
            prepare_data=results / "prepare_data",
            params_file=params_file,
            search_quality=results / "search_quality",
            export=results / "export",
            predict_test=results / "predict_test",
        )

    def inputs(self) -> dict[str, Path]:
        """Every existing input directory by a name for MLflow's dataset inputs: one per task for the per-task
        roots (``models/teacher/sst2``), the directory itself otherwise; optional inputs only when present."""
        found: dict[str, Path] = {}
        singles = [self.eval_summary, *self.search_stages, self.student_general]
        singles += [p for p in (self.search_quality, self.predict_test) if p is not None]
        for directory in singles:
            if directory.is_dir():
                found[_input_name(directory)] = directory
        for root in (self.prepare_data, self.teacher_models, self.student_models, self.export):
            if root is not None and root.is_dir():
                for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                    found[_input_name(directory)] = directory
        return found


def _input_name(directory: Path) -> str:
    """``results/models/teacher/sst2`` -> ``models/teacher/sst2``: the path below the results folder."""
    parts = directory.parts
    return "/".join(parts[parts.index("results") + 1 :]) if "results" in parts[:-1] else directory.as_posix()


# ------------------------------------------------------------------------------------------------------- inputs


def _optional_dir(path: Path | None) -> Path | None:
    return path if path is not None and path.is_dir() else None


def check_inputs(params: Params, paths: ReportPaths) -> None:
    """Fail with one line naming the first missing input the report cannot do without.

    Args:
        params: the run's params (``tasks``).
        paths: the report inputs.

    Raises:
        EffbertError: a missing ``summary.json``, search stage output, model directory or params file.
    """
    required = [
        (paths.params_file, "the params file of the run"),
        (paths.eval_summary / "summary.json", "run the eval_summary stage first"),
        *((stage / "metrics.json", "run the search stages first") for stage in paths.search_stages),
        *((stage / "architecture.json", "run the search stages first") for stage in paths.search_stages),
    ]
    for path, why in required:
        if not path.is_file():
            raise EffbertError(f"{path}: missing ({why})")
    if not any(_model_pair(paths, task) for task in params.tasks):
        raise EffbertError(
            f"{paths.student_models} / {paths.teacher_models}: no task of {params.tasks} has both a student and a "
            "teacher model directory (run final_distill and finetune_teacher first)"
        )


def _model_pair(paths: ReportPaths, task: str) -> bool:
    return all((root / task / "config.json").is_file() for root in (paths.student_models, paths.teacher_models))


def data_label(params: Params, task: str, rows: int | None) -> str:
    """What our dev numbers of a task are on: split, size and data source.

    Args:
        params: the run's params (``data``: where the files came from, the dev cap).
        task: the task id.
        rows: dev rows (SQuAD: questions) evaluated, None when unknown.

    Returns:
        e.g. ``ours, GLUE dev (872 rows), bundled demo sample (not comparable to the paper)``.
    """
    spec = get_task(task)
    if spec.is_squad:
        split = "SQuAD v1.1 dev" if task == "squad_v1" else "SQuAD v2.0 dev"
        directory, unit = params.data.squad_dir, "questions"
    else:
        split = "GLUE dev (matched + mismatched)" if len(spec.dev_splits) > 1 else "GLUE dev"
        directory, unit = params.data.glue_dir, "rows"
    if directory is None:
        source = "official data from the datasets hub"
    elif is_sample_data(directory):
        source = "bundled demo sample (not comparable to the paper)"
    else:
        source = f"files in {directory}"
    size = f"{rows} {unit}" if rows is not None else "rows unknown"
    if params.data.max_eval_examples is not None:
        size += f"; data.max_eval_examples = {params.data.max_eval_examples}"
    return f"ours, {split} ({size}), {source}"


def read_summary(eval_summary: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Read ``summary.json`` of the eval_summary stage.

    Args:
        eval_summary: the stage's output directory.

    Returns:
        model -> task -> {rows, score, vs_teacher, metric: value} (see `effbert.stages.eval_summary`).

    Raises:
        EffbertError: the file is missing or is not such an object.
    """
    data = read_json(eval_summary / "summary.json", "run the eval_summary stage first")
    if not isinstance(data, dict):
        raise EffbertError(f"{eval_summary / 'summary.json'}: expected an object model -> task -> metrics")
    return data


# --------------------------------------------------------------------------------------------- size and speed


def _fit_dense_params(student_general: Path) -> int | None:
    """Parameters of the distillation projection ``fit_dense`` saved with the general student, None without it."""
    from safetensors import safe_open

    from effbert.stages.distillation import FIT_DENSE_FILE

    path = student_general / FIT_DENSE_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118


def _params_without_embeddings(model: Any) -> int:
    """Encoder parameters minus the embedding block (no pooler, no head), in `bench.model_params`' convention."""
    from effbert.bench import model_params
    from effbert.models.modeling_effbert import EffBertPreTrainedModel
    from effbert.models.supernet import param_count

    if isinstance(model, EffBertPreTrainedModel):
        return param_count(model, include_embeddings=False)
    embeddings = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] == "embeddings")
    return model_params(model) - embeddings


def _size_row(name: str, model: Any, macs_seq_len: int) -> dict[str, Any]:
    from effbert.bench import count_macs, model_params

    config = model.config
    try:
        macs = count_macs(model, macs_seq_len)
    except ValueError as err:
        raise EffbertError(f"report.macs_seq_len={macs_seq_len}: {name}: {err}") from None
    return {
        "model": name,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "params": model_params(model),
        "params_without_embeddings": _params_without_embeddings(model),
        "macs": macs,
    }


def measure(params: Params, paths: ReportPaths, bert_base: nn.Module | None = None) -> dict[str, Any]:
    """Size and speed of the student, the teacher and a random-init BERT-base.

    The student and the teacher are the encoders (no pooler, no task head) of the first task of the profile that
    has both; every task's student shares the searched architecture and every teacher the same base model, so one
    pair stands for all. Latency follows `effbert.bench.compare_latency` at every ``latency.batch_sizes`` (BERT-base
    only at ``report.bert_base_batch_sizes``), the models measured side by side.

    Args:
        params: the run's params (``latency``, ``report``).
        paths: the report inputs.
        bert_base: the BERT-base to measure; None builds the random-init one of `effbert.bench.reference_models`.

    Returns:
        ``task``, ``sizes`` (model -> row), ``latency`` (one row per batch size and model, `LatencyResult.to_dict`
        fields plus ``model``), ``machine`` (where the latencies were measured) and ``protocol``.

    Raises:
        EffbertError: a model directory that does not load, a ``report.macs_seq_len`` or ``latency.seq_len`` beyond a
            model's position table.
    """
    from effbert.bench import compare_latency, load_encoder, machine_description, reference_models

    task = next(t for t in params.tasks if _model_pair(paths, t))
    models = {
        "student": load_encoder(str(paths.student_models / task)),
        "teacher": load_encoder(str(paths.teacher_models / task)),
        "bert_base": bert_base if bert_base is not None else reference_models()[1],
    }
    sizes = {name: _size_row(name, model, params.report.macs_seq_len) for name, model in models.items()}
    fit_dense = _fit_dense_params(paths.student_general)
    sizes["student"]["fit_dense"] = fit_dense
    sizes["student"]["params_with_fit_dense"] = sizes["student"]["params"] + fit_dense if fit_dense else None
    hp = params.latency
    latency: list[dict[str, Any]] = []
    machine: dict[str, Any] | None = None
    for batch in hp.batch_sizes:
        measured = {k: v for k, v in models.items() if k != "bert_base" or batch in params.report.bert_base_batch_sizes}
        log.info("latency: %s at batch %d, seq %d ...", ", ".join(measured), batch, hp.seq_len)
        try:
            results = compare_latency(
                measured, batch, hp.seq_len, warmup=hp.warmup, runs=hp.runs, rounds=hp.rounds, threads=hp.threads
            )
        except ValueError as err:
            raise EffbertError(f"latency (batch {batch}, seq {hp.seq_len}): {err}") from None
        for name, result in results.items():
            row = result.to_dict()
            machine = row.pop("machine", None) or machine
            latency.append({"model": name, **row})
    return {
        "task": task,
        "sizes": sizes,
        "latency": latency,
        "machine": machine or machine_description(),
        "protocol": hp.model_dump(),
    }


# ----------------------------------------------------------------------------------------------- other inputs


def collect_search(paths: ReportPaths) -> list[dict[str, Any]]:
    """Read the three search stages' outputs.

    Args:
        paths: the report inputs (``search_stages``).

    Returns:
        Per stage: ``stage`` (1-based), ``dir``, ``metrics`` (its ``metrics.json``), ``hidden_size`` and ``layers``
        of the winner (``expr``, ``units``, ``width``, ``formula``), ``figure`` (``search.png`` bytes, or None).

    Raises:
        EffbertError: a missing or invalid ``metrics.json`` / ``architecture.json``.
    """
    from effbert.models.architecture import Architecture
    from effbert.search.hall_of_fame import describe_layer

    stages = []
    for number, directory in enumerate(paths.search_stages, start=1):
        metrics = read_json(directory / "metrics.json", "run the search stages first")
        try:
            winner = Architecture.load(directory / "architecture.json")
        except (ValueError, KeyError) as err:
            raise EffbertError(f"{directory / 'architecture.json'}: {err}") from None
        figure = directory / "search.png"
        stages.append(
            {
                "stage": number,
                "dir": str(directory),
                "metrics": metrics,
                "hidden_size": winner.hidden_size,
                "layers": [
                    {
                        "expr": layer.expr,
                        "units": layer.units,
                        "width": layer.width,
                        "formula": describe_layer(layer.expr),
                    }
                    for layer in winner.layers
                ],
                "figure": figure.read_bytes() if figure.is_file() else None,
            }
        )
    return stages


def collect_exports(export_root: Path | None, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Read the export stage's records.

    Args:
        export_root: ``results/export``, or None when the export did not run.
        tasks: the profile's tasks.

    Returns:
        task -> {``onnx``: ``onnx.json``, ``registry``: ``registry.json`` or None}, for the tasks with an ``onnx.json``.
    """
    found: dict[str, dict[str, Any]] = {}
    if export_root is None:
        return found
    for task in tasks:
        onnx_file, registry_file = export_root / task / "onnx.json", export_root / task / "registry.json"
        if onnx_file.is_file():
            found[task] = {
                "onnx": read_json(onnx_file, "export stage output"),
                "registry": read_json(registry_file, "export stage output") if registry_file.is_file() else None,
            }
    return found


def collect_lineage(params: Params, paths: ReportPaths) -> dict[str, Any]:
    """Where this report comes from.

    Args:
        params: the run's params.
        paths: the report inputs.

    Returns:
        ``git_commit``, ``code_digest``, ``effbert_version``, ``params_file`` and its ``params_sha256``,
        ``experiment``, ``generated_at``, ``data`` (per task and split the source file's sha256 from
        ``meta.json``) and ``runs`` (per input directory its ``lineage.json``: stage, MLflow run id, commit, digest).
    """
    directories: list[Path] = [paths.prepare_data / task for task in params.tasks]
    directories += [paths.teacher_models / task for task in params.tasks]
    directories += [paths.student_general, *(paths.student_models / task for task in params.tasks)]
    directories += [*paths.search_stages, paths.eval_summary]
    for optional in (paths.search_quality, paths.predict_test):
        if _optional_dir(optional) is not None:
            directories.append(optional)  # type: ignore[arg-type]
    export_root = _optional_dir(paths.export)
    if export_root is not None:
        directories += [export_root / task for task in params.tasks if (export_root / task).is_dir()]
    runs = []
    for directory in directories:
        record = tracking.read_lineage(directory) or {}
        runs.append(
            {
                "output": str(directory),
                "stage": record.get("dvc_stage") or record.get("stage"),
                "run_id": record.get("run_id"),
                "git_commit": record.get("git_commit"),
                "digest": record.get("digest"),
            }
        )
    data = []
    for task in params.tasks:
        meta_file = paths.prepare_data / task / "meta.json"
        meta = read_json(meta_file, "prepare_data output") if meta_file.is_file() else {}
        for split, digest in sorted(meta.get("source_sha256", {}).items()):
            data.append({"task": task, "split": split, "sha256": digest, "tokenizer": meta.get("tokenizer")})
        if not meta.get("source_sha256"):
            data.append({"task": task, "split": None, "sha256": None, "tokenizer": meta.get("tokenizer")})
    return {
        "git_commit": tracking.git_commit(),
        "code_digest": tracking.code_digest(),
        "effbert_version": __version__,
        "params_file": str(paths.params_file),
        "params_sha256": hashlib.sha256(paths.params_file.read_bytes()).hexdigest(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "experiment": params.tracking.experiment,
        "data": data,
        "runs": runs,
    }


# ---------------------------------------------------------------------------------------------- the document


def _table(caption: str, columns: Sequence[tuple[str, str, str]], rows: list[dict[str, Any]], note: str = "") -> dict:
    block: dict[str, Any] = {
        "kind": "table",
        "caption": caption,
        "columns": [{"key": key, "label": label, "format": fmt} for key, label, fmt in columns],
        "rows": rows,
    }
    if note:
        block["note"] = note
    return block


def _text(text: str, style: str | None = None) -> dict[str, Any]:
    return {"kind": "text", "text": text, **({"style": style} if style else {})}


def _scale(task: str) -> float:
    """Factor that puts our metrics on the paper's x100 scale (SQuAD EM/F1 already are)."""
    return 1.0 if get_task(task).is_squad else 100.0


def _quality_section(
    params: Params,
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    entries: Sequence[paper.PaperEntry],
    sizes: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The quality tables (one per task) and the rows of the quality figure.

    Returns:
        The section and, per task, ``{"task", "teacher", "student"}`` selection scores (x100) for `quality_figure`.
    """
    blocks: list[dict[str, Any]] = []
    figure_rows: list[dict[str, Any]] = []
    used: list[paper.PaperEntry] = []
    teacher_source = params.finetune_teacher.model
    for task in params.tasks:
        spec, scale = get_task(task), _scale(task)
        ours = {model: summary.get(model, {}).get(task) for model in ("teacher", "student")}
        columns = [("model", "model", "text"), ("label", "what the row is", "text")]
        columns += [(m, m, "metric") for m in spec.metrics]
        columns += [("vs_teacher", "score vs teacher", "percent"), ("params", "params", "millions")]
        rows: list[dict[str, Any]] = []
        for model, record in ours.items():
            what = f"fine-tuned teacher ({teacher_source})" if model == "teacher" else "searched student (EffBert)"
            row: dict[str, Any] = {"_group": "ours", "model": what, "params": sizes[model]["params"]}
            if record is None:
                row["label"] = f"ours, {task} not evaluated"
            else:
                row["label"] = data_label(params, task, int(record["rows"]) if "rows" in record else None)
                row.update({m: record[m] * scale for m in spec.metrics if record.get(m) is not None})
                row["vs_teacher"] = record.get("vs_teacher")
            rows.append(row)
        published = paper.rows_for_task(entries, task)
        used += [e for e in published if e not in used]
        for entry in published:
            rows.append(
                {"_group": "paper", "model": entry.model, "label": entry.label, "params": entry.params}
                | dict(entry.metrics[task])
            )
        note = (
            "Paper rows are published numbers on other splits and data; compare them with each other, and ours "
            "with ours."
            if published
            else f"No published numbers for {task} in the reference notes."
        )
        blocks.append(
            _table(
                f"{task}: our teacher and searched student (dev metrics of this run) and the published rows; metrics "
                "x100; score vs teacher = the task's selection score relative to our teacher's; params: ours = "
                "encoder without pooler, head or fit_dense, paper = as published",
                columns,
                rows,
                note,
            )
        )
        if ours["teacher"] is not None or ours["student"] is not None:
            figure_rows.append(
                {
                    "task": task,
                    **{m: (r["score"] * scale if r is not None else None) for m, r in ours.items()},
                }
            )
    if figure_rows:
        blocks.append(
            {
                "kind": "image",
                "src": f"{FIGURES_DIR}/quality.png",
                "caption": "Dev selection score (x100) of our teacher and student per task; the label above each "
                "student bar is its share of the teacher's score.",
            }
        )
    if used:
        blocks.append(_text("Sources of the published rows:"))
        sources = [f"{e.model}, {e.label}: {e.source}." + (f" {e.notes}" if e.notes else "") for e in used]
        blocks.append({"kind": "list", "items": sources})
    return {"id": "quality", "title": "Quality per task", "blocks": blocks}, figure_rows


def _claim_words(name: str) -> str:
    """``smaller_than_bert_base`` -> ``smaller than BERT-base``."""
    return name.replace("_", " ").replace("bert base", "BERT-base")


def _size_speed_section(measured: Mapping[str, Any], entries: Sequence[paper.PaperEntry], params: Params) -> dict:
    """Parameters, MACs, latency and the ratios against the teacher and BERT-base; the published size/speed rows."""
    sizes, task = measured["sizes"], measured["task"]
    student_hidden, teacher_hidden = sizes["student"]["hidden_size"], sizes["teacher"]["hidden_size"]
    what = {
        "student": f"ours: searched student encoder ({task}; every task's student shares it)",
        "teacher": f"ours: fine-tuned teacher encoder ({params.finetune_teacher.model})",
        "bert_base": "random-init BERT-base from transformers' BertConfig() (no download); size/speed only",
    }
    size_rows = []
    for name, row in sizes.items():
        size_rows.append(
            {
                "_group": "ours" if name != "bert_base" else "reference",
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
        )
    convention = (
        "Parameters: the encoder (embeddings + transformer layers) without pooler or task head, the paper's "
        "convention; "
        "'without embeddings' drops the embedding block; 'with fit_dense' adds the distillation projection "
        f"(student hidden {student_hidden} -> teacher hidden {teacher_hidden}) that the paper's 15.74M counts "
        "(15.32M without it) and that is discarded after distillation. "
        f"MACs: multiply-accumulates of one sequence of {params.report.macs_seq_len} tokens, matrix products only "
        "(linear layers and attention, counted by torch's FlopCounterMode; MACs = FLOPs / 2)."
    )
    blocks: list[dict[str, Any]] = [
        _text(convention),
        _table(
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
            size_rows,
        ),
    ]
    machine, protocol = measured["machine"], measured["protocol"]
    latency_rows = []
    by_batch: dict[int, dict[str, Mapping[str, Any]]] = {}
    for row in measured["latency"]:
        by_batch.setdefault(int(row["batch_size"]), {})[row["model"]] = row
    for batch, results in sorted(by_batch.items()):
        for name, row in results.items():
            teacher, bert = results.get("teacher"), results.get("bert_base")
            latency_rows.append(
                {
                    "_group": "ours" if name != "bert_base" else "reference",
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
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    threads = ", ".join(sorted({str(row["threads"]) for row in measured["latency"]}))
    blocks += [
        _text(
            f"Measured on: {machine.get('device')}, {machine.get('cpu')} ({machine.get('usable_cores')} of "
            f"{machine.get('logical_cores')} logical cores usable){gpu}; {threads} torch threads "
            f"(latency.threads: {protocol['threads'] or 'null = torch default'}); torch {machine.get('torch')}, "
            f"transformers {machine.get('transformers')}, Python {machine.get('python')}; {machine.get('platform')}."
        ),
        _text(
            f"Latency protocol (effbert.bench): sequences of {protocol['seq_len']} tokens (seeded ids, full attention "
            f"mask), at least {protocol['runs']} timed forward passes per model after {protocol['warmup']} warm-up "
            f"passes, the models interleaved in {protocol['rounds']} rounds; median, spread = p10-p90. BERT-base is "
            f"timed at batch sizes {list(params.report.bert_base_batch_sizes)}."
        ),
        _table(
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
            latency_rows,
        ),
        {
            "kind": "image",
            "src": f"{FIGURES_DIR}/latency.png",
            "caption": f"Median latency (bars) and p10-p90 spread (whiskers) at sequence length {protocol['seq_len']}.",
        },
    ]
    published = []
    for entry in paper.size_speed_rows(entries):
        claims = ", ".join(
            f"{v} {k.replace('_', ' ').replace('bert base', 'BERT-base')}" for k, v in entry.claims.items()
        )
        caveats = [c for c in (entry.latency_caveat, entry.speedup_caveat) if c]
        if claims:
            caveats.append(f"claims: {claims}" + (f" ({entry.claims_caveat})" if entry.claims_caveat else ""))
        published.append(
            {
                "_group": "paper",
                "model": entry.model,
                "label": entry.label,
                "params": entry.params,
                "flops": entry.flops,
                "latency": entry.latency,
                "speedup": entry.speedup,
                "caveat": "; ".join(caveats) or None,
            }
        )
    blocks.append(
        _table(
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
            published,
        )
    )
    return {"id": "size-speed", "title": "Size and speed", "blocks": blocks}


def _strategy(params: Params) -> str:
    search = params.search
    if search.strategy == "lanas":
        height = search.lanas.tree_height or "the paper's rule"
        return (
            f"LaNAS (tree of LightGBM classifiers): {search.lanas.n_init} random samples first, tree refit every "
            f"{search.lanas.refit_every} evaluations, tree height {height}"
        )
    if search.strategy == "evolution":
        return (
            f"regularised evolution: population {search.evolution.population_size}, tournament "
            f"{search.evolution.tournament_size}"
        )
    return "random sampling"


def _budget(budget: Any) -> str:
    limit = f" or {budget.max_minutes:g} minutes" if budget.max_minutes else ""
    return f"{budget.candidates} candidates{limit}"


def _search_section(
    params: Params, stages: Sequence[Mapping[str, Any]], quality: Mapping[str, Any] | None, quality_png: bool
) -> dict:
    """Per-stage figures, the winners as formulas, strategy and budget, Kendall's tau when measured.

    Args:
        params: the run's params (``search``).
        stages: from `collect_search`.
        quality: ``search_quality``'s ``metrics.json``, or None when it did not run.
        quality_png: whether the search_quality figure is shown.
    """
    search = params.search
    window = stages[0]["metrics"].get("param_window")
    window_text = (
        f"{window[0] / 1e6:.2f}M-{window[1] / 1e6:.2f}M (the paper's {search.param_window[0] / 1e6:g}M-"
        f"{search.param_window[1] / 1e6:g}M scaled to this student frame)"
        if window
        else f"{search.param_window[0] / 1e6:g}M-{search.param_window[1] / 1e6:g}M"
    )
    budget = search.max_latency_ms
    blocks: list[dict[str, Any]] = [
        {
            "kind": "list",
            "items": [
                f"Strategy: {search.strategy}: {_strategy(params)}.",
                f"Fitness: held-out score on the proxy task {search.proxy_task}; candidates start from the warm-up "
                f"supernet's weights: {'yes' if search.inherit_weights else 'no (random init)'}.",
                f"Parameter window: {window_text}; latency budget: "
                + (f"{budget:g} ms per candidate." if budget else "none."),
                f"Budget: stage 1 {_budget(search.stage1)} (expressions and sizes), stage 2 {_budget(search.stage2)} "
                f"(expressions, sizes frozen), stage 3 {_budget(search.stage3)} (sizes, scored with weight sharing).",
            ],
        }
    ]
    rows = []
    for stage in stages:
        m = stage["metrics"]
        seconds = m.get("search_seconds")
        rows.append(
            {
                "stage": f"stage {stage['stage']}",
                "strategy": m.get("strategy"),
                "candidates": m.get("candidates"),
                "failed": m.get("failed"),
                "best": m.get("best_fitness"),
                "vanilla": m.get("vanilla_fitness"),
                "gain": m.get("gain_over_vanilla"),
                "params": m.get("winner_params"),
                "latency": m.get("winner_latency_ms"),
                "minutes": seconds / 60 if isinstance(seconds, int | float) else None,
                "per_minute": m.get("candidates_per_minute"),
            }
        )
    protocol = stages[-1]["metrics"].get("latency_protocol")
    note = (
        f"Winner latency: median of {protocol.get('runs')} runs at batch {protocol.get('batch_size')}, sequence "
        f"{protocol.get('seq_len')}, {protocol.get('threads')} thread(s) on {protocol.get('machine', {}).get('cpu')}."
        if isinstance(protocol, dict)
        else ""
    )
    blocks.append(
        _table(
            f"Search stages: best proxy fitness ({search.proxy_task} held-out score) against the vanilla GELU MLP "
            "candidate of the same stage, candidates evaluated, the winner's size and latency, search time",
            [
                ("stage", "stage", "text"),
                ("strategy", "strategy", "text"),
                ("candidates", "candidates", "int"),
                ("failed", "failed", "int"),
                ("best", "best fitness", "float4"),
                ("vanilla", "vanilla fitness", "float4"),
                ("gain", "gain over vanilla", "signed4"),
                ("params", "winner params", "millions"),
                ("latency", "winner latency ms", "ms"),
                ("minutes", "search minutes", "rate"),
                ("per_minute", "candidates / minute", "rate"),
            ],
            rows,
            note,
        )
    )
    depth = max(len(stage["layers"]) for stage in stages)
    layer_rows = []
    for index in range(depth):
        row: dict[str, Any] = {"layer": index + 1}
        for stage in stages:
            layers = stage["layers"]
            row[f"stage{stage['stage']}"] = layers[index]["formula"] if index < len(layers) else None
        final = stages[-1]["layers"]
        row["size"] = f"{final[index]['units']} × {final[index]['width']}" if index < len(final) else None
        layer_rows.append(row)
    hidden = sorted({stage["hidden_size"] for stage in stages})
    blocks.append(
        _table(
            "The winner of each stage, layer by layer, as formulas (s×(H/r): s stacked MLP units of width H/r, H = "
            f"{'/'.join(map(str, hidden))}); the last stage's winner is the final student",
            [
                ("layer", "layer", "int"),
                *((f"stage{stage['stage']}", f"stage {stage['stage']} winner", "text") for stage in stages),
                ("size", "final units × width", "text"),
            ],
            layer_rows,
        )
    )
    if quality is not None:
        blocks.append(
            _table(
                f"Proxy faithfulness (search_quality): Kendall's tau-b between the proxy fitness and the final "
                f"{quality.get('proxy_task')} dev score of {quality.get('candidates')} candidates of "
                f"{quality.get('search_stage')}",
                [
                    ("proxy", "proxy", "text"),
                    ("tau", "Kendall's tau", "float3"),
                    ("p", "p-value", "float3"),
                ],
                [
                    {
                        "proxy": "with weight inheritance (warm-up supernet slices)",
                        "tau": quality.get("kendall_tau_inherit"),
                        "p": quality.get("kendall_p_inherit"),
                    },
                    {
                        "proxy": "without (random init)",
                        "tau": quality.get("kendall_tau_scratch"),
                        "p": quality.get("kendall_p_scratch"),
                    },
                ],
            )
        )
    else:
        blocks.append(
            _text(
                "Kendall's tau of the proxy: not measured (the optional stage search_quality did not run; "
                "effbert run --target search_quality)."
            )
        )
    for stage in stages:
        if stage["figure"] is not None:
            blocks.append(
                {
                    "kind": "image",
                    "src": f"{FIGURES_DIR}/search_stage{stage['stage']}.png",
                    "caption": f"Search stage {stage['stage']}: fitness against parameters and latency with the "
                    "Pareto front, best fitness so far, operators of the best candidates.",
                }
            )
    if quality_png:
        blocks.append(
            {
                "kind": "image",
                "src": f"{FIGURES_DIR}/search_quality.png",
                "caption": "Proxy fitness against the final dev score (search_quality).",
            }
        )
    return {"id": "search", "title": "Search", "blocks": blocks}


def _pick(record: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """``record``'s values of ``keys`` (None where missing)."""
    return {key: record.get(key) for key in keys}


def _export_section(exports: Mapping[str, Mapping[str, Any]], manifest: Mapping[str, Any] | None) -> dict:
    """ONNX parity and latency, the registry entries, the submission files."""
    blocks: list[dict[str, Any]] = []
    if exports:
        parity_rows, latency_rows = [], []
        for task, found in exports.items():
            onnx, registry = found["onnx"], found.get("registry") or {}
            parity_info = onnx.get("parity", {})
            parity_rows.append(
                {
                    "task": task,
                    "opset": onnx.get("opset"),
                    "diff": parity_info.get("max_abs_diff"),
                    "tolerance": parity_info.get("tolerance"),
                    "rows": parity_info.get("rows"),
                    "passed": parity_info.get("passed"),
                    "registry": f"{registry['name']}@{registry['alias']} (version {registry.get('version')})"
                    if registry.get("name")
                    else None,
                }
            )
            for row in onnx.get("latency", {}).get("by_batch", []):
                latency_rows.append(
                    {
                        "task": task,
                        "batch": row.get("batch_size"),
                        "seq": row.get("seq_len"),
                        "pytorch": row.get("pytorch", {}).get("median_ms"),
                        "ort": row.get("onnxruntime", {}).get("median_ms"),
                        "ratio": row.get("pytorch_over_onnxruntime"),
                    }
                )
        blocks.append(
            _table(
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
        )
        if latency_rows:
            blocks.append(
                _table(
                    "ONNX Runtime vs PyTorch latency of the student (CPU, same threads, effbert.bench protocol)",
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
    else:
        blocks.append(_text("ONNX export and registry: not run (no results/export)."))
    if manifest is None:
        blocks.append(_text("Submission files: not run (no results/predict_test/manifest.json)."))
        return {"id": "export", "title": "Export and submission", "blocks": blocks}
    files = manifest.get("files", {})
    if files:
        blocks.append(
            _table(
                "Submission files (predict_test): GLUE server files and SQuAD predictions of the final students",
                [
                    ("file", "file", "text"),
                    ("task", "task", "text"),
                    ("split", "split", "text"),
                    ("rows", "rows", "int"),
                    ("server_rows", "server expects", "int"),
                ],
                [
                    {"file": name, **_pick(record, "task", "split", "rows", "server_rows")}
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
    blocks.append({"kind": "list", "items": items})
    return {"id": "export", "title": "Export and submission", "blocks": blocks}


def _lineage_section(lineage: Mapping[str, Any]) -> dict:
    """Commit, digests, MLflow runs and how to reproduce."""
    commit = str(lineage["git_commit"])
    clean = commit.removesuffix("-dirty")
    facts = [
        {"item": "git commit", "value": commit},
        {"item": "code digest (effbert sources)", "value": lineage["code_digest"]},
        {"item": "effbert version", "value": lineage["effbert_version"]},
        {"item": f"params file ({lineage['params_file']}) sha256", "value": lineage["params_sha256"]},
        {"item": "MLflow experiment", "value": lineage["experiment"]},
        {"item": "generated at (UTC)", "value": lineage["generated_at"]},
    ]
    blocks: list[dict[str, Any]] = [
        _table("Code and params of this report", [("item", "item", "text"), ("value", "value", "text")], facts),
        _table(
            "Data: sha256 of the source files each task was prepared from (prepare_data meta.json)",
            [
                ("task", "task", "text"),
                ("split", "split", "text"),
                ("sha256", "sha256", "text"),
                ("tokenizer", "tokenizer", "text"),
            ],
            list(lineage["data"]),
        ),
        _table(
            "MLflow runs behind each input of this report (lineage.json of each output directory)",
            [
                ("output", "output", "text"),
                ("stage", "stage", "text"),
                ("run_id", "MLflow run id", "text"),
                ("git_commit", "git commit", "text"),
                ("digest", "output digest", "text"),
            ],
            [dict(r, digest=r["digest"][:16] if r.get("digest") else None) for r in lineage["runs"]],
        ),
    ]
    dirty = (
        f"# the report was made from uncommitted changes (-dirty); their code digest is {lineage['code_digest']}\n"
        if commit.endswith("-dirty")
        else ""
    )
    blocks.append(_text("How to reproduce this report:"))
    blocks.append(
        {
            "kind": "code",
            "text": f"git checkout {clean}\n{dirty}make venv\n"
            f"# params: the file with sha256 {lineage['params_sha256'][:16]}..., also in report.json (params_yaml)\n"
            ".venv/bin/effbert run --params params.yaml       # the demo profile: make demo\n"
            ".venv/bin/effbert lineage results/report/report.json   # the runs behind every number\n",
        }
    )
    return {"id": "lineage", "title": "Lineage and reproduction", "blocks": blocks}


def _intro_blocks(params: Params) -> list[dict[str, Any]]:
    """What the report is and how to read its row labels."""
    sample = any(is_sample_data(d) for d in (params.data.glue_dir, params.data.squad_dir))
    blocks = [
        _text(
            f"Tasks {', '.join(params.tasks)}; teacher {params.finetune_teacher.model}; student frame "
            f"{params.student.num_layers} layers, hidden {params.student.hidden_size}, "
            f"{params.student.num_attention_heads} heads, embedding {params.student.embedding_size}; search "
            f"strategy {params.search.strategy} on {params.search.proxy_task}."
        ),
        {
            "kind": "list",
            "items": [
                "ours, <split>, <data>: measured by this pipeline on the data named (our dev sets).",
                "paper, <split> (<source>): published numbers, copied with their source from the reference notes; "
                "other data, other splits (GLUE test server, SQuAD dev), other teachers and budgets.",
                "random init: a model built from its configuration only, used for size and speed, never for quality.",
            ],
        },
    ]
    if sample:
        blocks.append(
            _text(
                "This run used the bundled demo sample (data/sample): its numbers show that the pipeline works; they "
                "are not comparable to the paper's (see data/sample/README.md, 'Not comparable to the paper').",
                style="warning",
            )
        )
    return blocks


def _json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples as lists and paths as strings (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's key numbers, flat, for the stage's MLflow run: parameters and MACs per model, median latency and
    speed-ups per batch size, the student's score relative to the teacher per task.

    Args:
        report: a dict returned by `run` (or read from ``report.json``).

    Returns:
        Metric name -> finite value.
    """
    data = report["data"]
    metrics: dict[str, Any] = {}
    for name, row in data["size_speed"]["sizes"].items():
        metrics[f"params/{name}"] = row["params"]
        metrics[f"params_without_embeddings/{name}"] = row["params_without_embeddings"]
        metrics[f"macs/{name}"] = row["macs"]
    by_batch: dict[int, dict[str, float]] = {}
    for row in data["size_speed"]["latency"]:
        by_batch.setdefault(int(row["batch_size"]), {})[row["model"]] = row["median_ms"]
        metrics[f"latency_ms/{row['model']}/b{row['batch_size']}"] = row["median_ms"]
    for batch, medians in by_batch.items():
        student = medians.get("student")
        for other in ("teacher", "bert_base"):
            if student and other in medians:
                metrics[f"speedup_vs_{other}/b{batch}"] = medians[other] / student
    for task, record in data["summary"].get("student", {}).items():
        metrics[f"student_vs_teacher/{task}"] = record.get("vs_teacher")
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is built from, collected by `collect` (tests build it directly).

    Attributes:
        summary: ``summary.json`` of eval_summary (model -> task -> metrics).
        measured: from `measure`.
        stages: from `collect_search`.
        lineage: from `collect_lineage`.
        quality: ``search_quality``'s ``metrics.json``, or None.
        quality_png: ``search_quality``'s figure, or None.
        exports: from `collect_exports`.
        manifest: ``predict_test``'s ``manifest.json``, or None.
    """

    summary: Mapping[str, Any]
    measured: Mapping[str, Any]
    stages: Sequence[Mapping[str, Any]]
    lineage: Mapping[str, Any]
    quality: Mapping[str, Any] | None = None
    quality_png: bytes | None = None
    exports: Mapping[str, Any] = field(default_factory=dict)
    manifest: Mapping[str, Any] | None = None


def collect(params: Params, paths: ReportPaths, bert_base: nn.Module | None = None) -> ReportInputs:
    """Read every input and measure size and speed.

    Args:
        params: the run's params.
        paths: the report inputs.
        bert_base: see `measure`.

    Returns:
        The collected inputs.

    Raises:
        EffbertError: a missing or malformed input (the message names the file).
    """
    check_inputs(params, paths)
    quality_dir = _optional_dir(paths.search_quality)
    quality, quality_png = None, None
    if quality_dir is not None and (quality_dir / "metrics.json").is_file():
        quality = read_json(quality_dir / "metrics.json", "search_quality output")
        if (quality_dir / "quality.png").is_file():
            quality_png = (quality_dir / "quality.png").read_bytes()
    predict_dir = _optional_dir(paths.predict_test)
    manifest = (
        read_json(predict_dir / "manifest.json", "predict_test output")
        if predict_dir is not None and (predict_dir / "manifest.json").is_file()
        else None
    )
    return ReportInputs(
        summary=read_summary(paths.eval_summary),
        measured=measure(params, paths, bert_base),
        stages=collect_search(paths),
        lineage=collect_lineage(params, paths),
        quality=quality,
        quality_png=quality_png,
        exports=collect_exports(_optional_dir(paths.export), params.tasks),
        manifest=manifest,
    )


def build_report(
    params: Params, inputs: ReportInputs, entries: Sequence[paper.PaperEntry]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The report dict (JSON-ready: the document both renderings come from, plus the raw data and the params) and
    its figures.

    Args:
        params: the run's params.
        inputs: from `collect`.
        entries: the published numbers (`effbert.report.paper.load_paper_results`).

    Returns:
        The report and the PNG bytes of every figure, keyed by the path the report links (``figures/<name>.png``).
    """
    measured = inputs.measured
    quality_part, figure_rows = _quality_section(params, inputs.summary, entries, measured["sizes"])
    images: dict[str, bytes] = {
        f"{FIGURES_DIR}/latency.png": render.latency_figure(
            [dict(r, model=MODEL_NAMES[r["model"]]) for r in measured["latency"]], params.latency.seq_len
        )
    }
    if figure_rows:
        images[f"{FIGURES_DIR}/quality.png"] = render.quality_figure(figure_rows)
    for stage in inputs.stages:
        if stage["figure"] is not None:
            images[f"{FIGURES_DIR}/search_stage{stage['stage']}.png"] = stage["figure"]
    if inputs.quality is not None and inputs.quality_png is not None:
        images[f"{FIGURES_DIR}/search_quality.png"] = inputs.quality_png
    report: dict[str, Any] = {
        "title": "effbert report: the searched student, its teacher and the paper",
        "generated_at": inputs.lineage["generated_at"],
        "intro": _intro_blocks(params),
        "sections": [
            quality_part,
            _size_speed_section(measured, entries, params),
            _search_section(params, inputs.stages, inputs.quality, f"{FIGURES_DIR}/search_quality.png" in images),
            _export_section(inputs.exports, inputs.manifest),
            _lineage_section(inputs.lineage),
        ],
        "data": {
            "summary": inputs.summary,
            "size_speed": measured,
            "search": [{k: v for k, v in s.items() if k != "figure"} for s in inputs.stages],
            "search_quality": inputs.quality,
            "export": inputs.exports,
            "predict_test": inputs.manifest,
            "lineage": inputs.lineage,
            "paper_entries": [e.id for e in entries],
        },
        "params_yaml": params_mod.dump(params),
    }
    return _json_ready(report), images


def write_report(report: Mapping[str, Any], images: Mapping[str, bytes], out_dir: Path) -> None:
    """Render both pages (before writing anything) and write them, ``report.json`` and the figures.

    Args:
        report: from `build_report`.
        images: the figures, keyed by their path relative to ``out_dir``.
        out_dir: the report directory.
    """
    markdown, page = render.render_markdown(report), render.render_html(report, images)
    for name, data in images.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_bytes(data)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    (out_dir / "report.html").write_text(page, encoding="utf-8")


def run(params: Params, paths: ReportPaths, out_dir: Path, *, bert_base: nn.Module | None = None) -> dict[str, Any]:
    """Collect, build, render and write the report.

    Args:
        params: the run's params.
        paths: where the pipeline's outputs are.
        out_dir: the directory to write into (``report.html``, ``report.md``, ``report.json``, ``figures/``).
        bert_base: the BERT-base measured for size and speed; None builds the random-init one (tests pass a small
            stand-in).

    Returns:
        The report dict (also written to ``report.json``).

    Raises:
        EffbertError: a missing or malformed input (the message names the file).
    """
    report, images = build_report(params, collect(params, paths, bert_base), paper.load_paper_results())
    write_report(report, images, out_dir)
    log.info("report: %d tables, %d figures in %s", len(render.table_summaries(report)), len(images), out_dir)
    return report
