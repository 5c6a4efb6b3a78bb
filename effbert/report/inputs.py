"""The report's inputs: where the pipeline's outputs are (`ReportPaths`), reading them and measuring the models
(`collect`, into `ReportInputs`).

Reads the dev metrics (``eval_summary``), the three search stages (and ``search_quality`` when it ran), the teacher
and student models (measured by `effbert.report.measurements`), the export and submission outputs when present, the
prepared data's digests and the ``lineage.json`` of every input. Errors name the missing or malformed file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effbert import __version__, tracking
from effbert.errors import EffbertError
from effbert.params import Params
from effbert.report.measurements import measure
from effbert.runtime import read_json

if TYPE_CHECKING:
    from torch import nn


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
        prepare_corpus: ``results/prepare_corpus`` (``meta.json``); used when it exists.
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
    prepare_corpus: Path | None = None

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
            prepare_corpus=results / "prepare_corpus",
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

    def has_models(self, task: str) -> bool:
        """Whether ``task`` has both a student and a teacher model directory."""
        return all((root / task / "config.json").is_file() for root in (self.student_models, self.teacher_models))


def _input_name(directory: Path) -> str:
    """``results/models/teacher/sst2`` -> ``models/teacher/sst2``: the path below the results folder."""
    parts = directory.parts
    return "/".join(parts[parts.index("results") + 1 :]) if "results" in parts[:-1] else directory.as_posix()


def _optional_dir(path: Path | None) -> Path | None:
    return path if path is not None and path.is_dir() else None


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is built from, collected by `collect` (tests build it directly).

    Attributes:
        summary: ``summary.json`` of eval_summary (model -> task -> metrics).
        measured: from `effbert.report.measurements.measure`.
        stages: from `collect_search`.
        lineage: from `collect_lineage`.
        quality: ``search_quality``'s ``metrics.json``, or None.
        quality_png: ``search_quality``'s figure, or None.
        exports: from `collect_exports`.
        manifest: ``predict_test``'s ``manifest.json``, or None.
        comparison: eval_summary's ``comparison.json`` (the methods compared), or None.
        cost: the run's training cost (`collect_cost`), or None.
    """

    summary: Mapping[str, Any]
    measured: Mapping[str, Any]
    stages: Sequence[Mapping[str, Any]]
    lineage: Mapping[str, Any]
    quality: Mapping[str, Any] | None = None
    quality_png: bytes | None = None
    exports: Mapping[str, Any] = field(default_factory=dict)
    manifest: Mapping[str, Any] | None = None
    comparison: Mapping[str, Any] | None = None
    cost: Mapping[str, Any] | None = None


def collect_cost(params: Params, paths: ReportPaths) -> dict[str, Any]:
    """What the run's training stages cost in steps and sequences (`effbert.measure.cost.plan`) on its prepared
    data's sizes, and the size of that data."""
    from effbert.data.prepared import corpus_meta, prepared_train_rows
    from effbert.measure import cost

    prepared = prepared_train_rows(paths.prepare_data, list(params.tasks))
    corpus = corpus_meta(paths.prepare_corpus) if paths.prepare_corpus is not None else {}
    return cost_record(params, cost.data_sizes(params, prepared, corpus.get("sequences")))


def cost_record(params: Params, sizes: Any) -> dict[str, Any]:
    """The report's cost record of ``params`` on data of ``sizes`` (a `effbert.measure.cost.DataSizes`)."""
    from effbert.measure import cost

    stages = [
        {"stage": c.stage, "steps": c.steps, "sequences": c.sequences, "processes": c.processes, "batch": c.batch}
        for c in cost.plan(params, sizes)
    ]
    return {"stages": stages, "train_rows": sizes.train_rows, "corpus_sequences": sizes.corpus_sequences}


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
    if not any(paths.has_models(task) for task in params.tasks):
        raise EffbertError(
            f"{paths.student_models} / {paths.teacher_models}: no task of {params.tasks} has both a student and a "
            "teacher model directory (run final_distill and finetune_teacher first)"
        )


