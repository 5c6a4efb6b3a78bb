"""The ``effbert`` commands that are not DAG stages: ``run`` (the pipeline), ``chaos`` (the pipeline under random
SIGKILLs), ``check-params``, ``fetch-data``, ``lineage``, ``bench``, ``init-student`` and ``code-deps``. Heavy
imports happen inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from effbert.errors import EffbertError
from effbert.runtime import load_params, params_option


@click.command("run")
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a dotted key (YAML value).")
@click.option("--engine", type=click.Choice(["dvc", "snakemake"]), default="dvc", show_default=True)
@click.option("--cores", type=int, default=None, help="Parallel jobs (snakemake); default: all cores.")
@click.option("--profile", default=None, help="Snakemake workflow profile directory (e.g. workflow/profiles/slurm).")
@click.option("--dry-run", is_flag=True, help="Validate and show what would run, run nothing.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="STAGE",
    help="Run only this stage and what it needs (repeatable); optional stages such as search_quality run only so.",
)
def run_command(
    params_file: str,
    overrides: tuple[str, ...],
    engine: str,
    cores: int | None,
    profile: str | None,
    dry_run: bool,
    targets: tuple[str, ...],
) -> None:
    """Validate the merged params, write them to params.yaml and run the DAG (DVC or Snakemake)."""
    from effbert import pipeline

    code = pipeline.run(
        Path(params_file),
        list(overrides),
        engine=engine,
        cores=cores,
        profile=profile,
        dry_run=dry_run,
        targets=list(targets),
    )
    sys.exit(code)


@click.command("chaos")
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a dotted key (YAML value).")
@click.option("--engine", type=click.Choice(["dvc", "snakemake"]), default="dvc", show_default=True)
@click.option("--target", "targets", multiple=True, metavar="STAGE", help="As effbert run's --target (repeatable).")
@click.option("--kills", type=click.IntRange(min=0), default=20, show_default=True, help="SIGKILLs to send in all.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the choice of victims and moments.")
@click.option(
    "--delay",
    nargs=2,
    type=float,
    default=(0.5, 6.0),
    show_default=True,
    help="Seconds after a process appears before it is killed, drawn uniformly from [MIN, MAX].",
)
@click.option(
    "--reference",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="A workspace the same params ran in without faults: its results must equal this run's.",
)
def chaos_command(
    params_file: str,
    overrides: tuple[str, ...],
    engine: str,
    targets: tuple[str, ...],
    kills: int,
    seed: int,
    delay: tuple[float, float],
    reference: str | None,
) -> None:
    """Run the pipeline while SIGKILL hits its stage processes at random moments; restart it until it completes;
    then check nothing was lost (leftovers, tracking runs, and with --reference: metrics, halls of fame, weights)."""
    import subprocess

    from effbert import chaos, dag, tracking
    from effbert.launch import POOLED_COMMANDS
    from effbert.params import load

    params = load(Path(params_file), list(overrides))
    settings = params.tracking
    root = tracking.project_root()
    line = ["effbert", "run", "--params", params_file, "--engine", engine]
    line += [arg for value in overrides for arg in ("--set", value)] + [a for t in targets for a in ("--target", t)]
    dry = subprocess.run([*line, "--dry-run"], cwd=root, capture_output=True, text=True, check=False)
    if dry.returncode != 0:  # the params are checked (and params.yaml written) before any kill
        raise EffbertError(
            dry.stderr.strip().splitlines()[-1] if dry.stderr.strip() else "effbert run --dry-run failed"
        )
    stages = dag.load_stages(root)
    commands = {stage.command for stage in stages}
    expected = {s.command for s in stages if not s.optional and (not targets or s.name in targets)}
    if params.search.workers > 1:  # their workers are a kind of their own
        expected |= {command + chaos.WORKER_SUFFIX for command in POOLED_COMMANDS & expected}

    def report(kill: chaos.Kill) -> None:
        click.echo(f"effbert chaos: SIGKILL {kill.label} (run {kill.attempt}, {kill.after_seconds:.1f} s in)", err=True)

    trace_path = root / "logs" / "chaos.log"
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    with trace_path.open("w", encoding="utf-8", buffering=1) as trace_file:
        outcome = chaos.run_with_kills(
            line,
            root,
            kills=kills,
            seed=seed,
            commands=commands,
            expected_kinds=expected,
            delays=delay,
            on_kill=report,
            trace=lambda text: print(text, file=trace_file),
        )
    problems = [f"left behind: {path}" for path in chaos.leftovers(root)]
    running = tracking.running_runs(settings.tracking_uri, settings.experiment)
    problems += [f"tracking run {run} still RUNNING" for run in running]
    if reference is not None:
        problems += chaos.compare_results(root / "results", Path(reference) / "results")
    click.echo(chaos.summary(outcome, problems) + f"\neffbert chaos: every process seen and decision: {trace_path}")
    sys.exit(0 if outcome.returncode == 0 and not problems else 1)


@click.command("check-params")
@click.argument("params_file", default="params.yaml", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a dotted key (YAML value).")
def check_params_command(params_file: str, overrides: tuple[str, ...]) -> None:
    """Validate a params file (with `effbert run`'s --set overrides) against the schema; print the resolved values."""
    from effbert import params

    click.echo(params.dump(params.load(params_file, overrides)), nl=False)


@click.command("fetch-data")
@params_option
@click.option("--out", default="data/hub", show_default=True, type=click.Path(file_okay=False))
def fetch_data_command(params_file: str, out: str) -> None:
    """Materialise every data source set to null (data.glue_dir, data.squad_dir, data.corpus) from the hub.

    Writes the official file layout under OUT and prints the params to point at it; `effbert run` does this
    by itself when a source is null.
    """
    from effbert import pipeline, tracking

    p = load_params(params_file)
    updated = pipeline.materialize_hub_sources(tracking.project_root(), p, out)
    for key in ("glue_dir", "squad_dir", "corpus"):
        click.echo(f"data.{key}: {getattr(updated.data, key)}")


@click.command("lineage")
@click.argument("target")
@click.option("--depth", type=int, default=20, show_default=True, help="How many stages upstream to follow.")
def lineage_command(target: str, depth: int) -> None:
    """Explain which stages, runs, params, data and code produced an artifact, a metric or an MLflow run.

    TARGET is a path inside a stage output (e.g. results/eval/teacher/sst2/metrics.json) or a run id.
    """
    from effbert import lineage

    click.echo(lineage.explain(target, depth=depth))


@click.command("corpus-memory")
@params_option
@click.option("--scales", default="1,5,20", show_default=True, help="Comma-separated corpus sizes, in copies.")
@click.option("--num-proc", type=int, default=None, help="Tokenising processes  [default: data.num_proc]")
def corpus_memory_command(params_file: str, scales: str, num_proc: int | None) -> None:
    """Peak memory of corpus preparation at growing corpus sizes (copies of data.corpus), one process per size.

    Anonymous memory (what the preparation holds) must stay flat as the corpus grows; the resident set size also
    counts the memory-mapped Arrow files read back (reclaimable page cache)."""
    from effbert import tracking
    from effbert.measure.corpus_memory import measure_scale
    from effbert.models.teacher import teacher_source

    params = load_params(params_file)
    if params.data.corpus is None:
        raise click.UsageError("data.corpus is null: run `effbert fetch-data` first")
    source = tracking.project_root() / params.data.corpus
    procs = num_proc or params.data.num_proc
    click.echo(f"corpus {source}, data.max_seq_length {params.data.max_seq_length}, {procs} tokenising process(es)")
    click.echo(
        f"{'scale':>5} {'corpus MB':>9} {'documents':>9} {'sequences':>9} {'seconds':>7} {'anon before':>11} "
        f"{'anon peak':>9} {'anon growth':>11} {'RSS before':>10} {'RSS peak':>8} {'workers RSS':>11}  (MiB)"
    )
    for scale in (int(s) for s in scales.split(",")):
        f = measure_scale(source, scale, teacher_source(params), params.data.max_seq_length, procs)
        click.echo(
            f"{f.scale:>5} {f.corpus_mb:>9.1f} {f.documents:>9} {f.sequences:>9} {f.seconds:>7.1f} "
            f"{f.baseline_anon_mb:>11.0f} {f.peak_anon_mb:>9.0f} {f.peak_anon_mb - f.baseline_anon_mb:>11.0f} "
            f"{f.baseline_rss_mb:>10.0f} {f.peak_rss_mb:>8.0f} {f.workers_peak_rss_mb:>11.0f}"
        )


@click.command("estimate")
@params_option
@click.option("--results", default="results", show_default=True, help="Where prepared data is looked up for sizes.")
@click.option("--no-measure", is_flag=True, help="Steps and sequences only: no timed steps, no hours.")
@click.option("--steps", type=int, default=3, show_default=True, help="Timed steps per step kind.")
@click.option("--device", default=None, help="torch device  [default: cuda if available, else cpu]")
def estimate_command(params_file: str, results: str, no_measure: bool, steps: int, device: str | None) -> None:
    """What the profile costs: optimisation steps and sequences per training stage, and (from steps timed on this
    machine at the profile's sizes) device-hours, peak memory per device and the prepared data's disk."""
    from effbert.data.prepared import corpus_meta as read_corpus_meta
    from effbert.data.prepared import prepared_train_rows
    from effbert.measure import cost

    params = load_params(params_file)
    prepared = prepared_train_rows(Path(results) / "prepare_data", params.tasks)
    corpus_meta = read_corpus_meta(Path(results) / "prepare_corpus")
    sizes = cost.data_sizes(params, prepared, corpus_meta.get("sequences"), raw_corpus_bytes(params))
    stages = cost.plan(params, sizes)
    times = {}
    if not no_measure:
        from effbert.measure.step_time import measure_step_times

        batches: dict[str, int] = {}
        for stage in stages:
            batches.setdefault(stage.step, stage.batch)
        times = measure_step_times(params, batches, steps=steps, device=device)
    click.echo(cost_report(params, sizes, stages, times, corpus_meta))


def raw_corpus_bytes(params: Any) -> int | None:
    """The size of ``data.corpus`` on this machine (its *.txt/*.raw files), None when it is not here."""
    from effbert import tracking
    from effbert.data.corpus import corpus_size

    if params.data.corpus is None:
        return None
    path = tracking.project_root() / params.data.corpus
    return corpus_size(path) if path.exists() else None


def cost_report(params: Any, sizes: Any, stages: list[Any], times: dict[str, Any], corpus_meta: dict[str, Any]) -> str:
    """The estimate as text: one row per training stage, the totals, the corpus arithmetic and the disk."""
    from effbert.measure import cost

    gpus = params.launch.train_gpus
    lines = [
        f"{'stage':<34} {'steps':>9} {'sequences':>13} {'procs x batch':>13} {'device-hours':>12} {'peak MiB':>9}",
    ]
    total = 0.0
    for stage in stages:
        step = times.get(stage.step)
        hours = stage.steps * step.ms_at(stage.batch) * stage.processes * stage.repeats / 3.6e6 if step else None
        total += hours or 0.0
        peak = f"{step.peak_mib:.0f}" if step and step.peak_mib is not None else "-"
        shape = f"{stage.processes} x {stage.batch}" + (f" x{stage.repeats}" if stage.repeats > 1 else "")
        lines.append(
            f"{stage.stage:<34} {stage.steps:>9,} {stage.sequences:>13,} {shape:>13} "
            f"{'-' if hours is None else f'{hours:,.1f}':>12} {peak:>9}"
        )
    if times:
        lines.append(f"total: {total:,.1f} device-hours (steps timed here; a search stage prices every candidate)")
        for kind, step in times.items():
            lines.append(f"  step {kind}: {step.ms:.1f} ms at batch {step.batch} per process")
    sources = ", ".join(f"{k} {v}" for k, v in sizes.source.items())
    lines.append(f"data sizes: {sources}")
    mean = float(corpus_meta.get("mean_length", 0.0))
    packed = sizes.corpus_sequences
    if packed >= cost.OFFICIAL_INSTANCES // 10:  # a corpus of the paper's order: its epochs in the paper's steps
        lines.append(
            f"corpus: {packed:,} packed rows; the official builder makes {cost.OFFICIAL_INSTANCES:,} per epoch, so the "
            f"paper's 10 epochs are {cost.paper_equivalent_epochs(10.0, packed):.2f} epochs here "
            f"(warmup_kd.epochs {params.warmup_kd.epochs:g}, final_distill.general.epochs "
            f"{params.final_distill.general.epochs:g}){f', mean row {mean:.1f} tokens' if mean else ''}"
        )
    rows = sum(sizes.train_rows.values()) + packed
    disk = rows * params.data.max_seq_length * 3 * 8 / 2**30
    lines.append(
        f"prepared data: at most {disk:,.1f} GiB ({rows:,} rows x up to {params.data.max_seq_length} tokens x 3 "
        f"int64 columns); {gpus} process(es) per training stage"
    )
    return "\n".join(lines)


@click.command("bench")
@click.option("--threads", type=int, default=None, help="torch intra-op threads  [default: torch's, printed]")
@click.option("--runs", type=int, default=20, show_default=True, help="Timed runs per model and batch (>= 20).")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed warm-up runs per model.")
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--seq-len", type=int, default=128, show_default=True, help="Sequence length.")
@click.option("--student", "student_dir", default=None, help="Student model directory (with --teacher).")
@click.option("--teacher", "teacher_dir", default=None, help="Teacher model directory or dist:<name> (with --student).")
@click.option("--skip-reference", is_flag=True, help="Skip the random efficientbert vs BERT-base pair.")
@click.option("--kd-batch", type=int, default=8, show_default=True, help="Batch size of the KD throughput step.")
@click.option("--kd-steps", type=int, default=10, show_default=True, help="Timed KD / teacher / student steps.")
@click.option("--skip-kd", is_flag=True, help="Skip the KD training-throughput measurement.")
@click.option("--precision-batch", type=int, default=16, show_default=True, help="Batch of the fp32/bf16 train steps.")
@click.option("--precision-steps", type=int, default=5, show_default=True, help="Timed steps per op and precision.")
@click.option("--skip-precision", is_flag=True, help="Skip fp32 vs bf16 autocast (fine-tune step, KD step, forward).")
@click.option("--device", default=None, help="torch device  [default: cuda if available, else cpu]")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False), help="Write the report as JSON here.")
def bench_command(
    threads: int | None,
    runs: int,
    warmup: int,
    batch_sizes: str,
    seq_len: int,
    student_dir: str | None,
    teacher_dir: str | None,
    skip_reference: bool,
    kd_batch: int,
    kd_steps: int,
    skip_kd: bool,
    precision_batch: int,
    precision_steps: int,
    skip_precision: bool,
    device: str | None,
    out: str | None,
) -> None:
    """Latency (median of >= 20 runs) of the compact student vs BERT-base, KD training throughput, and fp32 vs
    bf16 autocast for a teacher fine-tuning step, a KD step and a teacher forward (side by side, interleaved).

    Pairs: random efficientbert vs random BERT-base (bert-base-uncased config), plus --student DIR vs
    --teacher DIR when given. Speed-up = teacher median / student median.
    """
    from effbert.measure import benchmark

    try:
        sizes = [int(size) for size in batch_sizes.split(",") if size.strip()]
    except ValueError:
        raise EffbertError(f"--batch-sizes {batch_sizes!r}: expected comma-separated integers, e.g. 1,8") from None
    report = benchmark.run_benchmark(
        runs=runs,
        warmup=warmup,
        batch_sizes=sizes,
        seq_len=seq_len,
        threads=threads,
        device=device,
        student_dir=student_dir,
        teacher_dir=teacher_dir,
        skip_reference=skip_reference,
        kd=not skip_kd,
        kd_batch=kd_batch,
        kd_steps=kd_steps,
        precision=not skip_precision,
        precision_batch=precision_batch,
        precision_steps=precision_steps,
        progress=lambda message: click.echo(message, err=True),
    )
    click.echo(benchmark.format_report(report))
    if out is not None:
        click.echo(f"wrote {benchmark.write_report(report, out)}")


