"""The facts of a task student's model card (``README.md`` in its Hugging Face directory), gathered from files.

``final_distill@<task>`` writes a first card (held-out selection metrics, :func:`write_initial_card`);
``export@<task>`` writes the full one (dev metrics, ONNX parity and latency, registry entry) with :func:`card_facts`
and :func:`export_lineage`. The Markdown itself comes from :func:`effbert.export.model_card.render_model_card`
(pure). Kept apart from the ONNX and registry code (`effbert.export.onnx_report`, `effbert.export.pyfunc`) so that a
change to those does not re-run final distillation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.data.sources import is_sample_data, source_path
from effbert.data.tasks import TaskSpec, get_task
from effbert.errors import EffbertError
from effbert.export.model_card import (
    DataFacts,
    LineageFacts,
    MetricRow,
    ModelCardFacts,
    OnnxFacts,
    RegistryFacts,
    TeacherFacts,
    dataset_name,
    describe_teacher,
    render_model_card,
)
from effbert.params import VARIANT_MODELS, Params
from effbert.runtime import read_json

__all__ = [
    "CARD_FILE",
    "card_facts",
    "data_facts",
    "dev_metric_rows",
    "encoder_counts",
    "export_lineage",
    "heldout_metric_rows",
    "registered_name",
    "require_student",
    "write_initial_card",
]

CARD_FILE = "README.md"
"""The card's file name in a student's Hugging Face directory."""


def registered_name(params: Params, task: str, variant: str | None = None) -> str:
    """The model-registry name of a task's student: ``<export.registry_prefix>-<task>``; a variant's
    ``<export.registry_prefix>-<variant's model name>-<task>`` (``effbert-student_tiny-sst2``)."""
    if variant is not None:
        return f"{params.export.registry_prefix}-{VARIANT_MODELS[variant]}-{task}"
    return f"{params.export.registry_prefix}-{task}"


