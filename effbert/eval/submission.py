"""Submission files for the GLUE server and SQuAD: file names, file text and the zip layout (no file I/O).

The GLUE server (gluebenchmark.com) scores one zip holding, at its root, one TSV per test set: ``CoLA.tsv``,
``SST-2.tsv``, ... ``AX.tsv`` (11 files; AX, the diagnostic set, is predicted with the MNLI model). Each file has the
header ``index<TAB>prediction`` and one row per test row, the index copied from the test file and the prediction
spelled as the training files spell labels (``entailment``, ``0``...); STS-B scores are clipped to [0, 5].
SQuAD predictions are a JSON object ``{question_id: answer_text}``, the format of the official evaluation script
and of CodaLab.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence

from effbert.data.tasks import TASKS, TaskSpec, get_task
from effbert.errors import EffbertError

TSV_HEADER = "index\tprediction"
# The GLUE server's file names, in task-registry order (MNLI brings MNLI-m, MNLI-mm and AX).
GLUE_SERVER_FILES: tuple[str, ...] = tuple(name for spec in TASKS.values() for name in spec.submission_names.values())
# Rows of each official GLUE test file: the server rejects a file with another count.
GLUE_SERVER_ROWS: dict[str, int] = {
    "CoLA.tsv": 1063,
    "SST-2.tsv": 1821,
    "MRPC.tsv": 1725,
    "STS-B.tsv": 1379,
    "QQP.tsv": 390965,
    "MNLI-m.tsv": 9796,
    "MNLI-mm.tsv": 9847,
    "AX.tsv": 1104,
    "QNLI.tsv": 5463,
    "RTE.tsv": 3000,
    "WNLI.tsv": 146,
}
STSB_RANGE = (0.0, 5.0)
STSB_DECIMALS = 3
DEV_SUFFIX = ".dev.tsv"
# A fixed member timestamp (the earliest a zip can store) keeps the archive's bytes a function of its contents.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def prediction_text(spec: TaskSpec, value: float) -> str:
    """One submitted prediction spelled as the task's training files spell labels.

    Args:
        spec: the task (classification or regression).
        value: a class id (index into ``spec.labels``) or, for regression, the predicted score.

    Returns:
        The label string (``entailment``, ``1``...) or the score clipped to the STS-B range [0, 5] (the server's
        range) with :data:`STSB_DECIMALS` digits.

    Raises:
        ValueError: a span task, a class id outside the label list, or a score that is not finite.
    """
    if spec.kind == "regression":
        score = float(value)
        if not math.isfinite(score):
            raise ValueError(f"{spec.name}: prediction {value!r} is not a finite score")
        score = min(max(score, STSB_RANGE[0]), STSB_RANGE[1]) + 0.0  # + 0.0 turns -0.0 into 0.0
        return f"{score:.{STSB_DECIMALS}f}"
    if spec.kind == "classification":
        class_id = int(value)
        if not 0 <= class_id < len(spec.labels):
            raise ValueError(f"{spec.name}: class id {class_id} outside the label list {list(spec.labels)}")
        return spec.labels[class_id]
    raise ValueError(f"{spec.name}: span predictions are answer texts, not labels")


def submission_file_name(task: str, split: str) -> str:
    """The file name of one task's predictions on one prepared split.

    Args:
        task: task id (``mnli``).
        split: a test split (``test``, ``test_mm``, ``test_ax``), a dev split (``dev``, ``dev_mm``) or, for SQuAD,
            ``dev`` or ``test``.

    Returns:
        The GLUE server's name for test splits (``MNLI-m.tsv``, ``MNLI-mm.tsv``, ``AX.tsv``), the same name with
        ``.dev.tsv`` for dev splits (``MNLI-mm.dev.tsv``), ``<task>-<split>-predictions.json`` for SQuAD.

    Raises:
        EffbertError: unknown task or a split the task does not have.
    """
    spec = get_task(task)
    if spec.is_squad:
        if split not in {**spec.dev_splits, **spec.test_splits}:
            raise EffbertError(f"{task}: no split {split!r} to predict; known splits: dev, test")
        return f"{task}-{split}-predictions.json"
    if split in spec.submission_names:
        return spec.submission_names[split]
    if split in spec.dev_splits:
        server_name = spec.submission_names["test" + split.removeprefix("dev")]
        return server_name.removesuffix(".tsv") + DEV_SUFFIX
    known = " ".join([*spec.test_splits, *spec.dev_splits])
    raise EffbertError(f"{task}: no split {split!r} to predict; known splits: {known}")


def glue_tsv(task: str, split: str, indices: Sequence[int], predictions: Sequence[float]) -> str:
    """The text of one GLUE server file: header ``index<TAB>prediction`` and one row per prediction.

    Args:
        task: GLUE task id; AX is ``mnli`` with split ``test_ax``.
        split: the prepared split the predictions belong to (see :func:`submission_file_name`).
        indices: the ``index`` column of the split's file (``idx`` of the prepared rows), in row order.
        predictions: class ids, or STS-B scores (clipped to [0, 5], :data:`STSB_DECIMALS` decimals).

    Returns:
        The file's text, ending with a newline.

    Raises:
        EffbertError: a SQuAD task or a split the task does not have.
        ValueError: indices and predictions differ in length, an index repeats, or a prediction is invalid.
    """
    spec = get_task(task)
    if spec.is_squad:
        raise EffbertError(f"{task}: SQuAD predictions are JSON (squad_predictions_json), not a GLUE TSV")
    submission_file_name(task, split)
    if len(indices) != len(predictions):
        raise ValueError(f"{task}/{split}: {len(indices)} indices but {len(predictions)} predictions")
    index_values = [int(i) for i in indices]
    if len(set(index_values)) != len(index_values):
        raise ValueError(f"{task}/{split}: repeated index values; the server expects one row per test row")
    rows = [f"{i}\t{prediction_text(spec, p)}" for i, p in zip(index_values, predictions, strict=True)]
    return "\n".join([TSV_HEADER, *rows]) + "\n"


def glue_zip(files: Mapping[str, str]) -> bytes:
    """The GLUE submission archive: every file at the archive root, in :data:`GLUE_SERVER_FILES` order.

    Args:
        files: server file name (``SST-2.tsv``) -> file text.

    Returns:
        The zip's bytes (deflated, fixed timestamps: the same files give the same bytes).

    Raises:
        ValueError: no files, or a name that is not one of the 11 server file names.
    """
    unknown = sorted(set(files) - set(GLUE_SERVER_FILES))
    if unknown:
        raise ValueError(
            f"not GLUE server file names: {', '.join(unknown)}; expected names: {' '.join(GLUE_SERVER_FILES)}"
        )
    if not files:
        raise ValueError("no GLUE files to zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in GLUE_SERVER_FILES:
            if name in files:
                member = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                member.compress_type = zipfile.ZIP_DEFLATED
                member.external_attr = 0o644 << 16
                archive.writestr(member, files[name].encode("utf-8"))
    return buffer.getvalue()


def server_file_status(names: Iterable[str]) -> dict[str, list[str]]:
    """Which of the 11 GLUE server files ``names`` covers.

    Args:
        names: file names produced (other names, e.g. dev files or SQuAD JSON, are ignored).

    Returns:
        ``{"present": [...], "missing": [...]}``, both in :data:`GLUE_SERVER_FILES` order.
    """
    produced = set(names)
    return {
        "present": [name for name in GLUE_SERVER_FILES if name in produced],
        "missing": [name for name in GLUE_SERVER_FILES if name not in produced],
    }


def squad_predictions_json(answers: Mapping[str, str], question_ids: Sequence[str]) -> str:
    """The SQuAD predictions file: ``{question_id: answer_text}`` in question order.

    Args:
        answers: answer text per question id (``""`` = no answer, SQuAD v2).
        question_ids: every question id of the split, in file order.

    Returns:
        The JSON text, ending with a newline.

    Raises:
        ValueError: the answers' ids differ from ``question_ids``.
    """
    missing = [qid for qid in question_ids if qid not in answers]
    extra = sorted(set(answers) - set(question_ids))
    if missing or extra:
        raise ValueError(
            f"answers do not match the questions: {len(missing)} questions without an answer "
            f"(first: {missing[:3]}), {len(extra)} answers for unknown ids (first: {extra[:3]})"
        )
    return json.dumps({qid: answers[qid] for qid in question_ids}, indent=1) + "\n"
