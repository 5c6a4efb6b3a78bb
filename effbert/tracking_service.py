"""The stages' tracking calls, served by the process of ``effbert run`` over a Unix socket.

Importing MLflow and opening its SQLite store cost about 2.7 s per process (``python -X importtime`` and cProfile
of a stage: ``import mlflow`` 1.1-1.6 s, the SQLAlchemy store 1.0 s), once per stage. ``effbert run`` has MLflow
open already (the pipeline's parent run), so for the pipeline's duration it answers the stages' tracking calls on a
socket whose path it exports as ``$EFFBERT_TRACKING_SOCKET``: a stage started by it (through DVC or Snakemake) sends
its calls there and never imports MLflow. A stage started any other way (``dvc repro`` directly, a cluster node, a
test) makes the same calls in its own process. The records are the same either way, because the server runs each
call on the same backend object (`effbert.tracking.MlflowBackend`) a stage would run in process.

Protocol: newline-delimited JSON, one request ``{"op": name, "args": {...}}`` answered by ``{"result": value}`` or
``{"error": "one line"}``. Only the backend's ``OPS`` can be called. Calls are serialised by a lock (SQLite has one
writer anyway). This module does not import MLflow.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from effbert.errors import EffbertError

SOCKET_ENV = "EFFBERT_TRACKING_SOCKET"
"""The environment variable holding the socket path of the serving ``effbert run``."""


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, backend: Any) -> None:
        super().__init__(path, _Handler)
        self.backend = backend
        self.lock = threading.Lock()

    def dispatch(self, op: str, args: dict[str, Any]) -> Any:
        if op not in self.backend.OPS:
            raise ValueError(f"unknown tracking operation {op!r}")
        with self.lock:
            return getattr(self.backend, op)(**args)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for line in self.rfile:
            try:
                request = json.loads(line)
                reply = {"result": self.server.dispatch(request["op"], request.get("args", {}))}
            except Exception as exc:  # the stage gets the failure as its own error
                reply = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            self.wfile.write(json.dumps(reply).encode() + b"\n")
            self.wfile.flush()


@contextmanager
def serve(backend: Any) -> Iterator[str]:
    """Serve ``backend``'s ``OPS`` on a fresh Unix socket (in a private temporary folder) in a background thread.

    Yields:
        The socket's path, for ``$EFFBERT_TRACKING_SOCKET``.
    """
    folder = tempfile.mkdtemp(prefix="effbert-tracking-")  # 0700: only this user can connect
    path = os.path.join(folder, "socket")
    server = _Server(path, backend)
    thread = threading.Thread(target=server.serve_forever, name="effbert-tracking", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


class RemoteBackend:
    """The client side: every ``OPS`` name of the served backend becomes a method that sends the call.

    Raises:
        OSError: on construction, when nothing serves ``path``.
    """

    def __init__(self, path: str, ops: tuple[str, ...]) -> None:
        self.path = path
        self.OPS = ops
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(path)
        self._stream = self._socket.makefile("rwb")
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> Any:
        """Send one call and wait for its result.

        Raises:
            EffbertError: the server failed the call, or the connection broke.
        """
        with self._lock:
            try:
                self._stream.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
                self._stream.flush()
                line = self._stream.readline()
            except OSError as err:
                raise EffbertError(f"tracking service at {self.path}: {err}") from None
        if not line:
            raise EffbertError(f"tracking service at {self.path}: closed the connection during {op}")
        reply = json.loads(line)
        if "error" in reply:
            raise EffbertError(f"tracking service, {op}: {reply['error']}")
        return reply["result"]

    def __getattr__(self, name: str) -> Any:
        if name in self.__dict__.get("OPS", ()):
            return lambda **args: self.call(name, **args)
        raise AttributeError(name)

    def close(self) -> None:
        """Close the connection."""
        self._stream.close()
        self._socket.close()