@click.command("init-student")
@click.option("--arch", "arch", required=True, help="Shipped architecture name (efficientbert, ...) or JSON path.")
@click.option("--hidden", type=int, default=None, help="Hidden size to scale the architecture to (size ids kept).")
@click.option("--layers", type=int, default=None, help="Number of layers to resize the architecture to.")
@click.option("--heads", type=int, default=12, show_default=True, help="Attention heads.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
def init_student_command(arch: str, hidden: int | None, layers: int | None, heads: int, seed: int, out: str) -> None:
    """Write a randomly initialised compact student (save_pretrained) for an architecture."""
    import torch

    from effbert.methods.efficientbert.architecture import load_architecture
    from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
    from effbert.methods.efficientbert.modeling_effbert import EffBertModel
    from effbert.methods.efficientbert.supernet import param_count
    from effbert.runtime import atomic_dir

    try:
        architecture = load_architecture(arch)
        architecture = architecture.resized(hidden or architecture.hidden_size, layers)
        config = EffBertConfig.from_architecture(architecture, num_attention_heads=heads)
    except ValueError as err:
        raise EffbertError(f"--arch {arch}: {err}") from None
    torch.manual_seed(seed)
    model = EffBertModel(config)
    with atomic_dir(Path(out)) as tmp:
        model.save_pretrained(str(tmp))
        architecture.save(tmp / "architecture.json")
    click.echo(
        f"{out}: {architecture.name}, {architecture.num_layers} layers, H={architecture.hidden_size}, "
        f"{param_count(model) / 1e6:.2f}M params (paper convention: no pooler, no fit_dense)"
    )


@click.command("code-deps")
@click.argument("commands", nargs=-1)
def code_deps_command(commands: tuple[str, ...]) -> None:
    """Print the code a stage command runs: the effbert files of its import closure (what the code_digest stage
    hashes into results/code/COMMAND.json). Without COMMANDS: every command the pipeline files run."""
    from effbert import code_deps, tracking
    from effbert.cli import COMMANDS

    names = list(commands) or code_deps.pipeline_commands(tracking.project_root())
    for name in names:
        if name not in COMMANDS:
            raise EffbertError(f"code-deps {name}: not an effbert command (known: {' '.join(sorted(COMMANDS))})")
        files = code_deps.command_files(name)
        click.echo(f"{name}: {len(files)} files")
        for path in files:
            click.echo(f"  {path}")