def read_summary(eval_summary: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Read ``summary.json`` of the eval_summary stage.

    Args:
        eval_summary: the stage's output directory.

    Returns:
        model -> task -> {rows, score, vs_teacher, metric: value} (see `effbert.eval.summary`).

    Raises:
        EffbertError: the file is missing or is not such an object.
    """
    data = read_json(eval_summary / "summary.json", "run the eval_summary stage first")
    if not isinstance(data, dict):
        raise EffbertError(f"{eval_summary / 'summary.json'}: expected an object model -> task -> metrics")
    return data


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
    from effbert.methods.efficientbert.architecture import Architecture
    from effbert.methods.efficientbert.search.hall_of_fame import describe_layer

    stages = []
    for number, directory in enumerate(paths.search_stages, start=1):
        metrics = read_json(directory / "metrics.json", "run the search stages first")
        try:
            winner = Architecture.load(directory / "architecture.json")
        except (ValueError, KeyError) as err:
            raise EffbertError(f"{directory / 'architecture.json'}: {err}") from None
        figure = directory / "search.png"
        layers = [
            {"expr": layer.expr, "units": layer.units, "width": layer.width, "formula": describe_layer(layer.expr)}
            for layer in winner.layers
        ]
        stages.append(
            {
                "stage": number,
                "dir": str(directory),
                "metrics": metrics,
                "hidden_size": winner.hidden_size,
                "layers": layers,
                "figure": figure.read_bytes() if figure.is_file() else None,
            }
        )
    return stages


def collect_exports(
    export_root: Path | None, tasks: Sequence[str], variant_students: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, dict[str, Any]]:
    """Read the export stages' records (the main students', then the variants').

    Args:
        export_root: ``results/export``, or None when the export did not run.
        tasks: the profile's tasks.
        variant_students: ``dag.variant_students`` (``<model>-<task>`` -> variant, model, task).

    Returns:
        task (a variant's: ``<task> (<variant label>)``) -> {``onnx``: ``onnx.json``, ``registry``: ``registry.json``
        or None}, for the exports with an ``onnx.json``.
    """
    from effbert.methods.efficientbert.variants import VARIANT_LABELS

    found: dict[str, dict[str, Any]] = {}
    if export_root is None:
        return found
    places = [(task, export_root / task) for task in tasks]
    places += [
        (f"{s['task']} ({VARIANT_LABELS[s['variant']]})", export_root / s["model"] / s["task"])
        for s in (variant_students or {}).values()
    ]
    for key, folder in places:
        onnx_file, registry_file = folder / "onnx.json", folder / "registry.json"
        if onnx_file.is_file():
            found[key] = {
                "onnx": read_json(onnx_file, "export stage output"),
                "registry": read_json(registry_file, "export stage output") if registry_file.is_file() else None,
            }
    return found


def _lineage_dirs(params: Params, paths: ReportPaths) -> list[Path]:
    """Every input directory whose ``lineage.json`` the report lists, in pipeline order."""
    directories: list[Path] = [paths.prepare_data / task for task in params.tasks]
    directories += [paths.teacher_models / task for task in params.tasks]
    directories += [paths.student_general, *(paths.student_models / task for task in params.tasks)]
    models = paths.student_models.parent
    directories += [models / f"student_general_{variant}" for variant in params.variants]
    directories += [models / s["model"] / s["task"] for s in params.dag["variant_students"].values()]
    directories += [*paths.search_stages, paths.eval_summary]
    directories += [d for d in map(_optional_dir, (paths.search_quality, paths.predict_test)) if d is not None]
    export_root = _optional_dir(paths.export)
    if export_root is not None:
        directories += [export_root / task for task in params.tasks if (export_root / task).is_dir()]
        variants = [export_root / s["model"] / s["task"] for s in params.dag["variant_students"].values()]
        directories += [folder for folder in variants if folder.is_dir()]
    return directories


def _lineage_run(directory: Path) -> dict[str, Any]:
    """Stage, MLflow run id, commit, digest and bf16 autocast (on/off; None for a stage that neither trains nor
    predicts) from a directory's ``lineage.json`` (None each when it has none)."""
    record = tracking.read_lineage(directory) or {}
    bf16 = record.get("compute", {}).get("bf16")
    return {
        "output": str(directory),
        "stage": record.get("dvc_stage") or record.get("stage"),
        "run_id": record.get("run_id"),
        "git_commit": record.get("git_commit"),
        "digest": record.get("digest"),
        "bf16": None if bf16 is None else ("on" if bf16 else "off"),
    }


def _data_digests(params: Params, prepare_data: Path) -> list[dict[str, Any]]:
    """Per task and split the sha256 of the source file it was prepared from (``meta.json``), one empty row per
    task without any."""
    data = []
    for task in params.tasks:
        meta_file = prepare_data / task / "meta.json"
        meta = read_json(meta_file, "prepare_data output") if meta_file.is_file() else {}
        for split, digest in sorted(meta.get("source_sha256", {}).items()):
            data.append({"task": task, "split": split, "sha256": digest, "tokenizer": meta.get("tokenizer")})
        if not meta.get("source_sha256"):
            data.append({"task": task, "split": None, "sha256": None, "tokenizer": meta.get("tokenizer")})
    return data


def collect_lineage(params: Params, paths: ReportPaths) -> dict[str, Any]:
    """Where this report comes from.

    Args:
        params: the run's params.
        paths: the report inputs.

    Returns:
        ``git_commit``, ``code_digest``, ``effbert_version``, ``params_file`` and its ``params_sha256``,
        ``generated_at``, ``experiment``, ``data`` (per task and split the source file's sha256 from
        ``meta.json``), ``runs`` (per input directory its ``lineage.json``: stage, MLflow run id, commit, digest,
        bf16) and ``bf16`` (the params setting and this machine's native-bf16 CPU flags).
    """
    from effbert.compute import cpu_bf16_flags

    return {
        "git_commit": tracking.git_commit(),
        "code_digest": tracking.code_digest(),
        "effbert_version": __version__,
        "params_file": str(paths.params_file),
        "params_sha256": hashlib.sha256(paths.params_file.read_bytes()).hexdigest(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "experiment": params.tracking.experiment,
        "data": _data_digests(params, paths.prepare_data),
        "runs": [_lineage_run(directory) for directory in _lineage_dirs(params, paths)],
        "bf16": {"setting": params.bf16, "cpu_bf16_flags": list(cpu_bf16_flags())},
    }


def _optional_json(directory: Path | None, name: str, what: str) -> dict[str, Any] | None:
    """``directory / name`` read as JSON when both exist, else None."""
    if directory is None or not (directory / name).is_file():
        return None
    return read_json(directory / name, what)


def collect(params: Params, paths: ReportPaths, bert_base: nn.Module | None = None) -> ReportInputs:
    """Read every input and measure size and speed.

    Size and speed are measured on the models of the first task of the profile that has both a student and a
    teacher (`effbert.report.measurements.measure`).

    Args:
        params: the run's params.
        paths: the report inputs.
        bert_base: the BERT-base measured for size and speed; None builds the random-init one (tests pass a small
            stand-in).

    Returns:
        The collected inputs.

    Raises:
        EffbertError: a missing or malformed input (the message names the file).
    """
    check_inputs(params, paths)
    quality_dir = _optional_dir(paths.search_quality)
    quality = _optional_json(quality_dir, "metrics.json", "search_quality output")
    quality_png = None
    if quality is not None and quality_dir is not None and (quality_dir / "quality.png").is_file():
        quality_png = (quality_dir / "quality.png").read_bytes()
    manifest = _optional_json(_optional_dir(paths.predict_test), "manifest.json", "predict_test output")
    task = next(t for t in params.tasks if paths.has_models(t))
    return ReportInputs(
        summary=read_summary(paths.eval_summary),
        measured=measure(
            params, task, paths.student_models / task, paths.teacher_models / task, paths.student_general, bert_base
        ),
        stages=collect_search(paths),
        lineage=collect_lineage(params, paths),
        quality=quality,
        quality_png=quality_png,
        exports=collect_exports(_optional_dir(paths.export), params.tasks, params.dag["variant_students"]),
        manifest=manifest,
        comparison=_optional_json(paths.eval_summary, "comparison.json", "eval_summary output"),
        cost=collect_cost(params, paths),
    )
