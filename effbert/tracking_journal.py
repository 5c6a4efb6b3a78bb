"""Tracking calls that outlive an unavailable store: retried, else kept as records the next ``effbert run`` replays.

A stage's tracking store can be out of reach (an ``MLFLOW_TRACKING_URI`` server down or unreachable from a cluster
node) or busy (SQLite's "database is locked" while another process writes). :class:`JournalingBackend` wraps a
stage's backend (`effbert.tracking.MlflowBackend`, or the tracking service's client): a call that fails for one of
those reasons (:func:`store_unavailable`; any other error is raised as before) is retried with a doubling wait, at
most :data:`RETRIES_ENV` times and within :data:`RETRY_SECONDS_ENV` seconds from its first failure. If it still
fails, the backend turns *pending*: that call and every later one are kept in order as records (``{"op", "args",
"result"}``; a created run gets a placeholder id, ``pending-<hex>``) instead of being sent, so the stage goes on and
writes its outputs. `effbert.runtime.stage_context` stores the records in each output's ``lineage.json``
(``"tracking": "pending"``); the next ``effbert run`` replays them into its store (:func:`replay`, called by
`effbert.tracking.reconcile_pending`), placeholders replaced by the new run ids, and marks the file reconciled.
Nothing recorded is lost: params, metrics (with their steps and times), tags, dataset inputs, nested runs, the
run's end and its artifacts (files still on disk).

Environment (read when a backend is created):

- ``EFFBERT_TRACKING_RETRIES``: retries of a failed call (default 4; 0: none).
- ``EFFBERT_TRACKING_RETRY_SECONDS``: the time a call may spend retrying, from its first failure (default 20); the
  waits are 1, 2, 4, ... s. One outage delays a stage by at most this plus one attempt: once pending, a backend
  never waits again.

This module does not import MLflow.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

RETRIES_ENV = "EFFBERT_TRACKING_RETRIES"
RETRY_SECONDS_ENV = "EFFBERT_TRACKING_RETRY_SECONDS"
PLACEHOLDER = "pending-"
"""The prefix of a run id handed out while the store is unavailable."""

_UNAVAILABLE = re.compile(
    r"database is locked|database table is locked|unable to open database|disk I/O error"
    r"|API request to \S+ failed with (exception|error code (429|5\d\d))"
    r"|Connection refused|Max retries exceeded|timed out|Temporary failure in name resolution"
    r"|TEMPORARILY_UNAVAILABLE|tracking service at "
)


def store_unavailable(err: BaseException) -> bool:
    """Whether ``err`` says the store is unreachable or busy (worth retrying), not that the call was wrong."""
    return isinstance(err, ConnectionError | TimeoutError) or bool(_UNAVAILABLE.search(str(err)))


def one_line(err: BaseException) -> str:
    """``Type: first line`` of an error, at most 300 characters."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _settings() -> tuple[int, float]:
    try:
        retries = max(0, int(os.environ.get(RETRIES_ENV, "4")))
        seconds = max(0.0, float(os.environ.get(RETRY_SECONDS_ENV, "20")))
    except ValueError as err:
        raise ValueError(f"{RETRIES_ENV} / {RETRY_SECONDS_ENV}: not a number ({err})") from None
    return retries, seconds


def retried(call: Callable[[], Any], what: str) -> Any:
    """``call()``, retried while it fails with :func:`store_unavailable` (see the module's environment)."""
    retries, budget = _settings()
    wait, deadline = 1.0, 0.0
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as err:
            now = time.monotonic()
            deadline = deadline or now + budget
            if not store_unavailable(err) or attempt == retries or now + wait > deadline:
                raise
            log.info("tracking store unavailable (%s): %s retried in %.0f s", one_line(err), what, wait)
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover


class JournalingBackend:
    """A stage's backend that retries a call the store cannot take, then keeps the calls as records (the module's
    docstring).

    Args:
        connect: builds the real backend (on first use, retried like a call).
        store: what `describe` answers (``uri``, ``experiment``): where the records belong.
        ops: the operations a backend has (`effbert.tracking.MlflowBackend.OPS`).
    """

    def __init__(self, connect: Callable[[], Any], store: Mapping[str, str], ops: tuple[str, ...]) -> None:
        self.OPS = ops
        self._connect = connect
        self._backend: Any = None
        self.store = dict(store)
        self.records: list[dict[str, Any]] | None = None  # None: the store takes the calls
        self.reason = ""

    @property
    def pending(self) -> bool:
        """Whether the calls are being kept as records."""
        return self.records is not None

    def describe(self) -> dict[str, str]:
        return dict(self.store)

    def __getattr__(self, name: str) -> Any:
        if name in self.__dict__.get("OPS", ()) and name != "describe":
            return lambda **args: self.call(name, args)
        raise AttributeError(name)

    def call(self, op: str, args: dict[str, Any]) -> Any:
        """Send ``op`` to the store (retried), or keep it as a record once the store is unavailable."""
        if self.records is None:
            try:
                return retried(lambda: getattr(self.live(), op)(**args), op)
            except Exception as err:
                if not store_unavailable(err):
                    raise
                self.records, self.reason = [], one_line(err)
                log.warning(
                    "tracking store %s unavailable (%s): this stage's records are kept in its outputs' lineage.json "
                    "until the next `effbert run` records them",
                    self.store.get("uri", "?"),
                    self.reason,
                )
        result = f"{PLACEHOLDER}{uuid.uuid4().hex}" if op in ("start_run", "child_run") else None
        self.records.append({"op": op, "args": args, "result": result})
        return result

    def live(self) -> Any:
        """The backend the calls go to (created on first use)."""
        if self._backend is None:
            self._backend = self._connect()
        return self._backend


def _mapped(value: Any, ids: Mapping[str, str]) -> Any:
    """``value`` with every placeholder run id in it replaced by its recorded run's id."""
    if isinstance(value, str) and PLACEHOLDER in value:
        for placeholder, run_id in ids.items():
            value = value.replace(placeholder, run_id)
        return value
    if isinstance(value, dict):
        return {key: _mapped(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_mapped(item, ids) for item in value]
    return value


def replay(records: list[dict[str, Any]], backend: Any, ids: dict[str, str]) -> list[str]:
    """Send kept ``records`` to ``backend`` in order; the ids of the runs they create are added to ``ids``
    (placeholder -> run id), which also maps the placeholders of earlier journals (an upstream stage's run).

    Returns:
        the artifact paths that were no longer on disk (not recorded).

    Raises:
        Exception: the backend's error; a run this replay created is then ended FAILED (best effort).
    """
    from pathlib import Path

    missing: list[str] = []
    created: list[str] = []
    try:
        for record in records:
            args = _mapped(record["args"], ids)
            if record["op"] == "log_artifact" and not Path(args["path"]).exists():
                missing.append(args["path"])
                continue
            result = getattr(backend, record["op"])(**args)
            if record.get("result"):
                ids[record["result"]] = str(result)
                created += [str(result)] if record["op"] == "start_run" else []
    except Exception:
        for run_id in created:
            try:
                backend.end_run(run_id=run_id, status="FAILED", end_time=int(time.time() * 1000))
            except Exception as err:  # the store went away again: the run stays as it is
                log.info("could not end the partly replayed run %s: %s", run_id, one_line(err))
        raise
    return missing
