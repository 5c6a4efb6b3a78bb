"""Code dependencies that cannot be wrong: every stage depends on the digest of exactly the effbert files its command
imports (written by the code_digest stage), and on exactly the params keys its recipe declares (and logs to MLflow)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from effbert import code_deps, dag
from effbert.cli import COMMANDS
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def stages() -> list[dag.StageSpec]:
    return dag.load_stages(ROOT)


def _command(stage: dag.StageSpec) -> str:
    words = stage.cmd.split()
    assert words[0] == "effbert" and words[1] in COMMANDS, stage.cmd
    return words[1]


def test_every_stage_depends_on_its_command_code_digest(stages: list[dag.StageSpec]) -> None:
    digest_stage = next(stage for stage in stages if stage.name == "code_digest")
    assert digest_stage.deps == ("effbert",) and digest_stage.outs == ("results/code",)
    for stage in stages:
        if stage is digest_stage:
            continue
        assert not [d for d in stage.deps if d.startswith("effbert")], stage.name  # no hand-kept file lists
        assert [d for d in stage.deps if d.startswith("results/code/")] == [f"results/code/{_command(stage)}.json"]
    commands = {_command(stage) for stage in stages if stage is not digest_stage}
    # every command of dvc.yaml runs in the workspace profile (demo) but TinyBERT's augmentation, off there
    assert set(code_deps.pipeline_commands(ROOT)) - commands == {"tinybert-augment"}


def test_code_digest_hashes_the_import_closure() -> None:
    digest = code_deps.code_digest("evaluate", ROOT)
    assert digest["command"] == "evaluate" and list(digest["files"]) == code_deps.command_files("evaluate")
    module = "effbert/stages/evaluate.py"
    assert digest["files"][module] == hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


def test_every_stage_tracks_exactly_the_params_its_recipe_reads(stages: list[dag.StageSpec]) -> None:
    for stage in stages:
        assert sorted(stage.params) == sorted(code_deps.declared_params(_command(stage))), stage.name


def test_closure_follows_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    files = code_deps.command_files("evaluate")
    # evaluate's recipe imports these inside its function body; the SQuAD post-processing comes through scoring
    for needed in ("effbert/eval/evaluation.py", "effbert/models/auto.py", "effbert/data/qa_features.py"):
        assert needed in files
    # the student model: loaded through the Auto classes, registered by models.auto
    assert "effbert/methods/efficientbert/modeling_effbert.py" in files
    assert "effbert/methods/efficientbert/architectures/efficientbert.json" in files  # declared package data
    assert "effbert/stages/report.py" not in files and "effbert/commands.py" not in files
    teacher_only = code_deps.command_files("finetune-teacher")
    assert not any(f.startswith("effbert/methods/") for f in teacher_only)  # no student code


def test_every_package_data_file_is_declared() -> None:
    declared = {
        path
        for py in code_deps.PACKAGE.rglob("*.py")
        for path in code_deps.package_data(
            ".".join(py.relative_to(code_deps.PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        )
    }
    data = {p for p in code_deps.PACKAGE.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert data <= declared, sorted(str(p) for p in data - declared)


def test_code_deps_command_prints_a_closure_and_refuses_unknown_commands(project: Path) -> None:
    result = run_cli(["effbert", "code-deps", "eval-summary"], project)
    assert result.returncode == 0 and result.stdout.splitlines()[0].startswith("eval-summary: ")
    assert "  effbert/stages/eval_summary.py" in result.stdout.splitlines()
    unknown = run_cli(["effbert", "code-deps", "no-such"], project)
    assert unknown.returncode == 2 and "code-deps no-such: not an effbert command" in unknown.stderr
