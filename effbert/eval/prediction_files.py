"""Predictions of a task model on its prepared test (or dev) splits, formatted as the GLUE server and SQuAD expect,
and the manifest of a submission (what is there, what the GLUE server still needs). Reads the model and the prepared
splits; returns the files' texts, writes nothing.

Predictions run over the splits ``prepare_data`` saved (test rows carry the test file's ``index`` as ``idx``), with
the batched forward pass of `effbert.eval.inference` and the dev evaluation's SQuAD post-processing settings
(``evaluate.n_best``, ``max_answer_length``, ``null_threshold``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert.compute import device, seed_everything
from effbert.data.qa_features import postprocess_predictions
from effbert.data.sources import source_path
from effbert.data.tasks import TaskSpec, get_task
from effbert.errors import EffbertError
from effbert.eval.inference import predict_logits
from effbert.eval.scoring import logits_to_predictions
from effbert.eval.submission import (
    GLUE_SERVER_FILES,
    GLUE_SERVER_ROWS,
    glue_tsv,
    server_file_status,
    squad_predictions_json,
    submission_file_name,
)
from effbert.params import Params

log = logging.getLogger(__name__)

ZIP_NAME = "glue_submission.zip"
"""The GLUE server's zip inside a submission folder."""
GLUE_SPLITS = ("test", "dev")
# Splits a GLUE "test" request may lack: AX needs the diagnostic file, which not every GLUE copy has.
OPTIONAL_TEST_SPLITS = frozenset({"test_ax"})


@dataclass(frozen=True)
class PredictionFile:
    """One predictions file of one task and prepared split.

    Attributes:
        name: the file name (``MNLI-mm.tsv``, ``squad_v1-dev-predictions.json``).
        task: task id whose model produced it.
        split: the prepared split predicted (``test_mm``, ``dev``).
        rows: predicted rows (GLUE) or questions (SQuAD).
        text: the file's text.
    """

    name: str
    task: str
    split: str
    rows: int
    text: str


def _requested_splits(spec: TaskSpec, split: str) -> list[tuple[str, bool]]:
    """The prepared splits a request means, each with whether it must exist.

    GLUE ``test`` means every test split of the task (MNLI: ``test``, ``test_mm`` and, when prepared, ``test_ax``);
    GLUE ``dev`` every dev split; SQuAD ``dev`` or ``test`` itself.
    """
    if spec.is_squad:
        submission_file_name(spec.name, split)  # raises for an unknown split
        return [(split, True)]
    if split == "test":
        return [(name, name not in OPTIONAL_TEST_SPLITS) for name in spec.test_splits]
    if split == "dev":
        return [(name, True) for name in spec.dev_splits]
    raise EffbertError(f"{spec.name}: cannot predict split {split!r}; GLUE tasks take one of: {' '.join(GLUE_SPLITS)}")


def _is_prepared(spec: TaskSpec, data_dir: Path, split: str) -> bool:
    needed = [split, f"{split}_examples"] if spec.is_squad else [split]
    return all((data_dir / name).is_dir() for name in needed)


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to the project root when it lies inside it (as params and messages spell paths)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _missing_split_error(params: Params, root: Path, spec: TaskSpec, data_dir: Path, split: str) -> EffbertError:
    """One line naming the task, the split, the prepared dir and the source file that would have to exist."""
    where = f"{spec.name}: no {split} split in {_shown(data_dir, root)}"
    try:
        source = source_path(params.data, root, spec.name, split)
    except EffbertError as exc:
        return EffbertError(f"{where}: {exc}")
    if source.is_file():
        return EffbertError(f"{where}, although {_shown(source, root)} exists: re-run prepare_data for {spec.name}")
    if spec.is_squad and split in spec.test_splits:
        hint = "SQuAD's test set is hidden: CodaLab runs the model on it; predict_test.squad_split: dev predicts dev"
    elif split in spec.test_splits:
        hint = "GLUE test files come with the GLUE download script"
    else:
        hint = "check data.glue_dir / data.squad_dir"
    return EffbertError(f"{where}: {_shown(source, root)} is missing ({hint})")


def _check_model_dir(task: str, model_dir: Path, root: Path) -> None:
    if not (model_dir / "config.json").is_file():
        raise EffbertError(
            f"{task}: no model in {_shown(model_dir, root)} (config.json missing): train the task's model first"
        )