def _display(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it, else as given."""
    try:
        return path.resolve().relative_to(tracking.project_root()).as_posix()
    except ValueError:
        return str(path)


def data_facts(params: Params, spec: TaskSpec, data_dir: Path) -> DataFacts:
    """What the card says about the data: ``meta.json`` and ``lineage.json`` of the prepared task data."""
    root = tracking.project_root()
    meta = read_json(data_dir / "meta.json", f"prepare_data output of {spec.name}")
    source = params.data.squad_dir if spec.is_squad else params.data.glue_dir
    files = []
    for split, digest in meta.get("source_sha256", {}).items():
        try:
            where = _display(source_path(params.data, root, spec.name, split))
        except EffbertError:  # hub data: no local file
            where = f"{spec.hub[0]} ({split})"
        files.append((split, where, str(digest)))
    lineage = tracking.read_lineage(data_dir) or {}
    return DataFacts(
        prepared_dir=_display(data_dir),
        prepared_digest=lineage.get("digest"),
        source=source if source is not None else f"datasets hub {spec.hub[0]}",
        demo=is_sample_data(source, root),
        tokenizer=str(meta.get("tokenizer", params.finetune_teacher.model)),
        files=tuple(files),
        rows={str(k): int(v) for k, v in meta.get("counts", {}).items()},
        train_limit=params.data.train_limit(spec.name),
        max_seq_length=params.data.max_seq_length,
    )


def _teacher_facts(params: Params, teacher_dir: Path | None) -> TeacherFacts:
    if teacher_dir is None:
        return TeacherFacts(pretrained_source=params.finetune_teacher.model)
    config = read_json(teacher_dir / "config.json", "the fine-tuned teacher's config")
    return TeacherFacts(
        pretrained_source=params.finetune_teacher.model,
        finetuned_dir=_display(teacher_dir),
        description=describe_teacher(config),
    )


def _data_words(data: DataFacts) -> str:
    return "demo data (data/sample)" if data.demo else f"data from {data.source}"


def dev_metric_rows(spec: TaskSpec, record: Mapping[str, Any], params: Params, data: DataFacts) -> list[MetricRow]:
    """The rows of an ``evaluate`` ``metrics.json`` record, each labelled with what it is.

    Args:
        spec: the task.
        record: the ``metrics.json`` record (``metrics``, ``rows`` per dev split).
        params: the run's params (``data.max_eval_examples``).
        data: the data facts (demo or not).

    Returns:
        One row per metric (``_mm`` metrics are MNLI's mismatched dev set).
    """
    rows = []
    unit = "questions" if spec.is_squad else "rows"
    for name, value in record.get("metrics", {}).items():
        split = "dev_mm" if name.endswith("_mm") else "dev"
        count = int(record.get("rows", {}).get(split, 0))
        which = "dev (mismatched)" if split == "dev_mm" else "dev"
        extent = "full dev set" if params.data.max_eval_examples is None else "first rows of the dev set"
        label = f"ours, {dataset_name(spec)} {which}, {extent} ({count:,} {unit}), {_data_words(data)}"
        rows.append(MetricRow(metric=name, value=float(value), split="dev", label=label))
    return rows


def heldout_metric_rows(spec: TaskSpec, metrics: Mapping[str, Any], history: Any, data: DataFacts) -> list[MetricRow]:
    """Held-out (checkpoint selection) rows of a task distillation, labelled as such.

    Args:
        spec: the task.
        metrics: the distillation's ``metrics.json`` figures (``best_heldout_score``, ``best_checkpoint_step``).
        history: the Trainer's log history (DataFrame); its ``eval_<metric>`` values at the best step are listed.
        data: the data facts (held-out size, demo or not).

    Returns:
        The task's metrics at the selected checkpoint, then the selection score itself.
    """
    step = metrics.get("best_checkpoint_step")
    count = data.rows.get("heldout_examples", data.rows.get("heldout", 0))
    where = (
        f"ours, held-out slice of {dataset_name(spec)} train ({count:,} {'questions' if spec.is_squad else 'rows'}), "
        f"checkpoint selection at step {step}, {_data_words(data)}"
    )
    rows = []
    if history is not None and step is not None and "step" in history:
        at_best = history[history["step"] == step]
        for name in spec.metrics:
            column = f"eval_{name}"
            if column in at_best and at_best[column].notna().any():
                value = float(at_best[column].dropna().iloc[-1])
                rows.append(MetricRow(metric=name, value=value, split="heldout", label=where))
    if metrics.get("best_heldout_score") is not None:
        label = f"{where}; the selection score (effbert.data.tasks.selection_score) the checkpoint was chosen by"
        rows.append(
            MetricRow(metric="selection", value=float(metrics["best_heldout_score"]), split="heldout", label=label)
        )
    return rows


def require_student(model: Any, model_dir: Path, task: str) -> None:
    """Raise EffbertError unless ``model`` is an EffBert student (what the card and the export describe)."""
    from effbert.methods.efficientbert.modeling_effbert import EffBertPreTrainedModel

    if not isinstance(model, EffBertPreTrainedModel):
        raise EffbertError(f"{model_dir}: {type(model).__name__} is not an EffBert student (task {task})")


def export_lineage(task: str, model_dir: Path, stage: tracking.StageRun) -> LineageFacts:
    """The lineage of the export's card: the student's training lineage (its ``lineage.json``) plus the export run.

    Args:
        task: task id.
        model_dir: the exported student (its ``lineage.json`` names the run that trained it).
        stage: the ``export@<task>`` run.

    Returns:
        The training run (when recorded) and the export run; commit and code digest of the training (else of now).
    """
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


def encoder_counts(model: Any) -> tuple[int, int]:
    """A task model's encoder parameters with and without the embedding block, in the paper's convention (no
    pooler, no task head): an EffBert student's, or a BERT-family model's of a compared method."""
    from effbert.measure.size import model_params
    from effbert.methods.efficientbert.modeling_effbert import EffBertPreTrainedModel
    from effbert.methods.efficientbert.supernet import param_count

    if isinstance(model, EffBertPreTrainedModel):
        return param_count(model), param_count(model, include_embeddings=False)
    encoder = model.base_model
    embeddings = sum(p.numel() for n, p in encoder.named_parameters() if n.split(".")[0] == "embeddings")
    return model_params(encoder), model_params(encoder) - embeddings


def card_facts(
    params: Params,
    task: str,
    model: Any,
    model_dir: Path,
    data_dir: Path,
    *,
    metrics: list[MetricRow],
    lineage: LineageFacts,
    teacher_dir: Path | None = None,
    onnx: OnnxFacts | None = None,
    registry: RegistryFacts | None = None,
    notes: tuple[str, ...] = (),
    method: str = "efficientbert",
    variant: str | None = None,
) -> ModelCardFacts:
    """Gather the facts of a student's model card (an EfficientBERT student, or a compared method's model).

    Args:
        params: the run's params.
        task: task id.
        model: the loaded task student (EffBert).
        model_dir: its directory (``architecture.json`` gives the architecture's name).
        data_dir: the task's ``prepare_data`` output.
        metrics: labelled metric rows.
        lineage: run ids and digests.
        teacher_dir: the fine-tuned teacher's directory, None when unknown.
        onnx: the ONNX export, when there is one.
        registry: the registry entry, when there is one.
        notes: sentences added under the metrics.
        method: the compression method that made the model (`effbert.params.METHODS`).
        variant: the EfficientBERT variant the student is (`effbert.params.VARIANTS`), None for the main student.

    Returns:
        The facts.

    Raises:
        EffbertError: the model is not an EffBert student, or an input file is missing or invalid.
    """
    from effbert.methods.efficientbert.architecture import ARCHITECTURE_FILE, Architecture
    from effbert.methods.efficientbert.modeling_effbert import EffBertPreTrainedModel

    spec = get_task(task)
    if method == "efficientbert":
        require_student(model, model_dir, task)
    config = model.config
    architecture, (with_embeddings, without) = None, encoder_counts(model)
    if isinstance(model, EffBertPreTrainedModel):
        arch_file = model_dir / ARCHITECTURE_FILE
        name = Architecture.load(arch_file).name if arch_file.is_file() else "config"
        architecture = config.architecture(name)
    return ModelCardFacts(
        name=registered_name(params, task, variant)
        if method == "efficientbert"
        else f"{params.export.registry_prefix}-{method}-{task}",
        task=task,
        model_class=type(model).__name__,
        architecture=architecture,
        num_heads=config.num_attention_heads,
        embedding_size=getattr(config, "embedding_size", config.hidden_size),
        vocab_size=config.vocab_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        labels=tuple(spec.labels),
        params_with_embeddings=with_embeddings,
        params_without_embeddings=without,
        params_total=sum(p.numel() for p in model.parameters()),
        teacher=_teacher_facts(params, teacher_dir),
        data=data_facts(params, spec, data_dir),
        metrics=tuple(metrics),
        lineage=lineage,
        onnx=onnx,
        registry=registry,
        notes=notes,
        method=method,
        variant=variant,
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        intermediate_size=getattr(config, "intermediate_size", None),
    )


def write_initial_card(
    params: Params,
    task: str,
    model: Any,
    model_dir: Path,
    *,
    teacher_dir: Path,
    data_dir: Path,
    metrics: Mapping[str, Any],
    history: Any,
    stage: tracking.StageRun,
    trained_by: str = "final_distill",
    notes: tuple[str, ...] | None = None,
    variant: str | None = None,
) -> Path:
    """Write the first model card of a freshly distilled task student (``final_distill@<task>``, or the stage
    ``trained_by`` of a compared method).

    Its metrics are the held-out selection figures, labelled as such; the dev metrics, the ONNX export and the
    registry entry are added by the full card of ``export@<task>``.

    Args:
        params: the run's params.
        task: task id.
        model: the trained task student.
        model_dir: the directory it was saved to (the card is written there as ``README.md``).
        teacher_dir: the fine-tuned teacher it was distilled from.
        data_dir: the task's ``prepare_data`` output.
        metrics: the distillation's figures (``best_heldout_score``, ``best_checkpoint_step``).
        history: the Trainer's log history (DataFrame) or None.
        stage: the distillation's MLflow run.
        trained_by: the stage family that trained the model (its run is named ``<trained_by>@<task>``).
        notes: the card's closing notes; None = where the export stage's full card is (EfficientBERT's students).
        variant: the EfficientBERT variant the student is (trained by ``variant_distill``).

    Returns:
        The card's path.

    Raises:
        EffbertError: see :func:`card_facts`.
    """
    spec = get_task(task)
    data = data_facts(params, spec, data_dir)
    lineage = LineageFacts(
        git_commit=tracking.git_commit(),
        code_digest=tracking.code_digest(),
        runs=(
            (
                f"{trained_by}@{task if variant is None else f'{VARIANT_MODELS[variant]}-{task}'} (trained this model)",
                stage.run_id,
            ),
        ),
        upstream_run_ids=tuple(stage.upstream),
    )
    facts = card_facts(
        params,
        task,
        model,
        model_dir,
        data_dir,
        metrics=heldout_metric_rows(spec, metrics, history, data),
        lineage=lineage,
        teacher_dir=teacher_dir,
        method="efficientbert" if trained_by in ("final_distill", "variant_distill") else trained_by,
        variant=variant,
        notes=notes
        if notes is not None
        else (
            "Dev-set metrics, the ONNX export and the registry entry are in the card that stage "
            f"`{'export@' + task if variant is None else f'variant_export@{VARIANT_MODELS[variant]}-{task}'}` "
            "writes (`effbert export`).",
        ),
    )
    path = model_dir / CARD_FILE
    path.write_text(render_model_card(facts), encoding="utf-8")
    return path
