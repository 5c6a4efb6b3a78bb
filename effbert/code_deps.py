"""Every stage's code dependencies, computed from the code: the effbert files its command imports.

DVC hashes only what a stage lists in ``deps``, so a stage must depend on every effbert module its command runs, or
an edit to one of them leaves a stale result "up to date". A stage runs ``effbert <command> ...``; its code is the
import closure of `effbert.cli` and of the command's module (`effbert.cli.COMMANDS`): every ``import`` and ``from
... import`` of an effbert module anywhere in a module (imports inside functions included, ``if TYPE_CHECKING:``
blocks left out), every package ``__init__.py`` on the way, and the package data files a module declares in a
module-level ``PACKAGE_DATA`` tuple (globs relative to its folder).

The ``code_digest`` stage (deps: the whole ``effbert`` folder) writes :func:`code_digest` of every command the
pipeline files run to ``results/code/<command>.json``, and each stage depends on its command's file: an edit reruns
``code_digest`` (seconds) and then exactly the stages whose closure changed. One small file per stage instead of a
list of ~50 files keeps ``dvc.lock`` small, which DVC parses and rewrites after every stage.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE = Path(__file__).resolve().parent
"""The effbert package folder."""

PIPELINE_FILES = ("dvc.yaml", "workflow/optional/dvc.yaml")
"""The pipeline files whose stages run effbert commands."""

ENTRY_MODULES = ("effbert", "effbert.cli")
"""What every ``effbert`` command imports before its own module."""


def module_path(name: str) -> Path | None:
    """The file of effbert module ``name`` (a package's ``__init__.py``), None when there is none."""
    parts = name.split(".")
    if parts[0] != "effbert":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, at any depth, except inside ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module of a (possibly relative) ``from`` import inside ``module``."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The effbert modules ``module`` imports (statically), including the submodules named by ``from X import y``."""
    path = module_path(module)
    if path is None:
        return frozenset()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = _absolute(node, module, path.name == "__init__.py")
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names if module_path(f"{base}.{alias.name}"))
    return frozenset(name for name in found if module_path(name) is not None)


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def closure(modules: Iterable[str]) -> set[str]:
    """Every effbert module that importing ``modules`` can import, their parent packages included."""
    seen: set[str] = set()
    todo = [parent for module in modules for parent in _with_parents(module)]
    while todo:
        module = todo.pop()
        if module in seen or module_path(module) is None:
            continue
        seen.add(module)
        todo.extend(parent for name in direct_imports(module) for parent in _with_parents(name))
    return seen


def package_data(module: str) -> list[Path]:
    """The files a module declares it reads from its package folder (``PACKAGE_DATA = ("x/*.json",)``)."""
    path = module_path(module)
    if path is None:
        return []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "PACKAGE_DATA" for t in targets) and node.value is not None:
                globs = ast.literal_eval(node.value)
                return sorted(f for pattern in globs for f in path.parent.glob(pattern) if f.is_file())
    return []


def command_files(command: str) -> list[str]:
    """The files (relative to the project root, ``effbert/...``) that ``effbert <command>`` runs."""
    from effbert.cli import command_module

    modules = closure([*ENTRY_MODULES, command_module(command)])
    files = {module_path(m) for m in modules} | {f for m in modules for f in package_data(m)}
    root = PACKAGE.parent
    return sorted(f.relative_to(root).as_posix() for f in files if f is not None)


def declared_params(command: str) -> tuple[str, ...]:
    """The params keys the recipe of ``effbert <command>`` declares it reads (its module's ``PARAMS``: a tuple, or a
    mapping by command for a module with several commands)."""
    import importlib

    from effbert.cli import command_module

    declared = importlib.import_module(command_module(command)).PARAMS
    return tuple(declared[command] if isinstance(declared, dict) else declared)


def stage_commands(pipeline: Path) -> dict[str, str]:
    """Stage name -> its ``effbert`` subcommand, from the pipeline file's (uninterpolated) ``cmd``."""
    stages = (yaml.safe_load(pipeline.read_text(encoding="utf-8")) or {}).get("stages", {})
    commands = {}
    for name, stage in stages.items():
        cmd = str((stage.get("do") or stage).get("cmd", ""))
        words = cmd.split()
        if len(words) >= 2 and words[0] == "effbert":
            commands[name] = words[1]
    return commands


def pipeline_commands(root: Path) -> list[str]:
    """Every ``effbert`` subcommand a stage of the pipeline files runs, sorted."""
    commands = {c for name in PIPELINE_FILES if (root / name).is_file() for c in stage_commands(root / name).values()}
    return sorted(commands - {"code-digest"})


def code_digest(command: str, root: Path) -> dict[str, Any]:
    """What ``effbert <command>`` runs: ``{"command", "files": {path: sha256}}`` over :func:`command_files`, the
    files hashed as they are in the project ``root`` (the folder DVC tracks; normally the imported package)."""
    files = {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in command_files(command)}
    return {"command": command, "files": files}
