"""The house rules of the package, checked on the code itself: stages are recipes that never import each other, the
library never imports the stages or the commands, no module reaches into another's private names, no import cycle at
module level, no function over 80 lines, and the stage recipes stay small."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from effbert import code_deps

PACKAGE = code_deps.PACKAGE
MODULES = {
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted(PACKAGE.rglob("*.py"))
}
ORCHESTRATION = ("effbert.cli", "effbert.commands", "effbert.pipeline", "effbert.dag", "effbert.code_deps")
LIBRARY = tuple(
    f"effbert.{name}"
    for name in ("data", "eval", "training", "distill", "models", "measure", "export", "report", "methods")
)


def _imports(module: str) -> list[tuple[str, list[str], bool]]:
    """(imported module, names, at module level) of every import statement of ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in code_deps._import_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], id(node) in top) for alias in node.names]
        else:
            base = code_deps._absolute(node, module, MODULES[module].name == "__init__.py")
            found.append((base, [alias.name for alias in node.names], id(node) in top))
    return found


def test_no_stage_imports_another_stage() -> None:
    for module in MODULES:
        if not module.startswith("effbert.stages."):
            continue
        for imported, names, _ in _imports(module):
            targets = [imported, *(f"{imported}.{n}" for n in names)]
            others = [t for t in targets if t in MODULES and t.startswith("effbert.stages.") and t != module]
            others = [t for t in others if MODULES[t].name != "__init__.py"]
            assert not others, f"{module} imports the stage module {others[0]}"


def test_the_library_never_imports_stages_or_commands() -> None:
    for module in MODULES:
        if not module.startswith(LIBRARY):
            continue
        for imported, _, _ in _imports(module):
            assert not imported.startswith(("effbert.stages", *ORCHESTRATION)), f"{module} imports {imported}"


def test_no_private_name_crosses_a_module_boundary() -> None:
    for module in MODULES:
        for imported, names, _ in _imports(module):
            if imported.startswith("effbert"):
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                assert not private, f"{module} imports {imported}.{private[0]}"


def test_no_import_cycle_at_module_level() -> None:
    graph = {
        module: {imp for imp, _, top in _imports(module) if top and imp in MODULES and imp != module}
        for module in MODULES
    }
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_no_function_is_longer_than_80_lines() -> None:
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                if node.end_lineno is not None and node.end_lineno - first + 1 > 80:
                    long.append(f"{module}.{node.name}: {node.end_lineno - first + 1} lines")
    assert not long, long


COMPARED_METHODS = ("tinybert", "theseus", "dynabert", "fastbert")


def test_stage_recipes_stay_small() -> None:
    """Recipes stay thin: the shared stages and EfficientBERT's together, and each compared method's alone."""

    def lines(paths: Iterable[Path]) -> int:
        return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)

    stages = PACKAGE / "stages"
    own = [p for p in stages.rglob("*.py") if p.parent.name not in COMPARED_METHODS]
    assert lines(own) < 2500, f"effbert/stages/ (shared + efficientbert) holds {lines(own)} lines: move logic down"
    for method in COMPARED_METHODS:
        count = lines((stages / method).glob("*.py"))
        assert count < 400, f"effbert/stages/{method}/ holds {count} lines: move library logic down"


def test_every_stage_recipe_declares_its_params() -> None:
    from effbert.cli import COMMANDS

    reads_no_params = ("predict", "code-digest", "dynabert-extract")
    for name, target in COMMANDS.items():
        if target.startswith("effbert.stages.") and name not in reads_no_params:
            keys = code_deps.declared_params(name)
            assert keys and all(isinstance(k, str) for k in keys), name


def test_every_module_says_what_it_is() -> None:
    missing = [m for m, p in MODULES.items() if ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None]
    assert not missing, missing
