"""What every stage process shares (no algorithm lives here).

- the params: :data:`params_option` and :func:`load_params` for the stage commands;
- the stage itself: :func:`stage_context` opens the stage's MLflow run and its log file, hands out temporary output
  directories renamed into place only on success (:func:`atomic_dir`), and writes ``lineage.json`` into each output;
  a full disk (ENOSPC, EDQUOT) ends it in one line naming the path, its temporary outputs removed;
- inputs and outputs: :func:`read_json` / :func:`write_json`, :func:`input_digest`;
- how the stage computes: :func:`resolve_bf16` (the ``bf16`` key on this machine, recorded on the run);
- resumable state: :func:`checkpoint_dir` under ``.effbert/checkpoints``, keyed by params and inputs;
- the compared methods' task stages (a model trained from a task's fine-tuned teacher and prepared data):
  :func:`teacher_task_options` (their command-line options) and :func:`teacher_task_stage` (their stage context).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from effbert import interrupt, launch, tracking
from effbert.diskspace import disk_full_errors
from effbert.errors import EffbertError, StageInterrupted
from effbert.params import Params, section_digest

log = logging.getLogger("effbert")

__all__ = [
    "atomic_dir",
    "checkpoint_dir",
    "input_digest",
    "load_params",
    "loaded_modules",
    "params_option",
    "read_json",
    "resolve_bf16",
    "stage_context",
    "stage_logging",
    "teacher_task_options",
    "teacher_task_stage",
    "write_json",
]

params_option = click.option(
    "--params", "params_file", default="params.yaml", show_default=True, type=click.Path(dir_okay=False)
)
"""The ``--params`` option of every stage command (DVC runs stages with the workspace ``params.yaml``)."""


def optional_input_option(flag: str, dest: str, help_text: str) -> Any:
    """An optional input folder option (``--corpus``, ``--augmented``): None unless given, else an existing folder."""
    return click.option(flag, dest, default=None, type=click.Path(exists=True, file_okay=False), help=help_text)


def teacher_task_options(command: Any) -> Any:
    """The options of a stage that trains a model from a task's fine-tuned teacher and prepared data (``--task
    --teacher --data --model-out --report-out --params``), as the compared methods' stages in dvc.yaml pass them."""
    options = [
        click.option("--task", required=True, help="Task id, e.g. sst2."),
        click.option("--teacher", "teacher_dir", required=True, type=click.Path(exists=True, file_okay=False)),
        click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False)),
        click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Model directory to write."),
        click.option(
            "--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory."
        ),
        params_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextmanager
def teacher_task_stage(
    name: str, task: str, params: Params, keys: Sequence[str], teacher_dir: str, data_dir: str, outs: Sequence[str]
) -> Iterator[tuple[tracking.StageRun, list[Path]]]:
    """`stage_context` of ``<name>@<task>`` with the teacher and the prepared data recorded as its inputs; the
    report directory (the last of ``outs``) is logged as the run's artifact on success."""
    tags = {"effbert.task": task}
    with stage_context(name, f"{name}@{task}", params, keys, [Path(o) for o in outs], tags) as (run, temporary):
        run.consume(Path(teacher_dir), f"{task}/teacher", context="teacher")
        run.consume(Path(data_dir), f"{task}/prepared")
        yield run, temporary
        run.log_artifact(temporary[-1])


def load_params(path: str | Path) -> Params:
    """Load and validate a params file (errors name the file and the key)."""
    from effbert import params

    return params.load(path)


@contextmanager
def stage_context(
    name: str,
    instance: str,
    params: Params,
    keys: Sequence[str],
    outputs: Sequence[Path],
    tags: Mapping[str, str] | None = None,
) -> Iterator[tuple[tracking.StageRun, list[Path]]]:
    """Run a stage: its MLflow run (the ``keys`` it reads logged as params), its log file, atomic outputs.

    Yields the run and one temporary directory per output; on success each is renamed into place with its
    ``lineage.json`` (the run, the upstream runs, the digest and the effbert modules the stage loaded). On any
    error nothing is left behind. While the tracking store is unavailable, the run's records are kept in the
    outputs' ``lineage.json`` (`effbert.tracking_journal`) and the stage succeeds. SIGTERM and SIGINT stop the
    stage (`effbert.interrupt`): at once, or at the next safe point of a training or a search (a checkpoint saved,
    a candidate recorded); its run is marked KILLED and nothing is left behind either. A signal received once the
    block has returned waits for the outputs. A full disk or quota is one line naming the path (`effbert.diskspace`).

    Args:
        name: the stage family (``finetune_teacher``).
        instance: the stage instance in DVC's notation (``finetune_teacher@sst2``): the MLflow run name under either
            engine, and the log file ``logs/finetune_teacher/sst2.log``.
        params: the run's params.
        keys: the dotted params keys the stage reads (its recipe's ``PARAMS``).
        outputs: the directories the stage writes.
        tags: extra MLflow tags (the task, the model name, ...).
    """
    root = tracking.project_root()
    log_file = root / "logs" / (instance.replace("@", "/").replace("-", "/", 1) + ".log")
    if not launch.is_main_process():  # a distributed stage's other processes: train, write and record nothing
        with interrupt.handled(), tempfile.TemporaryDirectory(prefix=f"effbert-rank{launch.rank()}-") as scratch:
            tmp_dirs = [Path(scratch) / f"output-{i}" for i in range(len(outputs))]
            for tmp in tmp_dirs:
                tmp.mkdir()
            with stage_logging(log_file.with_suffix(f".rank{launch.rank()}.log")):
                yield tracking.StageRun(tracking.NullBackend(), "", name), tmp_dirs
        return
    with interrupt.handled(), ExitStack() as stack:
        tmp_dirs = [stack.enter_context(atomic_dir(out)) for out in outputs]
        checkpoints = root / ".effbert" / "checkpoints"
        stack.enter_context(disk_full_errors({**dict(zip(tmp_dirs, outputs, strict=True)), checkpoints: checkpoints}))
        stack.enter_context(stage_logging(log_file))  # from here: the tracking store's troubles are in the log too
        with tracking.stage_run(
            name,
            params.select(keys),
            run_name=instance,
            experiment=params.tracking.experiment,
            configured_uri=params.tracking.tracking_uri,
            tags=tags,
        ) as run:
            with _logged_interruption():
                yield run, tmp_dirs
            interrupt.hold()  # the outputs are complete: a signal from here on waits until they are in place
            modules = loaded_modules()
            for i, (tmp, out) in enumerate(zip(tmp_dirs, outputs, strict=True)):
                run.write_lineage(tmp, {"path": str(out), "modules": modules})
                run.set_tags({f"effbert.output.{i}": str(out)})  # pointer to the artifact (DVC caches it)
            run.log_artifact(log_file, "logs")
        run.keep_pending(dict(zip(tmp_dirs, outputs, strict=True)))  # what an unavailable store did not take
        held = interrupt.requested()
        if held is not None:
            log.warning(
                "%s received while committing the finished outputs: the stage completes", signal.Signals(held).name
            )