def predict_files(
    params: Params, root: Path, task: str, model_dir: Path, data_dir: Path, split: str, *, bf16: bool = False
) -> list[PredictionFile]:
    """Predict every prepared split a request means and format the files.

    Args:
        params: the run's params (``seed``, ``predict_test.batch_size``, ``evaluate`` SQuAD settings).
        root: the project root (paths in messages are shown relative to it).
        task: task id; MNLI's test request includes AX when its split was prepared.
        model_dir: the task's fine-tuned model (student or teacher, ``save_pretrained`` layout with tokenizer).
        data_dir: the task's ``prepare_data`` output.
        split: ``test`` or ``dev`` (GLUE: every test / dev split of the task; SQuAD: that split).
        bf16: run the model under bf16 autocast.

    Returns:
        One :class:`PredictionFile` per predicted split, in the task's split order.

    Raises:
        EffbertError: unknown task or split, a required split that was not prepared (naming the source file that
            would have to exist), or no model in ``model_dir``.
    """
    from effbert.data.prepared import load_split
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    spec = get_task(task)
    wanted: list[str] = []
    for name, required in _requested_splits(spec, split):
        if _is_prepared(spec, data_dir, name):
            wanted.append(name)
        elif required:
            raise _missing_split_error(params, root, spec, data_dir, name)
        else:
            log.info("%s: no %s split in %s; %s is left out", task, name, data_dir, submission_file_name(task, name))
    _check_model_dir(task, model_dir, root)
    seed_everything(params.seed)
    model = load_task_model(str(model_dir), spec)
    tokenizer = load_tokenizer(str(model_dir))
    evaluate = params.evaluate
    files: list[PredictionFile] = []
    for name in wanted:
        features = load_split(data_dir, name)
        heads = predict_logits(model, features, tokenizer, params.predict_test.batch_size, device(), bf16=bf16)
        if spec.is_squad:
            examples = load_split(data_dir, f"{name}_examples")
            answers, _ = postprocess_predictions(
                examples,
                features,
                heads[0],
                heads[1],
                n_best=evaluate.n_best,
                max_answer_length=evaluate.max_answer_length,
                version_2=task == "squad_v2",
                null_threshold=evaluate.null_threshold,
            )
            question_ids = examples["id"]
            text, rows = squad_predictions_json(answers, question_ids), len(question_ids)
        else:
            predictions = logits_to_predictions(spec, heads[0])
            text, rows = glue_tsv(task, name, features["idx"], predictions.tolist()), len(features)
        files.append(PredictionFile(submission_file_name(task, name), task, name, rows, text))
        log.info("%s/%s: %d rows -> %s", task, name, rows, files[-1].name)
    return files


def predict_split(
    params: Params, root: Path, task: str, model_dir: Path, data_dir: Path, split: str, *, bf16: bool = False
) -> dict[str, str]:
    """The predictions files of one task and one requested split.

    Args:
        params: the run's params.
        root: the project root.
        task: task id.
        model_dir: the task's fine-tuned model directory.
        data_dir: the task's ``prepare_data`` output.
        split: ``test`` or ``dev`` (see :func:`predict_files`).
        bf16: run the model under bf16 autocast.

    Returns:
        File name -> file text (``SST-2.tsv``; ``SST-2.dev.tsv`` for dev; ``squad_v1-dev-predictions.json``).

    Raises:
        EffbertError: as :func:`predict_files`.
    """
    return {f.name: f.text for f in predict_files(params, root, task, model_dir, data_dir, split, bf16=bf16)}


def _squad_split_reason(spec: TaskSpec, split: str) -> str:
    if split == "test":
        return (
            f"predict_test.squad_split is 'test': predictions for {spec.test_splits['test']}, the dev-format file "
            "CodaLab runs the submitted model on"
        )
    return (
        "predict_test.squad_split is 'dev': SQuAD's official test set is hidden (CodaLab runs the submitted model "
        "on it), so the dev predictions show the submission format and can be scored locally"
    )


def _file_record(f: PredictionFile, model_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"task": f.task, "split": f.split, "rows": f.rows, "model_dir": str(model_dir)}
    if f.name in GLUE_SERVER_ROWS:
        record["server_rows"] = GLUE_SERVER_ROWS[f.name]
        record["rows_match_server"] = f.rows == GLUE_SERVER_ROWS[f.name]
    return record


def submission_manifest(
    files: list[PredictionFile], model_dirs: dict[str, Path], squad: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """The ``manifest.json`` of a submission: per file its task, split, rows and model; which of the 11 GLUE server
    files are present and whose row counts differ from the server's; the SQuAD split used and why."""
    glue_files = [f.name for f in files if not get_task(f.task).is_squad]
    status = server_file_status(glue_files)
    mismatched = [f.name for f in files if f.name in GLUE_SERVER_ROWS and f.rows != GLUE_SERVER_ROWS[f.name]]
    for name in mismatched:
        log.warning("%s: row count differs from the official GLUE test file; the server will reject it", name)
    return {
        "files": {f.name: _file_record(f, model_dirs[f.task]) for f in files},
        "glue": {
            "zip": ZIP_NAME if glue_files else None,
            **status,
            "complete": not status["missing"],
            "note": f"the GLUE server scores a zip holding all {len(GLUE_SERVER_FILES)} files",
            "rows_differ_from_server": mismatched,
        },
        "squad": squad,
    }


def squad_split(params: Params, spec: TaskSpec) -> tuple[str, dict[str, str]]:
    """The split a SQuAD task's submission predicts (``predict_test.squad_split``) and its manifest entry."""
    split = params.predict_test.squad_split
    return split, {"split": split, "reason": _squad_split_reason(spec, split)}
