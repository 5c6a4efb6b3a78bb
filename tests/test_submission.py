"""GLUE server files and SQuAD predictions as text: names, headers, label spelling, STS-B clipping, the zip."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from effbert.data.tasks import TASKS, get_task
from effbert.errors import EffbertError
from effbert.eval.submission import (
    GLUE_SERVER_FILES,
    GLUE_SERVER_ROWS,
    TSV_HEADER,
    glue_tsv,
    glue_zip,
    prediction_text,
    server_file_status,
    squad_predictions_json,
    submission_file_name,
)


def parse_tsv(text: str) -> list[list[str]]:
    assert text.endswith("\n") and not text.endswith("\n\n")
    return [line.split("\t") for line in text.removesuffix("\n").split("\n")]


def test_the_eleven_server_file_names() -> None:
    assert sorted(GLUE_SERVER_FILES) == sorted(
        [
            "CoLA.tsv",
            "SST-2.tsv",
            "MRPC.tsv",
            "STS-B.tsv",
            "QQP.tsv",
            "MNLI-m.tsv",
            "MNLI-mm.tsv",
            "QNLI.tsv",
            "RTE.tsv",
            "WNLI.tsv",
            "AX.tsv",
        ]
    )
    assert len(set(GLUE_SERVER_FILES)) == 11 and set(GLUE_SERVER_ROWS) == set(GLUE_SERVER_FILES)
    names = {task: [submission_file_name(task, s) for s in spec.test_splits] for task, spec in TASKS.items()}
    assert names["mnli"] == ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"]  # AX comes from the MNLI model
    assert names["sst2"] == ["SST-2.tsv"] and names["stsb"] == ["STS-B.tsv"]


def test_dev_and_squad_file_names_and_unknown_splits() -> None:
    assert submission_file_name("sst2", "dev") == "SST-2.dev.tsv"
    assert submission_file_name("mnli", "dev") == "MNLI-m.dev.tsv"
    assert submission_file_name("mnli", "dev_mm") == "MNLI-mm.dev.tsv"
    assert submission_file_name("squad_v1", "dev") == "squad_v1-dev-predictions.json"
    assert submission_file_name("squad_v2", "test") == "squad_v2-test-predictions.json"
    with pytest.raises(EffbertError, match=r"sst2: no split 'test_mm'.*known splits: test dev"):
        submission_file_name("sst2", "test_mm")
    with pytest.raises(EffbertError, match="squad_v1: no split 'train'"):
        submission_file_name("squad_v1", "train")


@pytest.mark.parametrize(
    ("task", "class_ids", "spelled"),
    [
        ("mnli", [0, 1, 2], ["contradiction", "entailment", "neutral"]),
        ("qnli", [1, 0], ["not_entailment", "entailment"]),
        ("rte", [0, 1], ["entailment", "not_entailment"]),
        ("sst2", [1, 0], ["1", "0"]),
        ("wnli", [0, 1], ["0", "1"]),
        ("cola", [1], ["1"]),
    ],
)
def test_labels_are_spelled_as_in_the_training_files(task: str, class_ids: list[int], spelled: list[str]) -> None:
    indices = [10 + i for i in range(len(class_ids))]
    rows = parse_tsv(glue_tsv(task, "test", indices, class_ids))
    assert rows[0] == TSV_HEADER.split("\t") == ["index", "prediction"]
    assert rows[1:] == [[str(i), label] for i, label in zip(indices, spelled, strict=True)]


def test_stsb_scores_are_clipped_with_fixed_decimals() -> None:
    scores = [-0.4, -1e-9, 0.0, 2.34567, 4.99999, 5.0, 7.25]
    rows = parse_tsv(glue_tsv("stsb", "test", list(range(len(scores))), scores))
    assert [r[1] for r in rows[1:]] == ["0.000", "0.000", "0.000", "2.346", "5.000", "5.000", "5.000"]
    with pytest.raises(ValueError, match="not a finite score"):
        glue_tsv("stsb", "test", [0], [float("nan")])
    assert prediction_text(get_task("stsb"), 4.9996) == "5.000"


def test_bad_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="2 indices but 1 predictions"):
        glue_tsv("sst2", "test", [0, 1], [1])
    with pytest.raises(ValueError, match="repeated index"):
        glue_tsv("sst2", "test", [3, 3], [1, 0])
    with pytest.raises(ValueError, match="class id 3 outside"):
        glue_tsv("rte", "test", [0], [3])
    with pytest.raises(EffbertError, match="SQuAD predictions are JSON"):
        glue_tsv("squad_v1", "dev", [0], [0])


def test_zip_holds_the_files_at_its_root_and_is_reproducible() -> None:
    files = {
        "MRPC.tsv": glue_tsv("mrpc", "test", [0, 1], [1, 0]),
        "AX.tsv": glue_tsv("mnli", "test_ax", [0], [2]),
        "SST-2.tsv": glue_tsv("sst2", "test", [0], [1]),
    }
    blob = glue_zip(files)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == [n for n in GLUE_SERVER_FILES if n in files]  # server order, no folders
        assert all("/" not in n for n in names)
        assert {n: archive.read(n).decode("utf-8") for n in names} == files
    assert glue_zip(dict(reversed(files.items()))) == blob  # same files, same bytes
    with pytest.raises(ValueError, match=r"not GLUE server file names: SST-2\.dev\.tsv"):
        glue_zip({"SST-2.dev.tsv": files["SST-2.tsv"]})
    with pytest.raises(ValueError, match="no GLUE files"):
        glue_zip({})


def test_server_file_status() -> None:
    status = server_file_status(["SST-2.tsv", "squad_v1-dev-predictions.json", "MRPC.tsv", "SST-2.dev.tsv"])
    assert status["present"] == ["SST-2.tsv", "MRPC.tsv"]
    assert len(status["missing"]) == 9 and "AX.tsv" in status["missing"] and "SST-2.tsv" not in status["missing"]


def test_squad_predictions_keys_are_the_question_ids_in_order() -> None:
    ids = ["q2", "q1", "q3"]
    text = squad_predictions_json({"q1": "Denver Broncos", "q3": "", "q2": "Zürich"}, ids)
    loaded = json.loads(text)
    assert list(loaded) == ids and loaded == {"q1": "Denver Broncos", "q2": "Zürich", "q3": ""}
    with pytest.raises(ValueError, match=r"1 questions without an answer \(first: \['q3'\]\), 1 answers"):
        squad_predictions_json({"q1": "a", "q2": "b", "qx": "c"}, ids)
