"""Stage ``export@<task>``: the final student as a documented, portable, registered model.

Output ``results/export/<task>/``:

- ``model/``: the student's Hugging Face directory with its full model card (``README.md``: architecture, parameter
  counts, teacher, data, labelled dev metrics, ONNX parity and latency, lineage, limitations, how to load);
- ``model.onnx``: the student exported with dynamic batch and sequence axes (`effbert.export.onnx`);
- ``onnx.json``: opset, exporter, the parity check on the first ``export.parity_rows`` rows of the task's prepared
  ``dev`` split (max |ONNX Runtime - PyTorch| per output, tolerance, passed), and PyTorch and ONNX Runtime latency
  side by side at every ``latency.batch_sizes`` (`effbert.measure.latency.compare_latency`, CPU, same threads), with
  the machine description (`effbert.export.onnx_report`);
- ``registry.json``: the MLflow model-registry entry (``<export.registry_prefix>-<task>``, version, alias
  ``export.registry_alias``, ``models:/<name>@<alias>``, run id) of the student logged as a pyfunc model
  (`effbert.export.pyfunc`).

With ``--variant`` the same for a variant's student (stage ``variant_export@<model>-<task>``, registered as
``<export.registry_prefix>-<model>-<task>``). A parity difference above ``export.parity_tolerance`` fails the stage
(nothing is written). The card's facts come
from `effbert.export.card_facts`, which ``final_distill@<task>`` also uses for the first card.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from effbert import tracking
from effbert.compute import seed_everything
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.params import VARIANT_MODELS, VARIANTS, Params
from effbert.runtime import load_params, params_option, read_json, stage_context, write_json

if TYPE_CHECKING:
    from effbert.export.model_card import RegistryFacts

log = logging.getLogger(__name__)

PARAMS = (
    "seed",
    "export",
    "latency",
    "evaluate",
    "data.glue_dir",
    "data.squad_dir",
    "data.max_train_examples",
    "data.max_eval_examples",
    "data.max_seq_length",
    "data.max_query_length",
    "data.doc_stride",
    "data.window_overlap",
    "finetune_teacher.model",
)
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""

MODEL_DIR = "model"
"""The Hugging Face directory inside the export's output."""
ONNX_REPORT = "onnx.json"
REGISTRY_FILE = "registry.json"


@click.command("export")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--eval", "eval_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@click.option("--variant", type=click.Choice(VARIANTS), default=None, help="The student is this EfficientBERT variant.")
@params_option
def command(
    task: str,
    model_dir: str,
    eval_dir: str,
    teacher_dir: str,
    data_dir: str,
    out: str,
    variant: str | None,
    params_file: str,
) -> None:
    """Model card, ONNX export (parity-checked, latency beside PyTorch) and MLflow registry entry of a student."""
    get_task(task)
    params = load_params(params_file)
    name, instance, tags = "export", f"export@{task}", {"effbert.task": task}
    if variant is not None:
        name, instance = "variant_export", f"variant_export@{VARIANT_MODELS[variant]}-{task}"
        tags["effbert.variant"] = variant
    with stage_context(name, instance, params, PARAMS, [Path(out)], tags) as (run, (tmp,)):
        run.consume(Path(model_dir), f"{task}/student", context="model")
        run.consume(Path(eval_dir), f"{task}/student/eval", context="metrics")
        run.consume(Path(teacher_dir), f"{task}/teacher", context="teacher")
        run.consume(Path(data_dir), f"{task}/prepared", context="parity")
        dirs = (Path(model_dir), Path(eval_dir), Path(data_dir), tmp)
        export_student(params, task, *dirs, run, teacher_dir=Path(teacher_dir), variant=variant)


