"""The DAG as ``dvc.yaml`` defines it, in plain records the Snakefile turns into rules.

``dvc.yaml`` is the only definition of the stages. DVC resolves it (``foreach``/``matrix`` expanded, ``${}``
interpolated); :func:`load_stages` reads that resolved view, and :func:`snakemake_inputs` maps each dependency
onto the outputs that produce it, so Snakemake sees exactly DVC's graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from effbert import code_deps


@dataclass(frozen=True)
class StageSpec:
    """One resolved DVC stage.

    Attributes:
        name: DVC address (``finetune_teacher@sst2``, ``evaluate@teacher-sst2``).
        family: the stage name before ``@`` (``finetune_teacher``).
        cmd: the shell command.
        deps: dependency paths as written in dvc.yaml (relative to the project root).
        outs: output paths.
        params: tracked params, dotted key -> value (whole sections map to their dict).
    """

    name: str
    family: str
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    dvcfile: str = "dvc.yaml"

    @property
    def optional(self) -> bool:
        """Defined in an optional pipeline file (``workflow/optional/dvc.yaml``): run only when asked for."""
        return self.dvcfile != "dvc.yaml"

    @property
    def address(self) -> str:
        """The stage's DVC target (``name``, or ``file:name`` for an optional stage)."""
        return f"{self.dvcfile}:{self.name}" if self.optional else self.name

    @property
    def rule(self) -> str:
        """A Snakemake-safe rule name (``finetune_teacher_sst2``)."""
        return re.sub(r"\W", "_", self.name)

    @property
    def command(self) -> str:
        """The ``effbert`` subcommand the stage runs (``finetune-teacher``)."""
        return self.cmd.split()[1]

    @property
    def is_training(self) -> bool:
        """Whether the stage trains (a GPU job under SLURM: `effbert.launch.trains`)."""
        from effbert.launch import trains

        return trains(self.cmd.split()[1:])

    @property
    def is_ddp(self) -> bool:
        """Whether the stage trains on several processes when ``launch`` asks (`effbert.launch.trains_distributed`)."""
        from effbert.launch import trains_distributed

        return trains_distributed(self.cmd.split()[1:])

    def threads(self, cores: int) -> int:
        """The CPU cores a job of this stage reserves (Snakemake passes them on as ``OMP_NUM_THREADS``, torch's
        default thread count), so that stages run side by side only where their params say they fit.

        Every one of ``cores`` for a stage that times models (it tracks a ``latency`` protocol, such as ``latency``
        or ``search.latency``: alone, its figures are not disturbed by a neighbour), for one that tracks no
        ``threads`` key, and for one that leaves a tracked ``threads`` key null (torch's default: every core);
        otherwise its largest ``threads`` value, at most ``cores``. Per-task overrides count for every task (a null
        one inherits, so it is skipped).
        """
        values = [value for key, section in self.params.items() for value in _threads_values(key, section)]
        counts = [value for value in values if value is not None]
        if not counts or len(counts) < len(values):
            return cores
        return max(1, min(cores, max(counts)))


def _threads_values(key: str, node: Any, *, in_overrides: bool = False) -> list[int | None]:
    """Every ``threads`` value under the tracked param ``key`` (a dict for a whole section), None meaning every core:
    a null ``threads`` (torch's default) or a ``latency`` protocol (the stage times models, so it runs alone); a null
    ``threads`` in ``task_overrides`` inherits, so it is left out."""
    name = key.rsplit(".", 1)[-1]
    if name == "latency":
        return [None]
    if name == "threads":
        return [] if node is None and in_overrides else [node]
    if not isinstance(node, dict):
        return []
    overrides = in_overrides or name == "task_overrides"
    return [v for sub, child in node.items() for v in _threads_values(f"{key}.{sub}", child, in_overrides=overrides)]


def train_nodes(root: Path) -> int:
    """``launch.nodes`` of the workspace ``params.yaml`` (1 when it has none): the nodes a SLURM training job asks."""
    import yaml

    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    launch = data.get("launch") if isinstance(data, dict) else None
    nodes = launch.get("nodes", 1) if isinstance(launch, dict) else 1
    return nodes if isinstance(nodes, int) and nodes > 0 else 1


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        node = node[part]
    return node


