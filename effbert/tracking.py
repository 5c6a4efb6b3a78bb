"""MLflow lineage: one parent run per pipeline invocation, one child run per stage execution.

This is the only module that talks to MLflow. Every stage opens a :func:`stage_run`; it logs the stage's
resolved params, metrics, artifacts, git commit, code digest, DVC stage name, dataset digests
(``mlflow.log_input``) and the run ids of the upstream artifacts it consumed. The run id is also written next
to the stage's outputs in ``lineage.json``, so an artifact found on disk (or restored by DVC from its cache)
leads back to the run that produced it; ``effbert lineage`` follows those links. A stage can also log a model
(pyfunc flavour) in its run and register it in the model registry under an alias (:meth:`StageRun.register_model`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from effbert import __version__, interrupt, tracking_journal, tracking_service
from effbert.errors import EffbertError, StageInterrupted

log = logging.getLogger(__name__)

PARENT_ENV = "EFFBERT_PARENT_RUN_ID"
LINEAGE_FILE = "lineage.json"
TAG_UPSTREAM = "effbert.upstream_run_ids"


def project_root() -> Path:
    """The project root: ``$DVC_ROOT`` inside a DVC stage, ``$EFFBERT_ROOT`` if set, else the working dir."""
    for var in ("DVC_ROOT", "EFFBERT_ROOT"):
        if os.environ.get(var):
            return Path(os.environ[var]).resolve()
    return Path.cwd().resolve()


def tracking_uri(configured: str | None = None, root: Path | None = None) -> str:
    """Absolute tracking URI: ``$MLFLOW_TRACKING_URI``, the params value, or ``sqlite:///<root>/mlflow.db``."""
    root = root or project_root()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if not uri:
        return f"sqlite:///{root / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(root / uri[len('sqlite:///') :]).resolve()}"
    return uri


def _mlflow(configured_uri: str | None, experiment: str) -> Any:
    # effbert retries an unreachable store itself, within seconds (`effbert.tracking_journal`); MLflow's own HTTP
    # retries would wait minutes per call (set these variables to have them)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    root = project_root()
    mlflow.set_tracking_uri(tracking_uri(configured_uri, root))
    if mlflow.get_experiment_by_name(experiment) is None:
        # absolute artifact location: DVC may run stages in a temporary copy of the project
        mlflow.create_experiment(experiment, artifact_location=(root / "mlruns").as_uri())
    mlflow.set_experiment(experiment)
    return mlflow


