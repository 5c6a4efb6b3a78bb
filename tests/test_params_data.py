"""Params are data, never code: a ``--set`` value or a profile is parsed as plain YAML data, whatever it tries.

A tag that would build a Python object (``!!python/object/apply:os.system``) is refused with one line naming the
key and nothing runs; an alias bomb ("billion laughs") is refused at once, before anything is expanded; a value
with a newline is still the value of its own key only.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

from effbert import params
from effbert.errors import ParamsError
from tests.conftest import BIN, ROOT, run_cli

SMOKE = ROOT / "params" / "smoke.yaml"
CODE = [
    ('!!python/object/apply:os.system ["touch pwned"]', "!!python/object/apply:os.system"),
    ("!!python/name:os.system", "!!python/name:os.system"),
    ('!!python/object/new:os.system ["touch pwned"]', "!!python/object/new:os.system"),
    ("!!python/module:os", "!!python/module:os"),
    ("!custom 1", "!custom"),
]


def _alias_bomb(levels: int = 10, width: int = 10) -> str:
    """A flow sequence whose aliases expand to ``width ** levels`` strings ("billion laughs")."""
    anchors = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    anchors += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    """Just enough of a workspace for `effbert run` to reach its params (dvc.yaml and .dvc/)."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    (tmp_path / ".dvc").mkdir()
    return tmp_path


@pytest.mark.parametrize(("value", "tag"), CODE, ids=[tag for _, tag in CODE])
def test_a_set_value_with_a_code_tag_is_refused_and_nothing_runs(
    value: str, tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError) as err:
        params.load(SMOKE, [f"seed={value}"])
    assert str(err.value) == f"--set seed: the YAML tag {tag!r} is not allowed (params are plain data)"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("command", ["run", "check-params"])
def test_the_cli_refuses_a_code_tag_in_one_line(command: str, workspace_dir: Path) -> None:
    value = 'seed=!!python/object/apply:os.system ["touch pwned"]'
    args = ["run", "--params", str(SMOKE)] if command == "run" else ["check-params", str(SMOKE)]
    result = run_cli(["effbert", *args, "--set", value], workspace_dir, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "effbert: error: --set seed: the YAML tag '!!python/object/apply:os.system' is not allowed "
        "(params are plain data)"
    ]
    assert not (workspace_dir / "pwned").exists() and not (workspace_dir / "params.yaml").exists()


def _capped_cli(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``effbert ARGS`` with its address space capped at 4 GiB and a minute to answer: an alias bomb that got
    through would end in a MemoryError or a timeout there, not take this machine's memory."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    result = subprocess.run(
        ["effbert", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, preexec_fn=cap
    )
    return result, time.perf_counter() - started


@pytest.mark.parametrize("command", ["run", "check-params"])
def test_an_alias_bomb_in_a_set_value_is_refused_at_once(command: str, workspace_dir: Path) -> None:
    args = ["run", "--params", str(SMOKE)] if command == "run" else ["check-params", str(SMOKE)]
    result, seconds = _capped_cli([*args, "--set", f"seed={_alias_bomb()}"], workspace_dir)
    assert result.returncode == 2 and seconds < 30, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "effbert: error: --set seed: the YAML holds more than 100,000 values once its aliases are expanded "
        "(anchors repeated by aliases: an alias bomb?)"
    ]
    with pytest.raises(ParamsError, match=r"^--set tasks: a YAML alias refers to the value that contains it"):
        params.load(SMOKE, ["tasks=&a [*a]"])


def test_an_alias_bomb_in_a_profile_is_refused_at_once(workspace_dir: Path) -> None:
    profile = workspace_dir / "bomb.yaml"
    lines = SMOKE.read_text(encoding="utf-8").splitlines()
    line = next(number for number, text in enumerate(lines, 1) if text.startswith("seed:"))
    lines[line - 1] = f"seed: {_alias_bomb()}"
    profile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for args in (["check-params", str(profile)], ["run", "--params", str(profile), "--set", "tasks=[sst2]"]):
        result, seconds = _capped_cli(args, workspace_dir)
        assert result.returncode == 2 and seconds < 30, result.stderr[-2000:]
        assert result.stderr.splitlines() == [
            f"effbert: error: {profile}:{line}: the YAML holds more than 100,000 values once its aliases are "
            "expanded (anchors repeated by aliases: an alias bomb?)"
        ]


def test_a_profile_with_a_code_tag_names_file_and_line(tmp_path: Path) -> None:
    profile = tmp_path / "tagged.yaml"
    profile.write_text("seed: 1\ntasks: !!python/object/apply:os.system [touch pwned]\n", encoding="utf-8")
    with pytest.raises(ParamsError) as err:
        params.read_yaml(profile)
    assert str(err.value) == (
        f"{profile}:2: the YAML tag '!!python/object/apply:os.system' is not allowed (params are plain data)"
    )


def test_anchors_and_merge_keys_within_bounds_still_load(tmp_path: Path) -> None:
    text = SMOKE.read_text(encoding="utf-8").replace("tasks: [", "tasks: &tasks [", 1)
    profile = tmp_path / "anchored.yaml"
    profile.write_text(text + "extra: {<<: {a: *tasks}, b: 1}\n", encoding="utf-8")
    raw = params.read_yaml(profile)
    assert raw["extra"] == {"a": raw["tasks"], "b": 1}
    assert params.safe_yaml("[&x [1, 2], *x]", "--set k") == [[1, 2], [1, 2]]


@pytest.mark.parametrize("value", ["1\\nmethods: []", "1\nmethods: []", "\nmethods: []", "1 # \nmethods: []"])
def test_a_newline_in_a_set_value_never_sets_another_key(value: str) -> None:
    raw = params.read_yaml(SMOKE)
    try:
        merged = params.apply_overrides(raw, [f"seed={value}"])
    except ParamsError as err:  # not YAML at all
        assert str(err).startswith("--set seed: value ")
        return
    assert merged["methods"] == raw["methods"] and set(merged) == set(raw)
    with pytest.raises(ParamsError, match=r"^params\.yaml: seed: Input should be a valid integer"):
        params.validate(merged)


def test_the_cli_refuses_a_newline_injection_naming_the_key(workspace_dir: Path) -> None:
    result = run_cli(["effbert", "run", "--params", str(SMOKE), "--set", "seed=1\\nmethods: []"], workspace_dir)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"effbert: error: {SMOKE} (with --set): seed: Input should be a valid integer"
    ]
    assert not (workspace_dir / "params.yaml").exists()