def load_stages(root: Path) -> list[StageSpec]:
    """Every stage of the project's pipeline files (``dvc.yaml``, then optional ones) as DVC resolves them."""
    import yaml
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    values = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    specs = []
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            if not getattr(stage, "cmd", None):
                continue
            params: dict[str, Any] = {}
            deps = []
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    for key in dep.params or list(dep.read_params()):
                        params[key] = _lookup(values, key)
                else:
                    deps.append(str(dep.def_path))
            name = stage.name  # e.g. finetune_teacher@sst2 (addressing would be relative to the cwd)
            specs.append(
                StageSpec(
                    name=name,
                    family=name.split("@", 1)[0],
                    cmd=stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd),
                    deps=tuple(deps),
                    outs=tuple(str(out.def_path) for out in stage.outs),
                    params=params,
                    dvcfile=Path(stage.path).resolve().relative_to(root.resolve()).as_posix(),
                )
            )
    return specs


def is_directory_out(path: str) -> bool:
    """effbert's stage outputs are directories; a path with a file suffix is a file."""
    return PurePosixPath(path).suffix == ""


def _inside(child: str, parent: str) -> bool:
    return PurePosixPath(child).is_relative_to(PurePosixPath(parent))


def snakemake_inputs(stage: StageSpec, stages: list[StageSpec], root: Path | None = None) -> list[str]:
    """The rule inputs of ``stage``: each dep, or the outputs that produce it.

    A dep inside another stage's output directory becomes that output; a dep that is a parent of other stages'
    outputs (``results/eval``) becomes all of them. Source deps (code, raw data) stay as they are, except that with
    ``root`` a source directory becomes its files (bytecode left out): Snakemake's mtime trigger sees an edited file
    only as an input of its own (a directory's mtime changes when entries come and go, not when one is edited). For
    the same reason, with ``root`` a command's code digest (``results/code/<command>.json``, what DVC compares)
    becomes the files it hashes, so Snakemake reruns a rule when one of them is newer, not whenever ``code_digest``
    ran.
    """
    outs = [out for other in stages if other is not stage for out in other.outs]
    inputs: list[str] = []
    for dep in stage.deps:
        if root is not None and PurePosixPath(dep).parent == PurePosixPath(CODE_DIGESTS):
            inputs += [f for f in code_deps.command_files(PurePosixPath(dep).stem) if f not in inputs]
            continue
        producers = [out for out in outs if _inside(dep, out) or _inside(out, dep)]
        for item in producers or _source_files(dep, root):
            if item not in inputs:
                inputs.append(item)
    return inputs


CODE_DIGESTS = "results/code"
"""Where the ``code_digest`` stage writes one ``<command>.json`` per pipeline command."""


def _source_files(dep: str, root: Path | None) -> list[str]:
    """``dep``'s files (sorted, relative like ``dep``) when ``root / dep`` is a directory, else ``[dep]``."""
    folder = root / dep if root is not None else None
    if folder is None or not folder.is_dir():
        return [dep]
    files = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted(str(PurePosixPath(dep) / p.relative_to(folder).as_posix()) for p in files) or [dep]


def edges(stages: list[StageSpec]) -> set[tuple[str, str]]:
    """(upstream, downstream) stage pairs implied by the paths, as DVC derives them."""
    result = set()
    for stage in stages:
        for other in stages:
            if other is stage:
                continue
            if any(_inside(dep, out) or _inside(out, dep) for dep in stage.deps for out in other.outs):
                result.add((other.name, stage.name))
    return result


def would_run(stages: list[StageSpec], changed: set[str]) -> list[StageSpec]:
    """The stages a run would execute: the ``changed`` ones (what ``dvc status`` reports) and everything downstream
    of them, in ``stages`` order (DVC's ``repro --dry`` cannot plan past an output that does not exist yet)."""
    downstream: dict[str, set[str]] = {}
    for upstream, stage in edges(stages):
        downstream.setdefault(upstream, set()).add(stage)
    todo, planned = list(changed), set(changed)
    while todo:
        for stage in downstream.get(todo.pop(), ()):
            if stage not in planned:
                planned.add(stage)
                todo.append(stage)
    return [stage for stage in stages if stage.name in planned]