def git_commit(root: Path | None = None) -> str:
    """``HEAD``'s commit, with ``-dirty`` when tracked files differ; ``unknown`` outside git."""
    root = root or project_root()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=20
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def code_digest() -> str:
    """sha256 over the effbert package's Python sources: the exact code version, committed or not."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        h.update(path.relative_to(pkg).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def path_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's relative names and contents (lineage files excluded)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file.name == LINEAGE_FILE:
            continue
        h.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def read_lineage(directory: Path) -> dict[str, Any] | None:
    """The ``lineage.json`` of an output directory, or None when there is none."""
    file = directory / LINEAGE_FILE
    if not file.is_file():
        return None
    data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return data


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowBackend:
    """The MLflow calls of a stage, made in this process with one client and explicit run ids.

    `effbert.tracking_service` serves the same object to the stages of an ``effbert run``, so a run recorded through
    the service and one recorded in process are recorded by the same code. Arguments are JSON values (paths as
    strings, times in epoch milliseconds taken where the event happened).
    """

    OPS: tuple[str, ...] = (
        "describe",
        "start_run",
        "log_params",
        "log_metrics",
        "log_artifact",
        "set_tags",
        "log_input",
        "child_run",
        "end_run",
    )

    def __init__(self, configured_uri: str | None, experiment: str) -> None:
        self.mlflow = _mlflow(configured_uri, experiment)
        self.client = self.mlflow.MlflowClient()
        self.uri = tracking_uri(configured_uri)
        self.experiment = experiment
        self.experiment_id = self.mlflow.get_experiment_by_name(experiment).experiment_id

    def describe(self) -> dict[str, str]:
        """Where this backend records: the tracking URI and the experiment."""
        return {"uri": self.uri, "experiment": self.experiment}

    def start_run(self, run_name: str, parent_run_id: str | None, tags: dict[str, str], start_time: int) -> str:
        """Create a run (MLflow's context tags resolved as ``mlflow.start_run`` does, the given ones winning)."""
        from mlflow.tracking.context.registry import resolve_tags

        tags = {**tags, "mlflow.runName": run_name}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(
            self.experiment_id, start_time=start_time, tags=resolve_tags(tags), run_name=run_name
        )
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = list(params.items())
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in items[start : start + 100]])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None, timestamp: int) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(run_id, metrics=[Metric(k, v, timestamp, step or 0) for k, v in metrics.items()])

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(run_id, path, artifact_path=artifact_path)
        elif Path(path).is_file():
            self.client.log_artifact(run_id, path, artifact_path=artifact_path)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_input(self, run_id: str, name: str, url: str, digest: str, context: str) -> None:
        """Record a dataset input (name, source URL, digest) without loading it."""
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = MetaDataset(source=HTTPDatasetSource(url=url), name=name, digest=digest)  # type: ignore[abstract]
        entry = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        for attempt in range(5):
            try:
                self.client.log_inputs(run_id, datasets=[entry])
                return
            except Exception as exc:  # MLflow's get-or-create of a dataset races between parallel stages
                if "UNIQUE constraint" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def child_run(
        self, parent_run_id: str, name: str, params: dict[str, str], metrics: dict[str, float], tags: dict[str, str]
    ) -> str:
        """A finished nested run under ``parent_run_id`` with ``params``, ``metrics`` and ``tags``."""
        from mlflow.entities import Metric, Param

        all_tags = {"mlflow.parentRunId": parent_run_id, "mlflow.runName": name, **tags}
        child = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        now = _now_ms()
        self.client.log_batch(
            child.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        self.client.set_terminated(child.info.run_id)
        return str(child.info.run_id)

    def end_run(self, run_id: str, status: str, end_time: int) -> None:
        self.client.set_terminated(run_id, status=status, end_time=end_time)


def stage_backend(configured_uri: str | None, experiment: str) -> tracking_journal.JournalingBackend:
    """The backend of a stage: the serving ``effbert run``'s (`effbert.tracking_service`) when it records where this
    stage would, else an `MlflowBackend` in this process (created on the first call); either way its calls are
    retried, or kept as records, while the store is unavailable (`effbert.tracking_journal`)."""
    store = {"uri": tracking_uri(configured_uri), "experiment": experiment}
    path = os.environ.get(tracking_service.SOCKET_ENV)
    if path:
        try:
            remote = tracking_service.RemoteBackend(path, MlflowBackend.OPS)
        except OSError as err:
            log.warning("tracking service %s unreachable (%s): recording in this process", path, err)
        else:
            if remote.describe() == store:
                return tracking_journal.JournalingBackend(lambda: remote, store, MlflowBackend.OPS)
            remote.close()
            log.warning("tracking service %s records elsewhere: recording in this process", path)
    return tracking_journal.JournalingBackend(
        lambda: MlflowBackend(configured_uri, experiment), store, MlflowBackend.OPS
    )


class NullBackend:
    """A backend that records nothing: the runs of a distributed stage's processes other than rank 0 (rank 0
    records the stage; `effbert.launch`)."""

    def describe(self) -> dict[str, str]:
        return {"uri": "", "experiment": ""}

    def start_run(self, run_name: str, parent_run_id: str | None, tags: dict[str, str], start_time: int) -> str:
        return ""

    def child_run(
        self, parent_run_id: str, name: str, params: dict[str, str], metrics: dict[str, float], tags: dict[str, str]
    ) -> str:
        return ""

    def __getattr__(self, name: str) -> Any:
        if name in MlflowBackend.OPS:
            return lambda **kwargs: None  # log_params, log_metrics, log_artifact, set_tags, log_input, end_run
        raise AttributeError(name)


class StageRun:
    """The MLflow child run of one stage execution (see :func:`stage_run`).

    Args:
        backend: where the calls go (an `MlflowBackend`, or the tracking service's client).
        run_id: the run.
        stage: the stage family.
        code_tags: the code version, recorded on this run and on every child run.
    """

    def __init__(self, backend: Any, run_id: str, stage: str, code_tags: Mapping[str, str] | None = None) -> None:
        self._backend = backend
        self.run_id = run_id
        self.stage = stage
        self.code_tags = dict(code_tags or {})
        self.upstream: list[str] = []
        self.inputs: dict[str, str] = {}
        self.compute: dict[str, Any] = {}  # how the stage computed (device, bf16), also in lineage.json

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if clean:
            self._backend.log_metrics(run_id=self.run_id, metrics=clean, step=step, timestamp=_now_ms())

    def log_summary(self, metrics: Mapping[str, Any], figure: Path | None = None) -> None:
        """Log the finite numbers of a stage's ``metrics.json`` record and its figure (under ``plots``)."""
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
        self.log_metrics(numbers)
        if figure is not None:
            self.log_artifact(figure, "plots")

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a file or a directory's contents into the run's artifacts (under ``artifact_path``)."""
        self._backend.log_artifact(run_id=self.run_id, path=str(Path(path).resolve()), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._backend.set_tags(run_id=self.run_id, tags={k: str(v) for k, v in tags.items()})

    def record_compute(self, settings: Mapping[str, Any]) -> None:
        """Record how the stage computes (device, bf16 autocast) as ``effbert.compute.*`` tags and in its lineage."""
        self.compute.update(settings)
        self.set_tags({f"effbert.compute.{key}": str(value) for key, value in settings.items()})

    def log_dataset(self, name: str, path: Path, context: str, digest: str | None = None) -> str:
        """Record a dataset input (name, source path, sha256) without loading it."""
        digest = digest or path_digest(path)
        url = path.resolve().as_uri()
        self._backend.log_input(run_id=self.run_id, name=name, url=url, digest=digest[:36], context=context)
        self.inputs[name] = digest
        return digest

    def consume(self, directory: Path, name: str, context: str = "input") -> dict[str, Any] | None:
        """Declare an upstream output directory: log its digest and link the run that produced it."""
        lineage = read_lineage(directory)
        digest = lineage["digest"] if lineage else path_digest(directory)
        self.log_dataset(name, directory, context, digest)
        if lineage and lineage.get("run_id") and lineage["run_id"] not in self.upstream:
            self.upstream.append(lineage["run_id"])
            self.set_tags({TAG_UPSTREAM: ",".join(self.upstream)})
        return lineage

    def child_run(
        self,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Record a finished unit of work (a search candidate) as a nested run under this stage's run, with the same
        code version (git commit, code digest) as the stage's run.

        Returns:
            the child run's id.
        """
        result: str = self._backend.child_run(
            parent_run_id=self.run_id,
            name=name,
            params={k: str(v)[:6000] for k, v in params.items()},
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
            tags={"effbert.stage": self.stage, **self.code_tags, **(tags or {})},
        )
        return result

    def register_model(
        self,
        name: str,
        alias: str,
        python_model: Any,
        artifacts: Mapping[str, Path],
        model_config: Mapping[str, Any],
        pip_requirements: Sequence[str],
        signature: Any = None,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Log ``python_model`` (pyfunc flavour) in this run, register it as a new version of ``name``, alias it.

        This one call needs MLflow in this process (the model object is Python, not JSON). No requirement inference
        and no input example: the requirements are given, so nothing is resolved over the network. The alias moves
        to the new version.

        Args:
            name: registered model name (``effbert-sst2``).
            alias: alias set on the new version (``champion``).
            python_model: an ``mlflow.pyfunc.PythonModel`` instance.
            artifacts: artifact name -> local file or directory, copied into the logged model.
            model_config: passed to the model's ``load_context`` as ``context.model_config``.
            pip_requirements: the model's requirements, recorded as given.
            signature: the model's ``ModelSignature`` (inputs are checked against it), or None.
            tags: extra tags of the new model version.

        Returns:
            ``name``, ``version``, ``alias``, ``model_uri`` (``models:/<name>@<alias>``), ``run_id``, ``model_id``
            (MLflow's logged model) and ``source`` (the logged model's URI).
        """
        if getattr(self._backend, "pending", False):
            raise EffbertError(
                f"the model {name} cannot be registered while the tracking store is unavailable "
                f"({self._backend.reason}); run the stage again once it is reachable"
            )
        store = self._backend.describe()  # where the run is: MLflow in this process opens the same store
        mlflow = _mlflow(store["uri"], store["experiment"])
        # resuming the run makes it the active one the model is logged in; leaving the block marks it finished,
        # and the stage's own end (after this) sets its final status and end time again
        with warnings.catch_warnings(), mlflow.start_run(run_id=self.run_id):
            warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                artifacts={key: str(path) for key, path in artifacts.items()},
                model_config=dict(model_config),
                pip_requirements=list(pip_requirements),
                signature=signature,
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(name, alias, version)
        for key, value in {"effbert.stage": self.stage, **(tags or {})}.items():
            client.set_model_version_tag(name, version, key, value)
        return {
            "name": name,
            "version": int(version),
            "alias": alias,
            "model_uri": f"models:/{name}@{alias}",
            "run_id": self.run_id,
            "model_id": str(info.model_id),
            "source": str(info.model_uri),
        }

    def write_lineage(self, directory: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write ``lineage.json`` (this run, the upstream runs, the directory's digest) into ``directory``."""
        record = {
            "run_id": self.run_id,
            "stage": self.stage,
            "dvc_stage": os.environ.get("DVC_STAGE", ""),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "git_commit": git_commit(),
            "code_digest": code_digest(),
            "upstream_run_ids": self.upstream,
            "inputs": self.inputs,
            "digest": path_digest(directory),
            **({"compute": self.compute} if self.compute else {}),
            **(extra or {}),
        }
        _write_lineage_file(directory, record)

    def keep_pending(self, outputs: Mapping[Path, Path]) -> None:
        """When the store was unavailable (`effbert.tracking_journal`), keep this run's records in the
        ``lineage.json`` of each output (temporary directory -> final path; artifact paths inside a temporary
        directory are rewritten to the final one) as ``"tracking": "pending"``, for `reconcile_pending`."""
        records = getattr(self._backend, "records", None)
        if records is None:
            return
        moves = {str(Path(tmp).resolve()): str(Path(out).resolve()) for tmp, out in outputs.items()}
        for record in records:
            path = record["args"].get("path") if record["op"] == "log_artifact" else None
            for tmp, out in moves.items():
                if path and (path == tmp or path.startswith(tmp + os.sep)):
                    record["args"]["path"] = out + path[len(tmp) :]
        pending = {
            "run_name": next((r["args"]["run_name"] for r in records if r["op"] == "start_run"), ""),
            "stage": self.stage,
            "store": self._backend.describe(),
            "reason": self._backend.reason,
            "records": records,
        }
        for directory in outputs:
            lineage = read_lineage(directory) or {}
            _write_lineage_file(directory, {**lineage, "tracking": "pending", "tracking_pending": pending})
        log.info(
            "the tracking records of this run are kept in %s",
            ", ".join(f"{o}/{LINEAGE_FILE}" for o in outputs.values()),
        )


def _write_lineage_file(directory: Path, record: Mapping[str, Any]) -> None:
    tmp = directory / f".{LINEAGE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / LINEAGE_FILE)


def running_runs(configured_uri: str | None, experiment: str) -> list[str]:
    """The ids of the experiment's runs still RUNNING (a run whose process died without ending it)."""
    return [run.info.run_id for run in _running(MlflowBackend(configured_uri, experiment))]


def _running(backend: MlflowBackend, tags: Mapping[str, str] | None = None) -> list[Any]:
    """The experiment's runs still RUNNING, those with the given tag values only when ``tags`` are given."""
    conditions = ["attributes.status = 'RUNNING'", *(f"tags.`{k}` = '{v}'" for k, v in (tags or {}).items())]
    return list(backend.client.search_runs([backend.experiment_id], filter_string=" and ".join(conditions)))


WORKSPACE_TAG, PID_TAG = "effbert.workspace", "effbert.pid"
"""Tags of every stage and pipeline run: the workspace (``<host>:<project root>``) and the process that records it."""


def workspace_tags() -> dict[str, str]:
    """This process's `WORKSPACE_TAG` and `PID_TAG` values."""
    import socket

    return {WORKSPACE_TAG: f"{socket.gethostname()}:{project_root()}", PID_TAG: str(os.getpid())}


def _alive(pid: str | None) -> bool:
    if pid is None or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_orphaned_runs(backend: MlflowBackend) -> list[str]:
    """Mark KILLED this workspace's runs left RUNNING by a process that no longer exists (a stage or a pipeline
    killed by SIGKILL or a power cut cannot end its own run); return their names."""
    ended = []
    for run in _running(backend, {WORKSPACE_TAG: workspace_tags()[WORKSPACE_TAG]}):
        if not _alive(run.data.tags.get(PID_TAG)):
            backend.client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.data.tags.get("mlflow.runName", run.info.run_id))
    return ended


@contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    *,
    run_name: str | None = None,
    experiment: str = "effbert",
    configured_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[StageRun]:
    """Open the MLflow child run of a stage under ``$EFFBERT_PARENT_RUN_ID`` (when set).

    The run is recorded through the serving ``effbert run`` when there is one (see `stage_backend`), else in this
    process; it ends FINISHED, FAILED when the block raises, or KILLED when a signal stopped it (`effbert.interrupt`).

    Args:
        stage: stage name, e.g. ``finetune_teacher``.
        run_name: the stage instance in DVC's notation (``finetune_teacher@sst2``); ``$DVC_STAGE`` wins when set.
        params: the stage's resolved params (nested mapping), logged flattened.
        experiment, configured_uri: from the ``tracking`` params section.
        tags: extra tags (the task, the model name, ...).
    """
    backend = stage_backend(configured_uri, experiment)
    run_name = os.environ.get("DVC_STAGE") or run_name or stage
    code = {"effbert.version": __version__, "effbert.code_digest": code_digest(), "effbert.git_commit": git_commit()}
    all_tags = {
        "effbert.stage": stage,
        **code,
        "dvc.stage": run_name,
        "dvc.exp": os.environ.get("DVC_EXP_NAME", ""),
        "slurm.job_id": os.environ.get("SLURM_JOB_ID", ""),
        "mlflow.source.name": sys.argv[0],  # this process, also when the service records the run
        **workspace_tags(),  # whose process to ask whether the run is still alive (`end_orphaned_runs`)
        **(tags or {}),
    }
    parent = os.environ.get(PARENT_ENV) or None
    run_id = backend.start_run(run_name=run_name, parent_run_id=parent, tags=all_tags, start_time=_now_ms())
    try:
        flat = flatten(params)
        backend.log_params(
            run_id=run_id, params={k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()}
        )
        yield StageRun(backend, run_id, stage, code)
    except BaseException as err:
        # a signal (`effbert.interrupt`) ends the run KILLED, also when what it stopped failed in its own way first
        signum = err.signum if isinstance(err, StageInterrupted) else interrupt.requested()
        backend.end_run(run_id=run_id, status="FAILED" if signum is None else "KILLED", end_time=_now_ms())
        if signum is not None and not isinstance(err, StageInterrupted):
            raise StageInterrupted(signum, f"{type(err).__name__} after the signal") from err
        raise
    backend.end_run(run_id=run_id, status="FINISHED", end_time=_now_ms())


def _pending_journals(root: Path) -> tuple[dict[str, list[tuple[Path, dict[str, Any]]]], dict[str, str]]:
    """The outputs under ``root/results`` whose run is pending, by placeholder run id, and the run ids of those
    already reconciled (placeholder -> run id)."""
    journals: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    ids: dict[str, str] = {}
    results = root / "results"
    for file in sorted(results.rglob(LINEAGE_FILE)) if results.is_dir() else []:
        try:
            lineage = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if lineage.get("tracking") == "reconciled" and lineage.get("pending_run_id"):
            ids[lineage["pending_run_id"]] = lineage["run_id"]
        elif lineage.get("tracking") == "pending" and lineage.get("tracking_pending"):
            journals.setdefault(lineage["run_id"], []).append((file.parent, lineage))
    return journals, ids


def _mark_reconciled(directory: Path, lineage: dict[str, Any], ids: Mapping[str, str], uri: str) -> None:
    """Rewrite ``lineage.json`` with the recorded run's id; its and the directory's times are kept (the output's
    content is unchanged, and Snakemake decides by times)."""
    file = directory / LINEAGE_FILE
    times = {path: (path.stat().st_atime_ns, path.stat().st_mtime_ns) for path in (file, directory)}
    record = {key: value for key, value in lineage.items() if key != "tracking_pending"}
    placeholder = lineage["run_id"]  # or the real id, when the store went away after the run was created
    record.update(
        tracking="reconciled",
        tracking_store=uri,
        run_id=ids.get(placeholder, placeholder),
        pending_run_id=placeholder,
        upstream_run_ids=[ids.get(run_id, run_id) for run_id in lineage.get("upstream_run_ids", [])],
    )
    _write_lineage_file(directory, record)
    for path, (atime, mtime) in times.items():
        os.utime(path, ns=(atime, mtime))


class Reconciled(NamedTuple):
    """One output whose pending run `reconcile_pending` recorded (``recorded``), or could not (it stays pending)."""

    directory: Path
    recorded: bool
    line: str


def reconcile_pending(root: Path, configured_uri: str | None) -> list[Reconciled]:
    """Record into the store the runs that stages kept in their outputs' ``lineage.json`` while the store was
    unavailable (`effbert.tracking_journal`), upstream runs first, and mark those files reconciled.

    Returns:
        one entry per output, with a line saying what became of it: recorded (the run id) or not (why).
    """
    journals, ids = _pending_journals(root)
    done: list[Reconciled] = []
    backends: dict[str, MlflowBackend] = {}
    order = sorted(journals.items(), key=lambda item: _journal_start(item[1][0][1]))
    for placeholder, outputs in order:
        pending = outputs[0][1]["tracking_pending"]
        names = ", ".join(str(directory.relative_to(root)) for directory, _ in outputs)
        try:
            experiment = pending["store"]["experiment"]
            if experiment not in backends:
                backends[experiment] = MlflowBackend(configured_uri, experiment)
            missing = tracking_journal.replay(pending["records"], backends[experiment], ids)
        except Exception as err:
            why = f"{names}: still pending, not recorded ({tracking_journal.one_line(err)})"
            done += [Reconciled(directory, False, why) for directory, _ in outputs]
            continue
        note = f"; {len(missing)} artifacts no longer on disk" if missing else ""
        for directory, lineage in outputs:
            _mark_reconciled(directory, lineage, ids, backends[experiment].uri)
            line = f"{directory.relative_to(root)}: {pending['run_name']} recorded as MLflow run "
            done.append(Reconciled(directory, True, line + ids.get(placeholder, placeholder) + note))
    return done


def _journal_start(lineage: Mapping[str, Any]) -> int:
    records = lineage["tracking_pending"]["records"]
    return next((int(r["args"].get("start_time", 0)) for r in records if r["op"] == "start_run"), 0)


@contextmanager
def pipeline_run(name: str, params_file: Path, *, experiment: str, configured_uri: str | None) -> Iterator[str]:
    """The parent run of one pipeline invocation; its id is exported to the stages through the environment, and
    the stages' tracking calls are served from this process for its duration (`effbert.tracking_service`): the
    socket's path is in ``$EFFBERT_TRACKING_SOCKET`` (``os.environ``, inherited by the engine and its stages). It ends
    FINISHED, FAILED when the block raises, or KILLED when it raises `StageInterrupted`."""
    try:  # a busy or unreachable store: retried (`effbert.tracking_journal`), else nothing runs
        backend = tracking_journal.retried(lambda: MlflowBackend(configured_uri, experiment), "opening the store")
    except Exception as err:
        if not tracking_journal.store_unavailable(err):
            raise
        uri = tracking_uri(configured_uri)
        raise EffbertError(
            f"tracking store {uri} unavailable ({tracking_journal.one_line(err)}); nothing was run"
        ) from None
    mlflow = backend.mlflow
    tags = {"effbert.kind": "pipeline", "effbert.git_commit": git_commit(), "effbert.code_digest": code_digest()}
    tags.update(workspace_tags())
    for orphan in end_orphaned_runs(backend):
        log.warning("MLflow run %s was left RUNNING by a process that is gone: marked KILLED", orphan)
    saved = {var: os.environ.get(var) for var in (PARENT_ENV, tracking_service.SOCKET_ENV)}
    with mlflow.start_run(run_name=name, tags=tags) as run, tracking_service.serve(backend) as socket_path:
        mlflow.log_artifact(str(params_file))
        os.environ[PARENT_ENV] = run.info.run_id
        os.environ[tracking_service.SOCKET_ENV] = socket_path
        try:
            yield run.info.run_id
            lock = params_file.parent / "dvc.lock"
            if lock.is_file():
                mlflow.log_artifact(str(lock))
        except StageInterrupted:  # SIGTERM or SIGINT stopped the pipeline (`effbert.interrupt.run_forwarding`)
            mlflow.end_run("KILLED")
            raise
        finally:
            for orphan in end_orphaned_runs(backend):  # the engine is done: a stage run still RUNNING was killed
                log.warning("MLflow run %s: its stage process was killed: marked KILLED", orphan)
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
