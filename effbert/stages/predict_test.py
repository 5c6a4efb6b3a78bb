"""Stage ``predict_test`` and ``effbert predict``: GLUE server files and SQuAD predictions of the final students.

Output ``results/predict_test/``: one TSV per GLUE test split that exists (``SST-2.tsv``, ``MNLI-m.tsv``,
``MNLI-mm.tsv``, ``AX.tsv``...; header ``index<TAB>prediction``), ``glue_submission.zip`` (every GLUE file at the
archive root, as the GLUE server expects), ``<squad task>-<split>-predictions.json`` (``{question_id: answer}``) and
``manifest.json`` (per file its task, split, rows and model; which of the 11 GLUE server files are present; the SQuAD
split used and why). The predictions are `effbert.eval.prediction_files`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.params import Params
from effbert.runtime import atomic_dir, load_params, params_option, resolve_bf16, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS = ("seed", "bf16", "tasks", "predict_test", "evaluate", "data.glue_dir", "data.squad_dir")
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""

MANIFEST_NAME = "manifest.json"


@click.command("predict-test")
@click.option("--models", "models_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@params_option
def command(models_root: str, data_root: str, out: str, params_file: str) -> None:
    """GLUE server files of every GLUE task (zipped) and SQuAD predictions, from the final students."""
    params = load_params(params_file)
    with stage_context("predict_test", "predict_test", params, PARAMS, [Path(out)]) as (run, (tmp,)):
        for task in params.tasks:
            run.consume(Path(models_root) / task, f"{task}/student", context="model")
            run.consume(Path(data_root) / task, f"{task}/prepared", context="test")
        bf16 = resolve_bf16(params, run)
        manifest = predict_test(params, list(params.tasks), Path(models_root), Path(data_root), tmp, bf16=bf16)
        run.log_artifact(tmp)
        run.log_metrics({f"rows/{name}": float(f["rows"]) for name, f in manifest.get("files", {}).items()})


def predict_test(
    params: Params, tasks: list[str], models_root: Path, data_root: Path, out_dir: Path, *, bf16: bool = False
) -> dict[str, Any]:
    """Every task's submission files, the GLUE zip and the manifest, written into ``out_dir``.

    Args:
        params: the run's params (``predict_test.squad_split`` chooses SQuAD's split; GLUE tasks predict ``test``).
        tasks: task ids of the profile.
        models_root: folder holding one model directory per task (``results/models/student``).
        data_root: folder holding one ``prepare_data`` output per task (``results/prepare_data``).
        out_dir: the folder to write into.
        bf16: run the models under bf16 autocast.

    Returns:
        The manifest (also written to ``manifest.json``).

    Raises:
        EffbertError: for the first task that cannot be predicted (see `effbert.eval.prediction_files`).
    """
    from effbert.eval.prediction_files import ZIP_NAME, PredictionFile, predict_files, squad_split, submission_manifest
    from effbert.eval.submission import glue_zip

    root = tracking.project_root()
    files: list[PredictionFile] = []
    model_dirs: dict[str, Path] = {}
    squad: dict[str, dict[str, str]] = {}
    for task in tasks:
        spec = get_task(task)
        split = "test"
        if spec.is_squad:
            split, squad[task] = squad_split(params, spec)
        model_dirs[task] = models_root / task
        files += predict_files(params, root, task, model_dirs[task], data_root / task, split, bf16=bf16)
    for f in files:
        (out_dir / f.name).write_text(f.text, encoding="utf-8")
    glue_files = {f.name: f.text for f in files if not get_task(f.task).is_squad}
    if glue_files:
        (out_dir / ZIP_NAME).write_bytes(glue_zip(glue_files))
    manifest = submission_manifest(files, model_dirs, squad)
    write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


@click.command("predict")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--split", default="test", show_default=True, help="test (GLUE server files; SQuAD test-v1.1.json) or dev."
)
@click.option(
    "--data",
    "data_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Prepared data [results/prepare_data/TASK].",
)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), help="Output dir [results/predict/TASK].")
@params_option
def predict_command(
    task: str, model_dir: str, split: str, data_dir: str | None, out: str | None, params_file: str
) -> None:
    """Predictions of a model directory on a prepared split, in the GLUE server / SQuAD predictions format."""
    from effbert.compute import use_bf16
    from effbert.eval.prediction_files import predict_split

    get_task(task)
    params = load_params(params_file)
    data = Path(data_dir or f"results/prepare_data/{task}")
    if not data.is_dir():
        raise EffbertError(f"--data {data}: no prepared data (run `effbert run --target prepare_data@{task}` first)")
    target = Path(out or f"results/predict/{task}")
    root = tracking.project_root()
    bf16 = use_bf16(params.bf16)
    files = predict_split(params, root, task, Path(model_dir), data, split, bf16=bf16)  # fails before writing
    with atomic_dir(target) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    for name in files:
        click.echo(str(target / name))
