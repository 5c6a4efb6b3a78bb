"""Prepared data is checked before it is used: ``prepare_data`` and ``prepare_corpus`` seal their outputs
(``digests.json``), and a split whose Arrow file was flipped or cut short is refused in one line naming the file and
the stage to rerun, never loaded.

(`effbert run` removing such an output so that its stage runs again: tests/test_workspace.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from effbert.data.prepared import load_split
from effbert.errors import EffbertError
from effbert.integrity import DIGESTS, damage, read_digests
from tests.conftest import copy_project, corrupt, run_cli

OUTPUTS = {"prepare_data/sst2": "prepare_data@sst2", "prepare_corpus": "prepare_corpus"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with ``prepare_data@sst2`` and ``prepare_corpus`` run (smoke profile)."""
    project = copy_project(tmp_path_factory.mktemp("prepared") / "project")
    raw = yaml.safe_load((project / "params/smoke.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    for command in (["prepare-data", "--task", "sst2"], ["prepare-corpus"]):
        out = "results/prepare_data/sst2" if command[0] == "prepare-data" else "results/prepare_corpus"
        result = run_cli(["effbert", *command, "--out", out], project)
        assert result.returncode == 0, result.stderr[-2000:]
    return project


def test_the_prepare_stages_seal_their_outputs(prepared: Path) -> None:
    for output, stage in OUTPUTS.items():
        folder = prepared / "results" / output
        record, problem = read_digests(folder)
        assert problem is None and record is not None and record["stage"] == stage
        written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert set(record["files"]) == written - {DIGESTS, "lineage.json"}  # lineage.json comes after the seal
        assert "meta.json" in record["files"]
        assert damage(folder) is None


@pytest.mark.parametrize(
    ("output", "split", "how"),
    [
        ("prepare_data/sst2", "train", "flip"),
        ("prepare_data/sst2", "heldout", "truncate"),
        ("prepare_corpus", "corpus", "flip"),
        ("prepare_corpus", "corpus", "truncate"),
    ],
)
def test_a_damaged_split_is_refused_naming_the_file_and_the_stage(
    prepared: Path, tmp_path: Path, output: str, split: str, how: str
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(prepared / "results" / output, folder)
    (arrow,) = (folder / split).glob("*.arrow")
    reason = corrupt(arrow, how)
    with pytest.raises(EffbertError) as err:
        load_split(folder, split)
    assert str(err.value) == (
        f"{arrow}: {reason}: the prepared data in {folder} is damaged; rerun the stage that writes it: `effbert run` "
        f"(it removes a damaged output first) or `dvc repro --force {OUTPUTS[output]}`"
    )


def test_a_stage_given_damaged_data_fails_in_one_line_and_writes_nothing(prepared: Path) -> None:
    shutil.copytree(prepared / "results/prepare_data/sst2", prepared / "results/damaged")
    (arrow,) = (prepared / "results/damaged/train").glob("*.arrow")
    corrupt(arrow, "flip")
    outs = ["--model-out", "results/teacher", "--report-out", "results/teacher_report"]
    result = run_cli(["effbert", "finetune-teacher", "--task", "sst2", "--data", "results/damaged", *outs], prepared)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("effbert: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"effbert: error: {arrow.relative_to(prepared)}: changed since")
    assert errors[0].endswith("`dvc repro --force prepare_data@sst2`")
    assert not (prepared / "results/teacher").exists() and not list((prepared / "results").glob(".teacher*"))
