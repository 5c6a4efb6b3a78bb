"""Stage ``evaluate@<model>-<task>``: corpus-level dev metrics and dev predictions of one model on one task.

Output ``results/eval/<model>/<task>/``: ``metrics.json``, ``predictions.tsv`` (``index prediction label`` in
dev-file row order; MNLI adds ``predictions_mm.tsv``) or ``predictions.json`` ({id: answer} for SQuAD), the log
and ``lineage.json``. The work is `effbert.eval.evaluation.evaluate_dev`.

Two compared methods give more than one model per directory, and their record says so:

- a DynaBERT model (``dynabert.json`` beside it): ``grid`` holds every (width, depth) sub-network's metrics
  (`effbert.methods.dynabert.evaluation.evaluate_grid`); the record's own metrics are the full-size model's;
- a FastBERT model: ``sweep`` holds the metrics and mean exit layer at every ``fastbert.speeds`` threshold
  (`effbert.methods.fastbert.evaluation.evaluate_sweep`); the record's own metrics are those at ``fastbert.speed``
  (the predictions files are the full model's, every layer run).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from effbert.compute import device, seed_everything
from effbert.data.tasks import get_task
from effbert.params import Params
from effbert.runtime import load_params, params_option, resolve_bf16, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS = ("seed", "bf16", "evaluate", "fastbert.speed", "fastbert.speeds")
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("evaluate")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--model-name", required=True, help="Name of the model in results/eval (teacher, student).")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@params_option
def command(task: str, model_name: str, model_dir: str, data_dir: str, out: str, params_file: str) -> None:
    """Dev-set metrics (corpus level) and dev predictions of one model on one task."""
    params = load_params(params_file)
    tags = {"effbert.task": task, "effbert.model": model_name}
    with stage_context("evaluate", f"evaluate@{model_name}-{task}", params, PARAMS, [Path(out)], tags) as (
        run,
        (tmp,),
    ):
        run.consume(Path(model_dir), f"{task}/{model_name}", context="model")
        run.consume(Path(data_dir), f"{task}/prepared", context="eval")
        bf16 = resolve_bf16(params, run)
        record = evaluate(params, task, model_name, Path(model_dir), Path(data_dir), tmp, bf16=bf16)
        run.log_metrics({f"dev/{k}": v for k, v in record["metrics"].items()})
        run.log_artifact(tmp)


def evaluate(
    params: Params, task: str, model_name: str, model_dir: Path, data_dir: Path, out_dir: Path, *, bf16: bool
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on every dev split of ``task`` (with ``bf16``: under bf16 autocast); write metrics
    (the record says whether bf16 was on and, for a sentence task, what the majority-class baseline scores) and
    predictions into ``out_dir``."""
    from effbert.data.prepared import eval_splits, load_split
    from effbert.eval.evaluation import evaluate_dev, majority_baseline
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    spec = get_task(task)
    seed_everything(params.seed)
    model = load_task_model(str(model_dir), spec)
    tokenizer = load_tokenizer(str(model_dir))
    splits = eval_splits(spec, data_dir)
    evaluation = evaluate_dev(model, tokenizer, spec, splits, params.evaluate, device(), bf16=bf16)
    for name, text in evaluation.files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    record = {**evaluation.record(task, model_name), "bf16": bf16}
    record.update(several_models(params, spec, model, tokenizer, model_dir, splits, bf16=bf16))
    if not spec.is_squad:
        record["majority"] = majority_baseline(spec, load_split(data_dir, "train")["label"], splits)
    write_json(out_dir / "metrics.json", record)
    log.info("%s on %s dev: %s", model_name, task, ", ".join(f"{k}={v:.4f}" for k, v in record["metrics"].items()))
    return record


def several_models(
    params: Params, spec: Any, model: Any, tokenizer: Any, model_dir: Path, splits: Any, *, bf16: bool
) -> dict[str, Any]:
    """The record's keys for a directory holding several models: DynaBERT's ``grid`` (the metrics stay the
    full-size model's), FastBERT's ``sweep`` and, at ``fastbert.speed``, its ``metrics`` and ``score``; {} for a
    plain model."""
    from effbert.data.tasks import selection_score

    if (model_dir / "dynabert.json").is_file():
        from effbert.methods.dynabert.evaluation import evaluate_grid

        return {"grid": evaluate_grid(model, tokenizer, spec, splits, params.evaluate, device(), bf16=bf16)}
    if getattr(model.config, "model_type", "") == "effbert-fastbert":
        from effbert.methods.fastbert.evaluation import evaluate_sweep

        hp = params.fastbert
        speeds = sorted({*hp.speeds, hp.speed})
        sweep = evaluate_sweep(model, tokenizer, spec, splits, speeds, params.evaluate.batch_size, device(), bf16=bf16)
        chosen = next(point for point in sweep if point["speed"] == hp.speed)
        metrics = chosen["metrics"]
        return {
            "sweep": sweep,
            "speed": hp.speed,
            "metrics": metrics,
            "score": selection_score(spec.name, metrics),
            "predictions": "the full model's (every layer run)",
        }
    return {}