def export_student(
    params: Params,
    task: str,
    model_dir: Path,
    eval_dir: Path,
    data_dir: Path,
    out_dir: Path,
    stage: tracking.StageRun,
    *,
    teacher_dir: Path | None = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """Export a task student: model card, ONNX with parity and latency, model-registry entry (see module doc).

    Args:
        params: the run's params (see :data:`PARAMS`).
        task: task id.
        model_dir: the final student (``results/models/student/<task>``).
        eval_dir: its ``evaluate`` output (``metrics.json``).
        data_dir: the task's ``prepare_data`` output (``dev`` rows for the parity check, ``meta.json``).
        out_dir: where to write (the command renames it into place).
        stage: this stage's MLflow run (metrics, artifacts, the registered model).
        teacher_dir: the fine-tuned teacher, named in the card when given.
        variant: the EfficientBERT variant the student is (its registry name and card say so).

    Returns:
        The ``onnx.json`` record plus ``registry`` (the ``registry.json`` record).

    Raises:
        EffbertError: a missing or invalid input, a model that is not an EffBert student, no dev rows, a
            ``latency.seq_len`` beyond the model's positions, or a parity difference above the tolerance.
    """
    from effbert.export.card_facts import CARD_FILE, registered_name
    from effbert.export.model_card import RegistryFacts
    from effbert.export.onnx_report import ONNX_FILE, export_onnx

    get_task(task)
    seed_everything(params.seed)
    record = read_json(eval_dir / "metrics.json", f"evaluate output of the {task} student")
    model, tokenizer, dev = _load_inputs(task, model_dir, data_dir)
    blob, report = export_onnx(params, task, model, tokenizer, dev, stage)

    hf_dir = out_dir / MODEL_DIR
    shutil.copytree(model_dir, hf_dir, ignore=shutil.ignore_patterns(tracking.LINEAGE_FILE, CARD_FILE))
    (out_dir / ONNX_FILE).write_bytes(blob)
    write_json(out_dir / ONNX_REPORT, report)
    registry = RegistryFacts(name=registered_name(params, task, variant), alias=params.export.registry_alias)
    card = _write_card(
        params,
        task,
        model,
        model_dir,
        data_dir,
        hf_dir,
        record=record,
        report=report,
        registry=registry,
        stage=stage,
        teacher_dir=teacher_dir,
        variant=variant,
    )
    entry = _register(params, task, hf_dir, registry, stage)
    write_json(out_dir / REGISTRY_FILE, entry)
    for name in (ONNX_REPORT, REGISTRY_FILE):
        stage.log_artifact(out_dir / name)
    stage.log_artifact(card)
    log.info("registered %s version %s as %s", registry.name, entry["version"], entry["model_uri"])
    return {**report, "registry": entry}


def _load_inputs(task: str, model_dir: Path, data_dir: Path) -> tuple[Any, Any, Any]:
    """The student (an EffBert task model, on the CPU, in eval mode), its tokenizer and the prepared dev split."""
    from effbert.data.prepared import load_split
    from effbert.export.card_facts import require_student
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    model = load_task_model(str(model_dir), get_task(task)).eval()
    require_student(model, model_dir, task)
    tokenizer = load_tokenizer(str(model_dir))
    dev: Any = load_split(data_dir, "dev")
    if len(dev) == 0:
        raise EffbertError(f"{data_dir / 'dev'}: no rows to check the ONNX export of {task} on")
    return model, tokenizer, dev


def _write_card(
    params: Params,
    task: str,
    model: Any,
    model_dir: Path,
    data_dir: Path,
    hf_dir: Path,
    *,
    record: Mapping[str, Any],
    report: Mapping[str, Any],
    registry: RegistryFacts,
    stage: tracking.StageRun,
    teacher_dir: Path | None,
    variant: str | None = None,
) -> Path:
    """Write the full model card into ``hf_dir``: dev metrics, ONNX parity and latency, registry entry, lineage."""
    from effbert.export.card_facts import CARD_FILE, card_facts, data_facts, dev_metric_rows, export_lineage
    from effbert.export.model_card import render_model_card
    from effbert.export.onnx_report import onnx_facts

    spec = get_task(task)
    facts = card_facts(
        params,
        task,
        model,
        model_dir,
        data_dir,
        metrics=dev_metric_rows(spec, record, params, data_facts(params, spec, data_dir)),
        lineage=export_lineage(task, model_dir, stage),
        teacher_dir=teacher_dir,
        onnx=onnx_facts(params, report),
        registry=registry,
        notes=("Held-out (checkpoint-selection) scores are in the card the task distillation wrote with the model.",),
        variant=variant,
    )
    path = hf_dir / CARD_FILE
    path.write_text(render_model_card(facts), encoding="utf-8")
    return path


def _register(
    params: Params, task: str, hf_dir: Path, registry: RegistryFacts, stage: tracking.StageRun
) -> dict[str, Any]:
    """Log the student in ``hf_dir`` as a pyfunc model, register it and point the alias at it (the registry entry)."""
    from effbert.export.pyfunc import MODEL_ARTIFACT, EffBertPyfunc, pip_requirements, pyfunc_config, pyfunc_signature

    return stage.register_model(
        registry.name,
        registry.alias,
        EffBertPyfunc(),
        {MODEL_ARTIFACT: hf_dir},
        pyfunc_config(params, task),
        pip_requirements(),
        signature=pyfunc_signature(task),
        tags={"effbert.task": task},
    )
