"""``effbert run``: validate and write params.yaml, open the pipeline's MLflow run, run the DAG with DVC or Snakemake.

DVC (``dvc repro``) is the default engine: content-addressed caching, run-cache and ``dvc.lock``. Snakemake runs the
same DAG (its rules are generated from ``dvc.yaml``) in parallel or on a cluster; afterwards ``dvc commit -f``
records the results in ``dvc.lock`` so that both engines agree on what is up to date.

A SIGTERM or SIGINT (SLURM's preemption, Ctrl-C) is forwarded to the engine's process group: the running stage
stops at a safe point (`effbert.interrupt`), ``effbert run`` waits until the engine and its stages have exited,
marks its MLflow run KILLED and exits 143 or 130; the next ``effbert run`` continues from what was finished.

Before the engine starts, the runs that stages kept in their outputs' ``lineage.json`` while the tracking store was
unavailable are recorded into it (:func:`reconcile`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from effbert import interrupt, tracking, tracking_service, workspace
from effbert import params as params_mod
from effbert.errors import EffbertError

log = logging.getLogger(__name__)


def _tool(name: str) -> str:
    """An executable of the running environment (the venv's dvc/snakemake), falling back to PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["EFFBERT_ROOT"] = str(root)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def write_params(root: Path, params_file: Path, overrides: list[str]) -> params_mod.Params:
    """Merge ``params_file`` (a profile such as ``params/demo.yaml``) and ``overrides``, validate, and write the
    result to the workspace file ``root/params.yaml``, the one DVC reads.

    The profile itself is never written; the workspace file is left untouched (comments included) when it already
    spells out exactly these params.
    """
    validated = params_mod.load(params_file, overrides)
    validated = materialize_hub_sources(root, validated)
    target = root / "params.yaml"
    if target.is_file() and params_mod.read_yaml(target) == validated.model_dump(mode="json"):
        return validated  # already complete and equal: keep the file and its comments
    sets = "".join(f" --set {o}" for o in overrides)
    header = (
        f"# The workspace params (what DVC reads), written by `effbert run --params {params_file}{sets}`.\n"
        "# Edit a profile in params/ (or pass --set), not this file; every key of the schema is spelled out.\n"
    )
    params_mod.write_atomic(target, header + params_mod.dump(validated))
    return validated


def resolve_targets(root: Path, names: list[str]) -> tuple[list[str], list[str]]:
    """DVC targets and Snakemake output targets of the named stages (a family name selects all its instances).

    Raises:
        EffbertError: an unknown stage name.
    """
    if not names:
        return [], []
    from effbert import dag

    stages = dag.load_stages(root)
    dvc_targets: list[str] = []
    outputs: list[str] = []
    for name in names:
        chosen = [s for s in stages if name in (s.name, s.family)]
        if not chosen:
            known = sorted({s.family for s in stages})
            raise EffbertError(f"--target {name}: no such stage (known: {' '.join(known)})")
        dvc_targets += [s.address for s in chosen]
        outputs += [out for s in chosen for out in s.outs]
    return dvc_targets, outputs


def materialize_hub_sources(root: Path, p: params_mod.Params, out: str = "data/hub") -> params_mod.Params:
    """For every data source set to null, fetch it from the datasets hub into ``out`` in the official layout.

    The returned params point at the written files, so the DAG has one code path and DVC hashes the data.
    """
    if None not in (p.data.glue_dir, p.data.squad_dir, p.data.corpus):
        return p
    from effbert.data import hub

    print(f"effbert: fetching the null data sources from the datasets hub into {out}/")
    fetched = hub.fetch(p.data, p.tasks, root / out)
    relative = {
        key: str(Path(out) / Path(path).relative_to(root / out)) if Path(path).is_absolute() else path
        for key, path in fetched.items()
    }
    return p.model_copy(update={"data": p.data.model_copy(update=relative)})


def _stage_times(parent_run_id: str, configured_uri: str | None, root: Path) -> list[tuple[str, str, float]]:
    """(stage run name, status, seconds) of the child runs of this pipeline run, in start order."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.tracking_uri(configured_uri, root))
    runs = client.search_runs(
        experiment_ids=[client.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    )
    return [
        (r.info.run_name, r.info.status, ((r.info.end_time or r.info.start_time) - r.info.start_time) / 1000)
        for r in runs
    ]


def overhead_line(total: float, stage_seconds: list[float]) -> str:
    """How much of ``total`` the stages' own runs took, and the rest per stage (process start-up, imports, MLflow
    setup, the engine's hashing and lock file)."""
    inside = sum(stage_seconds)
    per_stage = (total - inside) / len(stage_seconds) if stage_seconds else 0.0
    return (
        f"Stage runs: {inside:.1f} s; outside them (start-up, tracking setup, engine hashing and lock): "
        f"{total - inside:.1f} s = {per_stage:.1f} s per stage"
    )


def _dvc_dry_run(root: Path, env: dict[str, str], targets: list[str]) -> int:
    """Print the stages ``dvc repro`` would run: those ``dvc status`` reports and all downstream of them. (``dvc
    repro --dry`` stops at the first dependency an upstream stage has not produced yet: DVC issue 9021.)"""
    import json

    from effbert import dag

    status = subprocess.run(
        [_tool("dvc"), "status", "--json", *targets], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if status.returncode != 0:
        sys.stderr.write(status.stderr)
        return status.returncode
    stages = [s for s in dag.load_stages(root) if not s.optional or s.address in targets or s.name in targets]
    planned = dag.would_run(stages, set(json.loads(status.stdout or "{}")) & {s.name for s in stages})
    print(f"effbert: dry run (dvc): {len(planned)} of {len(stages)} stages would run")
    for stage in planned:
        print(f"Would run stage '{stage.name}': {stage.cmd}")
    return 0


def run(
    params_file: Path,
    overrides: list[str],
    *,
    engine: str = "dvc",
    cores: int | None = None,
    profile: str | None = None,
    dry_run: bool = False,
    root: Path | None = None,
    targets: list[str] | None = None,
) -> int:
    """Run the whole DAG (or only ``targets`` and what they need); returns the engine's exit code.

    One run at a time per workspace: a second one (either engine, dry runs included, since they write
    ``params.yaml``) is refused at once, naming the holder (`effbert.workspace.run_lock`).
    """
    root = (root or Path.cwd()).resolve()
    if not (root / "dvc.yaml").is_file():
        raise EffbertError(f"{root}: no dvc.yaml here; run effbert from the project root")
    if not (root / ".dvc").is_dir():
        raise EffbertError(f"{root}: not a DVC repository (run `dvc init`, or `dvc init --no-scm` outside git)")
    with workspace.run_lock(root) as taken_over, interrupt.handled():  # until the engine runs: stop at once
        if taken_over:
            print(f"effbert: {taken_over}", file=sys.stderr)
        return _run_locked(
            root, params_file, overrides, engine=engine, cores=cores, profile=profile, dry_run=dry_run, targets=targets
        )


def _run_locked(
    root: Path,
    params_file: Path,
    overrides: list[str],
    *,
    engine: str,
    cores: int | None,
    profile: str | None,
    dry_run: bool,
    targets: list[str] | None,
) -> int:
    repaired = workspace.repair_lockfile(root)  # before anything reads dvc.lock (DVC, the Snakefile's stages)
    if repaired:
        print(f"effbert: warning: {repaired}", file=sys.stderr)
    for removed in [] if dry_run else workspace.remove_damaged_outputs(root):
        print(f"effbert: warning: {removed}", file=sys.stderr)
    p = write_params(root, params_file, overrides)
    env = _environment(root)
    dvc_targets, snakemake_targets = resolve_targets(root, targets or [])
    if engine == "dvc":
        cmd = [_tool("dvc"), "repro"] + (["--dry"] if dry_run else []) + dvc_targets
    else:
        cmd = [_tool("snakemake"), "--cores", str(cores) if cores else "all", "--snakefile", str(root / "Snakefile")]
        cmd += ["--workflow-profile", profile] if profile else []
        cmd += ["--dry-run"] if dry_run else []
        cmd += snakemake_targets
    if dry_run:
        if engine == "dvc":
            return _dvc_dry_run(root, env, dvc_targets)
        return subprocess.run(cmd, cwd=root, env=env, check=False).returncode
    started = time.perf_counter()
    os.environ["EFFBERT_ROOT"] = str(root)
    with tracking.pipeline_run(
        f"pipeline-{engine}",
        root / "params.yaml",
        experiment=p.tracking.experiment,
        configured_uri=p.tracking.tracking_uri,
    ) as parent:
        env[tracking.PARENT_ENV] = parent
        env[tracking_service.SOCKET_ENV] = os.environ[tracking_service.SOCKET_ENV]  # the stages' tracking calls
        reconcile(root, env, p.tracking.tracking_uri)
        print(f"effbert: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))} (MLflow run {parent})")
        code = interrupt.run_forwarding(cmd, cwd=root, env=env)  # SIGTERM, SIGINT: its stages stop, then we do
        if code == 0 and engine == "snakemake":
            # record what Snakemake produced in dvc.lock: the main pipeline, or the targets and their ancestors
            # (optional stages that were not asked for have no outputs to commit)
            scope = ["--with-deps", *dvc_targets] if dvc_targets else ["dvc.yaml"]
            cmd = [_tool("dvc"), "commit", "-f", "-q", *scope]
            code = subprocess.run(cmd, cwd=root, env=env, check=False).returncode
        if code != 0:
            raise EffbertError(
                f"the pipeline failed ({' '.join([Path(cmd[0]).name, *cmd[1:3]])} exit code {code}); "
                "see logs/ for the stage logs"
            )
    workspace.keep_good_lockfile(root)
    _print_summary(root, parent, p.tracking.tracking_uri, started)
    return code


def reconcile(root: Path, env: dict[str, str], configured_uri: str | None) -> None:
    """Record the runs that stages kept in their outputs' ``lineage.json`` while the tracking store was unavailable
    (`effbert.tracking.reconcile_pending`), one line per output; the stages of those outputs are recorded in
    ``dvc.lock`` again (only their ``lineage.json`` changed), so that DVC does not run them again."""
    done = tracking.reconcile_pending(root, configured_uri)
    for item in done:
        print(f"effbert: tracking: {item.line}" if item.recorded else f"effbert: warning: tracking: {item.line}")
    recorded = [item.directory.resolve() for item in done if item.recorded]
    if not recorded:
        return
    from effbert import dag

    def holds(out: str) -> bool:
        path = (root / out).resolve()
        return any(directory == path or path in directory.parents for directory in recorded)

    stages = [stage.address for stage in dag.load_stages(root) if any(holds(out) for out in stage.outs)]
    workspace.recommit_outputs(root, env, stages, _tool("dvc"))


def _print_summary(root: Path, parent: str, configured_uri: str | None, started: float) -> None:
    """The stages' wall times, the overhead around them, the dev metrics, the methods compared and the report."""
    times = _stage_times(parent, configured_uri, root)
    print(f"\nStages run: {len(times)} (wall time per stage)")
    for name, status, seconds in times:
        print(f"  {name:<40} {status:<9} {seconds:8.1f} s")
    total = time.perf_counter() - started
    print(f"Total: {total:.1f} s")
    print(overhead_line(total, [seconds for _, _, seconds in times]))
    summary = root / "results" / "eval_summary" / "summary.md"
    if summary.is_file():
        print("\nDev metrics (ours; see results/eval_summary/):\n" + summary.read_text(encoding="utf-8"))
    comparison = root / "results" / "eval_summary" / "comparison.md"
    if comparison.is_file():
        print("\nThe methods compared (results/eval_summary/comparison.md):\n" + comparison.read_text(encoding="utf-8"))
    report = root / "results" / "report" / "report.html"
    if report.is_file():  # last line of `make demo`: the report opens offline in any browser
        print(f"Report: {report} (Markdown: {report.with_suffix('.md')})")
