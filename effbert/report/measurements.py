"""Size and speed of the models the report compares: our student and teacher encoders and a random-init BERT-base.

Parameters in the paper's convention (`effbert.measure.size`), multiply-accumulates counted on one sequence, the
size of the distillation projection ``fit_dense`` saved with the general student, and latency under the protocol of
`effbert.measure.latency`, the models timed side by side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effbert.errors import EffbertError
from effbert.params import Params

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

LINEAR_KERNEL = "oneDNN for every model's linear layers at fp32 CPU inference (effbert.methods.efficientbert.kernels)"
"""How the report times linear layers: the student's inference kernel for the teacher and BERT-base too, so the
speed-ups compare architectures, not kernels (stock BERT-base's MKL multiplies are a third slower on an AMD CPU)."""


def fit_dense_params(student_general: Path) -> int | None:
    """Parameters of the distillation projection ``fit_dense`` saved with the general student, None without it."""
    from safetensors import safe_open

    from effbert.distill.projection import FIT_DENSE_FILE

    path = student_general / FIT_DENSE_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118


def params_without_embeddings(model: nn.Module) -> int:
    """Encoder parameters minus the embedding block (no pooler, no head), in `effbert.measure.size.model_params`'
    convention."""
    from effbert.measure.size import model_params
    from effbert.methods.efficientbert.modeling_effbert import EffBertPreTrainedModel
    from effbert.methods.efficientbert.supernet import param_count

    if isinstance(model, EffBertPreTrainedModel):
        return param_count(model, include_embeddings=False)
    embeddings = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] == "embeddings")
    return model_params(model) - embeddings


def size_row(name: str, model: nn.Module, macs_seq_len: int) -> dict[str, Any]:
    """Layers, hidden size, parameters (with and without embeddings) and MACs per sequence of one model.

    Raises:
        EffbertError: ``macs_seq_len`` beyond the model's position table.
    """
    from effbert.measure.size import count_macs, model_params

    config: Any = model.config
    try:
        macs = count_macs(model, macs_seq_len)
    except ValueError as err:
        raise EffbertError(f"report.macs_seq_len={macs_seq_len}: {name}: {err}") from None
    return {
        "model": name,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "params": model_params(model),
        "params_without_embeddings": params_without_embeddings(model),
        "macs": macs,
    }


def latency_rows(params: Params, models: Mapping[str, nn.Module]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Time the models side by side at every ``latency.batch_sizes`` (BERT-base only at
    ``report.bert_base_batch_sizes``).

    Returns:
        One row per batch size and model (`LatencyResult.to_dict` fields without ``machine``, plus ``model``) and
        the machine the latest measurement that names one ran on (None when none does).

    Raises:
        EffbertError: ``latency.seq_len`` beyond a model's position table.
    """
    from effbert.measure.latency import compare_latency

    hp = params.latency
    rows: list[dict[str, Any]] = []
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
            rows.append({"model": name, **row})
    return rows, machine


def measure(
    params: Params,
    task: str,
    student_dir: Path,
    teacher_dir: Path,
    student_general: Path,
    bert_base: nn.Module | None = None,
) -> dict[str, Any]:
    """Size and speed of the student, the teacher and a random-init BERT-base (all timed on `LINEAR_KERNEL`).

    The student and the teacher are the encoders (no pooler, no task head) of one task; every task's student shares
    the searched architecture and every teacher the same base model, so one pair stands for all.

    Args:
        params: the run's params (``latency``, ``report``).
        task: the task whose models are measured.
        student_dir: that task's student model directory.
        teacher_dir: that task's teacher model directory.
        student_general: the general student's directory (``fit_dense.safetensors``).
        bert_base: the BERT-base to measure; None builds the random-init one of
            `effbert.measure.benchmark.reference_models`.

    Returns:
        ``task``, ``sizes`` (model -> row), ``latency`` (one row per batch size and model, `LatencyResult.to_dict`
        fields plus ``model``), ``machine`` (where the latencies were measured) and ``protocol``.

    Raises:
        EffbertError: a model directory that does not load, a ``report.macs_seq_len`` or ``latency.seq_len`` beyond a
            model's position table.
    """
    from effbert.measure.benchmark import reference_models
    from effbert.measure.latency import machine_description
    from effbert.methods.efficientbert.kernels import use_fused_linears
    from effbert.models.auto import load_encoder

    models = {
        "student": load_encoder(str(student_dir)),
        "teacher": load_encoder(str(teacher_dir)),
        "bert_base": bert_base if bert_base is not None else reference_models()[1],
    }
    sizes = {name: size_row(name, model, params.report.macs_seq_len) for name, model in models.items()}
    fit_dense = fit_dense_params(student_general)
    sizes["student"]["fit_dense"] = fit_dense
    sizes["student"]["params_with_fit_dense"] = sizes["student"]["params"] + fit_dense if fit_dense else None
    for model in models.values():  # like for like: every model's linear layers on the student's kernel
        use_fused_linears(model)
    latency, machine = latency_rows(params, models)
    return {
        "task": task,
        "sizes": sizes,
        "latency": latency,
        "machine": machine or machine_description(),
        "protocol": {**params.latency.model_dump(), "linear_kernel": LINEAR_KERNEL},
    }
