"""The ``effbert`` command: one subcommand per DAG stage, plus ``run``, ``lineage`` and helpers.

Stage commands are thin: read their params section, open the stage's MLflow run, call the stage module, write
their declared outputs atomically and record lineage. Every path a stage reads or writes is passed on the
command line by ``dvc.yaml``, the single definition of the DAG. Heavy imports happen inside the commands so that
``effbert --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from effbert.errors import EffbertError


class _Group(click.Group):
    """Turns user errors (bad params, bad data, missing files) into one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EffbertError as err:
            click.echo(f"effbert: error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="effbert")
def main() -> None:
    """EfficientBERT as a reproducible pipeline: `effbert run` runs the whole DAG."""


def _load_params(path: str) -> Any:
    from effbert import params

    return params.load(path)


@contextmanager
def _stage(
    name: str, instance: str, params: Any, sections: dict[str, Any], outputs: list[Path], tags: dict[str, str]
) -> Iterator[tuple[Any, list[Path]]]:
    """Open the stage's MLflow run and per-stage log; yield temporary output dirs renamed into place on success.

    ``instance`` is the stage instance in DVC's notation (``finetune_teacher@sst2``): the MLflow run name under
    either engine, and the log file ``logs/finetune_teacher/sst2.log``.
    """
    from effbert import tracking
    from effbert.stages.common import atomic_dir, stage_logging

    root = tracking.project_root()
    log_file = root / "logs" / (instance.replace("@", "/").replace("-", "/", 1) + ".log")
    with ExitStack() as stack:
        tmp_dirs = [stack.enter_context(atomic_dir(out)) for out in outputs]
        run = stack.enter_context(
            tracking.stage_run(
                name,
                sections,
                run_name=instance,
                experiment=params.tracking.experiment,
                configured_uri=params.tracking.tracking_uri,
                tags=tags,
            )
        )
        with stage_logging(log_file):
            yield run, tmp_dirs
        for i, (tmp, out) in enumerate(zip(tmp_dirs, outputs, strict=True)):
            run.write_lineage(tmp, {"path": str(out)})
            run.set_tags({f"effbert.output.{i}": str(out)})  # pointer to the artifact (DVC caches it)
        run.log_artifact(log_file, "logs")


_params_option = click.option(
    "--params", "params_file", default="params.yaml", show_default=True, type=click.Path(dir_okay=False)
)


@main.command("prepare-data")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@_params_option
def prepare_data_cmd(task: str, out: str, params_file: str) -> None:
    """Read a task's official files, cut the held-out slice and tokenise every split."""
    from effbert.data.tasks import get_task
    from effbert.stages import prepare_data

    get_task(task)
    p = _load_params(params_file)
    sections = {"seed": p.seed, "data": p.data.model_dump(), "teacher_model": p.finetune_teacher.model}
    with _stage("prepare_data", f"prepare_data@{task}", p, sections, [Path(out)], {"effbert.task": task}) as (
        run,
        (tmp,),
    ):
        prepare_data.run(p, task, tmp, run)


@main.command("prepare-corpus")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@_params_option
def prepare_corpus_cmd(out: str, params_file: str) -> None:
    """Tokenise the raw-text corpus and pack sentences into sequences for task-agnostic KD."""
    from effbert.stages import prepare_corpus

    p = _load_params(params_file)
    sections = {"data": p.data.model_dump(), "teacher_model": p.finetune_teacher.model}
    with _stage("prepare_corpus", "prepare_corpus", p, sections, [Path(out)], {}) as (run, (tmp,)):
        prepare_corpus.run(p, tmp, run)


@main.command("finetune-teacher")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@_params_option
def finetune_teacher_cmd(task: str, data_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """Fine-tune the teacher on one task; select the checkpoint on the held-out slice of train."""
    from effbert.stages import finetune_teacher

    p = _load_params(params_file)
    sections = {"seed": p.seed, "finetune_teacher": p.finetune_teacher.for_task(task).model_dump()}
    outs = [Path(model_out), Path(report_out)]
    with _stage("finetune_teacher", f"finetune_teacher@{task}", p, sections, outs, {"effbert.task": task}) as (
        run,
        (model_tmp, report_tmp),
    ):
        run.consume(Path(data_dir), f"{task}/prepared")
        finetune_teacher.run(p, task, Path(data_dir), model_tmp, report_tmp, run)
        run.log_artifact(report_tmp)


@main.command("warmup-kd")
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Supernet directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@_params_option
def warmup_kd_cmd(corpus_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """Warm up the supernet: distil the pre-trained teacher into it on the corpus (attention + hidden)."""
    from effbert.stages import warmup_kd

    p = _load_params(params_file)
    sections = {
        "seed": p.seed,
        "student": p.student.model_dump(),
        "warmup_kd": p.warmup_kd.model_dump(),
        "teacher_model": p.finetune_teacher.model,
    }
    outs = [Path(model_out), Path(report_out)]
    with _stage("warmup_kd", "warmup_kd", p, sections, outs, {}) as (run, (model_tmp, report_tmp)):
        run.consume(Path(corpus_dir), "corpus/prepared")
        warmup_kd.run(p, Path(corpus_dir), model_tmp, report_tmp, run)
        run.log_artifact(report_tmp)


def _search_stage_command(number: int) -> None:
    """Register ``effbert search-stage<number>`` (the three stages share options and code)."""
    titles = {
        1: "Search stage 1 (coarse): MLP expression and size per layer, inside the parameter window.",
        2: "Search stage 2 (fine): MLP expressions only, sizes frozen to the stage-1 winner.",
        3: "Search stage 3: sizes only, weight-sharing supernet, candidates scored without training.",
    }

    @click.option("--supernet", "supernet_dir", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option(
        "--data",
        "data_root",
        required=True,
        type=click.Path(exists=True, file_okay=False),
        help="The prepare_data root (one folder per task).",
    )
    @click.option(
        "--teachers",
        "teacher_root",
        required=True,
        type=click.Path(exists=True, file_okay=False),
        help="The fine-tuned teachers' root (one folder per task).",
    )
    @click.option(
        "--previous",
        "previous_dir",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="The previous search stage's output (stages 2 and 3).",
    )
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
    @_params_option
    def command(
        supernet_dir: str,
        corpus_dir: str,
        data_root: str,
        teacher_root: str,
        previous_dir: str | None,
        out: str,
        params_file: str,
    ) -> None:
        from effbert.stages import search

        if (number > 1) != (previous_dir is not None):
            raise click.UsageError("--previous is required by stages 2 and 3 and not accepted by stage 1")
        p = _load_params(params_file)
        name = f"search_stage{number}"
        sections = search.stage_sections(p, number)
        inputs = search.StageInputs(
            Path(supernet_dir),
            Path(corpus_dir),
            Path(data_root),
            Path(teacher_root),
            Path(previous_dir) if previous_dir else None,
        )
        with _stage(name, name, p, sections, [Path(out)], {"effbert.search.stage": str(number)}) as (run, (tmp,)):
            run.consume(inputs.supernet_dir, "supernet", context="model")
            run.consume(inputs.corpus_dir, "corpus/prepared")
            for task in search.stage_tasks(p, number):
                run.consume(inputs.data_root / task, f"{task}/prepared")
                run.consume(inputs.teacher_root / task, f"{task}/teacher", context="teacher")
            if inputs.previous_dir is not None:
                run.consume(inputs.previous_dir, f"search_stage{number - 1}", context="architecture")
            search.run_stage(number, p, inputs, tmp, run)
            run.log_artifact(tmp / "hall_of_fame.csv")

    command.__doc__ = titles[number]
    main.command(f"search-stage{number}")(command)


for _number in (1, 2, 3):
    _search_stage_command(_number)


@main.command("search-quality")
@click.option(
    "--search",
    "search_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A search stage's output (its hall_of_fame.csv).",
)
@click.option("--supernet", "supernet_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teachers", "teacher_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@_params_option
def search_quality_cmd(
    search_dir: str, supernet_dir: str, corpus_dir: str, data_root: str, teacher_root: str, out: str, params_file: str
) -> None:
    """Kendall's tau between proxy fitness (with and without weight inheritance) and final dev score."""
    from effbert.stages import search, search_quality

    p = _load_params(params_file)
    search_quality.check_inputs(Path(search_dir))
    keys = ("seed", "student", "search.proxy", "search.proxy_task", "search.quality_candidates", "final_distill")
    sections = {k: v for k, v in search.stage_sections(p, 1).items() if k in keys}
    sections["search.quality_candidates"] = p.search.quality_candidates
    sections["final_distill"] = p.final_distill.model_dump()
    inputs = search.StageInputs(Path(supernet_dir), Path(corpus_dir), Path(data_root), Path(teacher_root))
    with _stage("search_quality", "search_quality", p, sections, [Path(out)], {}) as (run, (tmp,)):
        run.consume(Path(search_dir), "search/hall_of_fame", context="search")
        run.consume(inputs.supernet_dir, "supernet", context="model")
        task = p.search.proxy_task
        run.consume(inputs.data_root / task, f"{task}/prepared")
        run.consume(inputs.teacher_root / task, f"{task}/teacher", context="teacher")
        search_quality.run(p, Path(search_dir), inputs, tmp, run)
        run.log_artifact(tmp)


@main.command("final-distill-general")
@click.option("--supernet", "supernet_dir", required=True, type=click.Path(exists=True))
@click.option(
    "--arch",
    "arch",
    required=True,
    help="A search stage's output folder (its architecture.json), an architecture JSON file or a shipped name.",
)
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Student directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@_params_option
def final_distill_general_cmd(
    supernet_dir: str, arch: str, corpus_dir: str, model_out: str, report_out: str, params_file: str
) -> None:
    """Slice an architecture out of the warm-up supernet and distil it on the corpus (task-agnostic)."""
    from effbert.stages import final_distill

    p = _load_params(params_file)
    sections = {
        "seed": p.seed,
        "student": p.student.model_dump(),
        "final_distill": {"architecture": arch, "general": p.final_distill.general.model_dump()},
        "teacher_model": p.finetune_teacher.model,
    }
    outs = [Path(model_out), Path(report_out)]
    with _stage("final_distill_general", "final_distill_general", p, sections, outs, {}) as (run, (model_tmp, rep)):
        run.consume(Path(supernet_dir), "supernet", context="model")
        run.consume(Path(corpus_dir), "corpus/prepared")
        arch_path = final_distill.architecture_source(arch)
        if Path(arch).is_dir():
            run.consume(Path(arch), "search/winner", context="architecture")
            winner = Path(arch) / "winner.json"
            if winner.is_file():
                run.set_tags({f"effbert.search.winner_{k}": str(v)[:4000] for k, v in _read_json(winner).items()})
        elif arch_path is not None:
            run.log_dataset("architecture", arch_path, "architecture")
        final_distill.run_general(p, Path(supernet_dir), arch, Path(corpus_dir), model_tmp, rep, run)
        run.log_artifact(rep)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@main.command("final-distill")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--student", "student_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Student directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@_params_option
def final_distill_cmd(
    task: str, student_dir: str, teacher_dir: str, data_dir: str, model_out: str, report_out: str, params_file: str
) -> None:
    """Task KD of the general student from the task's fine-tuned teacher; select on the held-out slice."""
    from effbert.data.tasks import get_task
    from effbert.stages import final_distill

    get_task(task)
    p = _load_params(params_file)
    sections = {"seed": p.seed, "final_distill": {"task": p.final_distill.task.for_task(task).model_dump()}}
    outs = [Path(model_out), Path(report_out)]
    with _stage("final_distill", f"final_distill@{task}", p, sections, outs, {"effbert.task": task}) as (
        run,
        (model_tmp, report_tmp),
    ):
        run.consume(Path(student_dir), "student/general", context="model")
        run.consume(Path(teacher_dir), f"{task}/teacher", context="teacher")
        run.consume(Path(data_dir), f"{task}/prepared")
        final_distill.run_task(
            p, task, Path(student_dir), Path(teacher_dir), Path(data_dir), model_tmp, report_tmp, run
        )
        run.log_artifact(report_tmp)


@main.command("init-student")
@click.option("--arch", "arch", required=True, help="Shipped architecture name (efficientbert, ...) or JSON path.")
@click.option("--hidden", type=int, default=None, help="Hidden size to scale the architecture to (size ids kept).")
@click.option("--layers", type=int, default=None, help="Number of layers to resize the architecture to.")
@click.option("--heads", type=int, default=12, show_default=True, help="Attention heads.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
def init_student_cmd(arch: str, hidden: int | None, layers: int | None, heads: int, seed: int, out: str) -> None:
    """Write a randomly initialised compact student (save_pretrained) for an architecture."""
    import torch

    from effbert.errors import EffbertError
    from effbert.models.architecture import load_architecture
    from effbert.models.configuration_effbert import EffBertConfig
    from effbert.models.modeling_effbert import EffBertModel
    from effbert.models.supernet import param_count
    from effbert.stages.common import atomic_dir

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


@main.command("evaluate")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--model-name", required=True, help="Name of the model in results/eval (teacher, student).")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@_params_option
def evaluate_cmd(task: str, model_name: str, model_dir: str, data_dir: str, out: str, params_file: str) -> None:
    """Dev-set metrics (corpus level) and dev predictions of one model on one task."""
    from effbert.stages import evaluate

    p = _load_params(params_file)
    sections = {"seed": p.seed, "evaluate": p.evaluate.model_dump()}
    tags = {"effbert.task": task, "effbert.model": model_name}
    with _stage("evaluate", f"evaluate@{model_name}-{task}", p, sections, [Path(out)], tags) as (run, (tmp,)):
        run.consume(Path(model_dir), f"{task}/{model_name}", context="model")
        run.consume(Path(data_dir), f"{task}/prepared", context="eval")
        record = evaluate.run(p, task, model_name, Path(model_dir), Path(data_dir), tmp)
        run.log_metrics({f"dev/{k}": v for k, v in record["metrics"].items()})
        run.log_artifact(tmp)


@main.command("eval-summary")
@click.option("--eval-dir", default="results/eval", show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@_params_option
def eval_summary_cmd(eval_dir: str, out: str, params_file: str) -> None:
    """Collect every results/eval/<model>/<task>/metrics.json into one table (CSV, JSON, Markdown)."""
    from effbert.stages import eval_summary

    p = _load_params(params_file)
    with _stage("eval_summary", "eval_summary", p, {"tasks": p.tasks}, [Path(out)], {}) as (run, (tmp,)):
        for metrics_dir in sorted(Path(eval_dir).glob("*/*")):
            if metrics_dir.is_dir():
                run.consume(metrics_dir, f"eval/{metrics_dir.parent.name}/{metrics_dir.name}", context="metrics")
        table = eval_summary.run(Path(eval_dir), tmp)
        for row in table.to_dict("records"):
            run.log_metrics(
                {f"{row['model']}/{row['task']}/{k}": v for k, v in row.items() if k not in ("model", "task")}
            )
        run.log_artifact(tmp)


@main.command("predict")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--split", default="test", show_default=True, help="test (GLUE server files; SQuAD test-v1.1.json) or dev."
)
@click.option(
    "--data",
    "data_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Prepared data [results/prepare_data/TASK].",
)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), help="Output dir [results/predict/TASK].")
@_params_option
def predict_cmd(task: str, model_dir: str, split: str, data_dir: str | None, out: str | None, params_file: str) -> None:
    """Predictions of a model directory on a prepared split, in the GLUE server / SQuAD predictions format."""
    from effbert.data.tasks import get_task
    from effbert.stages import predict_test
    from effbert.stages.common import atomic_dir

    get_task(task)
    p = _load_params(params_file)
    data = Path(data_dir or f"results/prepare_data/{task}")
    if not data.is_dir():
        raise EffbertError(f"--data {data}: no prepared data (run `effbert run --target prepare_data@{task}` first)")
    target = Path(out or f"results/predict/{task}")
    files = predict_test.predict_split(p, task, Path(model_dir), data, split)  # fails before anything is written
    with atomic_dir(target) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    for name in files:
        click.echo(str(target / name))


@main.command("predict-test")
@click.option("--models", "models_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@_params_option
def predict_test_cmd(models_root: str, data_root: str, out: str, params_file: str) -> None:
    """GLUE server files of every GLUE task (zipped) and SQuAD predictions, from the final students."""
    from effbert.stages import predict_test

    p = _load_params(params_file)
    sections = {"seed": p.seed, "tasks": p.tasks, "predict_test": p.predict_test.model_dump()}
    with _stage("predict_test", "predict_test", p, sections, [Path(out)], {}) as (run, (tmp,)):
        for task in p.tasks:
            run.consume(Path(models_root) / task, f"{task}/student", context="model")
            run.consume(Path(data_root) / task, f"{task}/prepared", context="test")
        manifest = predict_test.run(p, list(p.tasks), Path(models_root), Path(data_root), tmp)
        run.log_artifact(tmp)
        run.log_metrics({f"rows/{name}": float(f["rows"]) for name, f in manifest.get("files", {}).items()})


@main.command("export")
@click.option("--task", required=True, help="Task id, e.g. sst2.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--eval", "eval_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@_params_option
def export_cmd(
    task: str, model_dir: str, eval_dir: str, teacher_dir: str, data_dir: str, out: str, params_file: str
) -> None:
    """Model card, ONNX export (parity-checked, latency beside PyTorch) and MLflow registry entry of a student."""
    from effbert.data.tasks import get_task
    from effbert.stages import export

    get_task(task)
    p = _load_params(params_file)
    sections = {"seed": p.seed, "export": p.export.model_dump(), "latency": p.latency.model_dump()}
    with _stage("export", f"export@{task}", p, sections, [Path(out)], {"effbert.task": task}) as (run, (tmp,)):
        run.consume(Path(model_dir), f"{task}/student", context="model")
        run.consume(Path(eval_dir), f"{task}/student/eval", context="metrics")
        run.consume(Path(teacher_dir), f"{task}/teacher", context="teacher")
        run.consume(Path(data_dir), f"{task}/prepared", context="parity")
        export.run(p, task, Path(model_dir), Path(eval_dir), Path(data_dir), tmp, run, teacher_dir=Path(teacher_dir))


@main.command("report")
@click.option(
    "--results", "results_dir", default="results", show_default=True, type=click.Path(exists=True, file_okay=False)
)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@_params_option
def report_cmd(results_dir: str, out: str, params_file: str) -> None:
    """The final report (HTML + Markdown): our numbers beside the paper's, size and speed, search, lineage."""
    from effbert.stages import report

    p = _load_params(params_file)
    sections = {
        "seed": p.seed,
        "tasks": p.tasks,
        "latency": p.latency.model_dump(),
        "report": p.report.model_dump(),
    }
    with _stage("report", "report", p, sections, [Path(out)], {}) as (run, (tmp,)):
        paths = report.ReportPaths.under(Path(results_dir), Path(params_file))
        for name, directory in paths.inputs().items():
            run.consume(directory, name, context="report")
        record = report.run(p, paths, tmp)
        run.log_artifact(tmp)
        run.log_metrics(report.headline_metrics(record))


@main.command("run")
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
def run_cmd(
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


@main.command("fetch-data")
@_params_option
@click.option("--out", default="data/hub", show_default=True, type=click.Path(file_okay=False))
def fetch_data_cmd(params_file: str, out: str) -> None:
    """Materialise every data source set to null (data.glue_dir, data.squad_dir, data.corpus) from the hub.

    Writes the official file layout under OUT and prints the params to point at it; `effbert run` does this
    by itself when a source is null.
    """
    from effbert import pipeline, tracking

    p = _load_params(params_file)
    updated = pipeline.materialise_hub_sources(tracking.project_root(), p, out)
    for key in ("glue_dir", "squad_dir", "corpus"):
        click.echo(f"data.{key}: {getattr(updated.data, key)}")


@main.command("bench")
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
@click.option("--device", default=None, help="torch device  [default: cuda if available, else cpu]")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False), help="Write the report as JSON here.")
def bench_cmd(
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
    device: str | None,
    out: str | None,
) -> None:
    """Latency (median of >= 20 runs) of the compact student vs BERT-base, and KD training throughput.

    Pairs: random efficientbert vs random BERT-base (bert-base-uncased config), plus --student DIR vs
    --teacher DIR when given. Speed-up = teacher median / student median.
    """
    from effbert import bench

    try:
        sizes = [int(size) for size in batch_sizes.split(",") if size.strip()]
    except ValueError:
        raise EffbertError(f"--batch-sizes {batch_sizes!r}: expected comma-separated integers, e.g. 1,8") from None
    report = bench.run_benchmark(
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
        progress=lambda message: click.echo(message, err=True),
    )
    click.echo(bench.format_report(report))
    if out is not None:
        click.echo(f"wrote {bench.write_report(report, out)}")


@main.command("check-params")
@click.argument("params_file", default="params.yaml", type=click.Path(dir_okay=False))
def check_params_cmd(params_file: str) -> None:
    """Validate a params file against the schema; print the resolved values."""
    from effbert import params

    click.echo(params.dump(params.load(params_file)), nl=False)


@main.command("lineage")
@click.argument("target")
@click.option("--depth", type=int, default=20, show_default=True, help="How many stages upstream to follow.")
def lineage_cmd(target: str, depth: int) -> None:
    """Explain which stages, runs, params, data and code produced an artifact, a metric or an MLflow run.

    TARGET is a path inside a stage output (e.g. results/eval/teacher/sst2/metrics.json) or a run id.
    """
    from effbert import lineage

    click.echo(lineage.explain(target, depth=depth))


if __name__ == "__main__":
    main()
