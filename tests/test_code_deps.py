"""Code dependencies that cannot be wrong: every stage lists exactly the effbert files its command imports, and
exactly the params keys its recipe declares (and logs to MLflow)."""

from __future__ import annotations

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


def test_pipeline_files_list_the_import_closure() -> None:
    assert code_deps.check(ROOT) == []  # fix with: effbert code-deps --write


def test_every_resolved_stage_lists_exactly_its_code(stages: list[dag.StageSpec]) -> None:
    for stage in stages:
        listed = sorted(d for d in stage.deps if d.startswith("effbert/"))
        assert listed == code_deps.command_files(_command(stage)), stage.name
        module = COMMANDS[_command(stage)].split(":")[0].replace(".", "/") + ".py"
        assert module in listed  # its own recipe, at least


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


def test_code_deps_command_reports_a_missing_module(project: Path) -> None:
    dvc_yaml = project / "dvc.yaml"
    text = dvc_yaml.read_text(encoding="utf-8")
    dvc_yaml.write_text(text.replace("        - effbert/data/qa_features.py\n", "", 1), encoding="utf-8")
    result = run_cli(["effbert", "code-deps"], project)
    assert result.returncode == 1 and "missing ['effbert/data/qa_features.py']" in result.stdout
    fixed = run_cli(["effbert", "code-deps", "--write"], project)
    assert fixed.returncode == 0 and dvc_yaml.read_text(encoding="utf-8") == text