@contextmanager
def _logged_interruption() -> Iterator[None]:
    """Say in the stage's log that a signal stopped it, and that nothing of its outputs is kept."""
    try:
        yield
    except BaseException as err:
        signum = err.signum if isinstance(err, StageInterrupted) else interrupt.requested()
        if signum is not None:
            log.warning(
                "%s: stopping; the outputs are not written and the MLflow run is marked KILLED (the next run resumes)",
                signal.Signals(signum).name,
            )
        raise


def resolve_bf16(params: Params, run: tracking.StageRun) -> bool:
    """Whether this stage runs under bf16 autocast (params key ``bf16``, ``auto`` resolved on this machine); the
    device, the setting, the outcome, the CPU's native-bf16 flags, TF32 on CUDA (``launch.tf32``, set here) and the
    number of training processes go to the run's tags and ``lineage.json``."""
    from effbert.compute import bf16_native, cpu_bf16_flags, device, use_bf16

    dev = device()
    enabled = use_bf16(params.bf16, dev)
    native = bf16_native(dev)
    flags = ",".join(cpu_bf16_flags()) or "none"
    tf32 = dev == "cuda" and params.launch.tf32
    if dev == "cuda":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    run.record_compute(
        {
            "device": dev,
            "bf16": enabled,
            "bf16_setting": params.bf16,
            "bf16_native": native,
            "cpu_bf16_flags": flags,
            "tf32": tf32,
            "processes": launch.world_size(),
        }
    )
    log.info(
        "compute: %s, bf16 autocast %s (bf16: %s; native bf16: %s)",
        dev,
        "on" if enabled else "off",
        params.bf16,
        native,
    )
    if enabled and not native:
        log.warning("bf16: %s on a %s without native bf16: autocast is emulated and may be slower", params.bf16, dev)
    return enabled


def loaded_modules() -> list[str]:
    """The effbert modules this process has imported, as files relative to the project (what the stage ran)."""
    package = Path(__file__).resolve().parent
    files = []
    for name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "effbert" or name.startswith("effbert.")) and path:
            files.append("effbert/" + Path(path).resolve().relative_to(package).as_posix())
    return files


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``what`` says in the error which input it is.

    Raises:
        EffbertError: the file is missing or is not valid JSON (message, line).
    """
    if not path.is_file():
        raise EffbertError(f"{path}: missing ({what})")
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise EffbertError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    return data


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON with a final newline (into a stage's temporary output directory)."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


@contextmanager
def stage_logging(log_file: Path) -> Iterator[None]:
    """Log to stderr and to ``log_file`` (the stage's own log, kept with its outputs)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
    file_handler.setFormatter(fmt)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(console)
    for noisy in ("mlflow", "alembic", "urllib3", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        yield
        log.info("stage finished in %.1f s", time.perf_counter() - started)
    finally:
        root.removeHandler(file_handler)
        root.removeHandler(console)
        file_handler.close()


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` to write into; rename it into place only on success.

    An interrupted or failed stage therefore never leaves a half-written output behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.partial-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    tmp.replace(target)


def input_digest(directory: Path) -> str:
    """The content digest of a stage input: the one its producer recorded in ``lineage.json``, else computed."""
    return str((tracking.read_lineage(directory) or {}).get("digest") or tracking.path_digest(directory))


def checkpoint_dir(stage: str, key: str, params: Params, keys: Sequence[str], inputs: Sequence[Path]) -> Path:
    """Where a long stage keeps resumable state: outside DVC's outputs, keyed by the params and inputs it depends on.

    DVC deletes declared outputs before it runs a stage, so checkpoints live in ``.effbert/checkpoints``; the
    fingerprint (``keys`` of the params and the inputs' digests) makes sure a run only ever resumes from state of the
    same params and inputs.

    Args:
        stage: the stage family (first folder level).
        key: what inside the stage (a task, ``supernet``, ...).
        params: the run's params.
        keys: the dotted params keys the state depends on.
        inputs: the input directories (or files) the state depends on.
    """
    parts = [section_digest(params, *keys), *(input_digest(path)[:12] for path in inputs)]
    fingerprint = hashlib.sha256("-".join(parts).encode()).hexdigest()[:24]
    return tracking.project_root() / ".effbert" / "checkpoints" / stage / key / fingerprint
