"""Start a throw-away one-node Slurm cluster (Debian packages) for tests of the Snakemake slurm profile.

Not a test module. Use :func:`slurm_setup_error` to decide whether to skip, then::

    with one_node_slurm(tmp_path) as cluster:
        subprocess.run([...], env=cluster.env, timeout=...)

The cluster is private to one ``with`` block: its own munged socket, free TCP ports, and state, spool, log and
pid files in a fresh short directory (Unix socket paths are limited to 108 bytes). Logs and the slurm.conf are
copied to ``workdir / "slurm"`` on exit. Everything runs with timeouts; teardown goes by pid file.

One global path is unavoidable: /etc/slurm/slurm.conf. ``SLURM_CONF`` reaches sbatch, but inside each job the
slurm-jobstep plugin strips every ``SLURM_*`` variable (SLURM_CONF included) before its nested ``srun``, which then
finds no configuration ("DNS SRV lookup failed"). So the config is also symlinked there for the lifetime of the
cluster, under a lock file that serializes concurrent test runs; a real (non-symlink) file there makes
:func:`slurm_setup_error` refuse.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGES = ("slurm-wlm", "munge")
REQUIRED_BINARIES = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "slurmctld", "slurmd", "munged")
PARTITION = "effbert"
MUNGE_KEY = Path("/etc/munge/munge.key")
OPT_OUT_ENV = "EFFBERT_SKIP_SLURM"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
BASE_PREFIX = "effbert-slurm-"
LOCK_FILE = Path("/tmp/effbert-slurm.lock")


class SlurmSetupError(RuntimeError):
    """The one-node cluster could not be started."""


@dataclass(frozen=True)
class SlurmCluster:
    """A running one-node cluster: pass ``env`` to every Slurm client and snakemake call."""

    partition: str
    node: str
    cpus: int
    real_memory_mb: int
    base: Path
    conf: Path
    env: Mapping[str, str] = field(repr=False)

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        return _run(list(args), timeout=timeout, env=self.env)


def _run(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with a mandatory timeout, captured text output and no stdin."""
    return subprocess.run(
        list(cmd),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        check=check,
    )


def _missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None]


def slurm_setup_error() -> str | None:
    """Return None if a one-node cluster can be set up here, else the reason why not (for pytest.skip)."""
    if os.environ.get(OPT_OUT_ENV, "").strip() not in ("", "0"):
        return f"{OPT_OUT_ENV} is set"
    if not sys.platform.startswith("linux"):
        return f"needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "needs root to install slurm-wlm/munge and to start munged, slurmctld and slurmd"
    missing = _missing_binaries()
    if missing and shutil.which("apt-get") is None:
        return f"Slurm binaries missing ({', '.join(missing)}) and no apt-get to install {' '.join(PACKAGES)}"
    if not _system_conf_is_ours_or_absent():
        return f"{SYSTEM_CONF} belongs to a real Slurm installation; the test cluster will not replace it"
    return None


def _system_conf_is_ours_or_absent() -> bool:
    """True if /etc/slurm/slurm.conf is absent or a (possibly stale) symlink made by this module."""
    if SYSTEM_CONF.is_symlink():
        target = Path(os.readlink(SYSTEM_CONF))
        return target.name == "slurm.conf" and target.parent.name.startswith(BASE_PREFIX)
    return not SYSTEM_CONF.exists()


@contextlib.contextmanager
def _exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an flock on ``path``, waiting at most ``timeout`` seconds for another test run to release it."""
    with open(path, "a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SlurmSetupError(f"another test cluster held {path} for more than {timeout:.0f} s") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _link_system_conf(conf: Path) -> None:
    """Point /etc/slurm/slurm.conf at ``conf`` (replacing only a stale link of ours)."""
    if not _system_conf_is_ours_or_absent():
        raise SlurmSetupError(f"{SYSTEM_CONF} is not ours; refusing to replace it")
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.unlink(missing_ok=True)
    SYSTEM_CONF.symlink_to(conf)


def _unlink_system_conf(conf: Path) -> None:
    if SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == conf:
        SYSTEM_CONF.unlink()


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get unless the binaries are already there."""
    if not _missing_binaries():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd, limit in (
        (["apt-get", "update", "-q"], 300),
        (["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], 600),
    ):
        proc = _run(cmd, timeout=limit, env=env)
        if proc.returncode != 0:
            raise SlurmSetupError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr}")
    still_missing = _missing_binaries()
    if still_missing:
        raise SlurmSetupError(f"still missing after apt-get install: {', '.join(still_missing)}")


def _ensure_munge_key(munge: pwd.struct_passwd) -> None:
    """Create /etc/munge/munge.key (owner munge, mode 0400) if the package did not."""
    if MUNGE_KEY.exists():
        return
    MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
    os.chown(MUNGE_KEY.parent, munge.pw_uid, munge.pw_gid)
    os.chmod(MUNGE_KEY.parent, 0o700)
    _run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"], timeout=30, check=True)
    os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
    os.chmod(MUNGE_KEY, 0o400)


def _short_hostname() -> str:
    return socket.gethostname().split(".")[0]


def _ensure_resolvable(host: str) -> None:
    """Add ``host`` to /etc/hosts when it does not resolve."""
    try:
        socket.gethostbyname(host)
    except OSError:
        with open("/etc/hosts", "a", encoding="utf-8") as fh:
            fh.write(f"\n127.0.0.1\t{host}\n")
        socket.gethostbyname(host)


def _free_ports(n: int) -> list[int]:
    """Ask the kernel for ``n`` distinct free TCP ports on localhost."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _available_memory_mb() -> int:
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    raise SlurmSetupError("no MemAvailable in /proc/meminfo")


def _slurm_conf(*, base: Path, host: str, cpus: int, memory_mb: int, ports: Sequence[int], munge_socket: Path) -> str:
    settings = {
        "ClusterName": "effbert-test",
        "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmctldPort": ports[0],
        "SlurmdPort": ports[1],
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={munge_socket}",
        "StateSaveLocation": base / "state",
        "SlurmdSpoolDir": base / "spool",
        "SlurmctldPidFile": base / "run" / "slurmctld.pid",
        "SlurmdPidFile": base / "run" / "slurmd.pid",
        "SlurmctldLogFile": base / "log" / "slurmctld.log",
        "SlurmdLogFile": base / "log" / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SwitchType": "switch/none",
        "MpiDefault": "none",
        "SchedulerType": "sched/backfill",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        "DefMemPerCPU": 1000,
        # The plugin's squeue mode needs MinJobAge >= 3 x its first status-check delay; an hour also keeps every
        # finished job listed until the suite counts them (the smoke DAG takes more than the default 300 s).
        "MinJobAge": 3600,
        "ReturnToService": 2,
        "AccountingStorageType": "accounting_storage/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "JobCompType": "jobcomp/filetxt",
        "JobCompLoc": base / "log" / "jobcomp.txt",
        "MailProg": "/bin/true",
    }
    lines = [f"{k}={v}" for k, v in settings.items()]
    lines.append(f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN")
    lines.append(f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``predicate()`` until true or raise SlurmSetupError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SlurmSetupError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_daemon(
    cmd: Sequence[str],
    pid_file: Path,
    log: Path,
    env: Mapping[str, str],
    name: str,
    user: pwd.struct_passwd | None = None,
) -> int:
    """Start a self-daemonizing program (optionally as ``user``) and return the pid from its pid file."""
    as_user: dict[str, Any] = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    # Output goes to a file, never a pipe: a daemon that inherits the pipe would block subprocess.run.
    with open(log, "ab") as out:
        proc = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            timeout=30,
            env=dict(env),
            check=False,
            cwd="/",
            **as_user,
        )
    if proc.returncode != 0:
        raise SlurmSetupError(f"{name} exited with {proc.returncode}; see {log}:\n{_tail(log)}")

    def started() -> bool:
        pid = _read_pid(pid_file)
        return pid is not None and _alive(pid)

    try:
        _wait_for(started, 15, f"{name} pid file {pid_file}")
    except SlurmSetupError as exc:
        raise SlurmSetupError(f"{exc}\n{_tail(log)}") from None
    pid = _read_pid(pid_file)
    assert pid is not None
    return pid


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _stop_pid_file(pid_file: Path, timeout: float = 15) -> None:
    """SIGTERM the process named in ``pid_file``, SIGKILL it if it outlives ``timeout``."""
    pid = _read_pid(pid_file)
    if pid is None or not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _node_state(env: Mapping[str, str], host: str) -> str:
    try:
        proc = _run(["sinfo", "-h", "-N", "-n", host, "-o", "%T"], timeout=10, env=env)
    except subprocess.TimeoutExpired:
        return ""
    return proc.stdout.strip().lower() if proc.returncode == 0 else ""


def _cancel_all(env: Mapping[str, str]) -> None:
    """scancel every job of this cluster and wait (bounded) until squeue shows none."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        _run(["scancel", "--partition", PARTITION], timeout=15, env=env)

    def no_jobs() -> bool:
        try:
            proc = _run(["squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i"], timeout=10, env=env)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode != 0 or not proc.stdout.strip()

    with contextlib.suppress(SlurmSetupError):
        _wait_for(no_jobs, 30, "cancelled jobs to leave the queue", interval=0.5)


@contextlib.contextmanager
def one_node_slurm(workdir: Path, *, idle_timeout: float = 60, lock_timeout: float = 600) -> Iterator[SlurmCluster]:
    """Install (if needed) and start munged, slurmctld and slurmd for one node; tear all down on exit."""
    reason = slurm_setup_error()
    if reason is not None:
        raise SlurmSetupError(reason)
    with _exclusive_lock(LOCK_FILE, lock_timeout):
        ensure_installed()
        yield from _one_node_slurm_locked(workdir, idle_timeout)


def _one_node_slurm_locked(workdir: Path, idle_timeout: float) -> Iterator[SlurmCluster]:
    munge = pwd.getpwnam("munge")
    _ensure_munge_key(munge)
    host = _short_hostname()
    _ensure_resolvable(host)

    workdir.mkdir(parents=True, exist_ok=True)
    # Short path (stepd sockets live in the spool dir) that the munge user can traverse.
    base = Path(tempfile.mkdtemp(prefix=BASE_PREFIX, dir="/tmp"))
    base.chmod(0o755)
    for sub in ("state", "spool", "run", "log"):
        (base / sub).mkdir(mode=0o755)
    munge_dir = base / "munge"
    munge_dir.mkdir()
    os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
    munge_dir.chmod(0o711)  # munged wants its socket dir executable by all, writable by munge only
    munge_socket = munge_dir / "munge.socket"
    munge_pid = munge_dir / "munged.pid"

    cpus = len(os.sched_getaffinity(0))
    memory_mb = max(1000, int(_available_memory_mb() * 0.9))
    conf = base / "slurm.conf"
    conf.write_text(
        _slurm_conf(
            base=base, host=host, cpus=cpus, memory_mb=memory_mb, ports=_free_ports(2), munge_socket=munge_socket
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for var in [v for v in env if v.startswith("SLURM_") and v != "SLURM_CONF"]:
        del env[var]  # never inherit another allocation's settings
    cluster = SlurmCluster(
        partition=PARTITION, node=host, cpus=cpus, real_memory_mb=memory_mb, base=base, conf=conf, env=env
    )
    daemons_started = False
    try:
        _link_system_conf(conf)
        _start_daemon(
            [
                "munged",
                f"--socket={munge_socket}",
                f"--pid-file={munge_pid}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
                f"--key-file={MUNGE_KEY}",
            ],
            munge_pid,
            base / "log" / "munged.out",
            env,
            "munged",
            user=munge,
        )
        _start_daemon(
            ["slurmctld", "-f", str(conf)],
            base / "run" / "slurmctld.pid",
            base / "log" / "slurmctld.out",
            env,
            "slurmctld",
        )
        daemons_started = True
        _start_daemon(
            ["slurmd", "-f", str(conf), "-N", host],
            base / "run" / "slurmd.pid",
            base / "log" / "slurmd.out",
            env,
            "slurmd",
        )
        try:
            _wait_for(lambda: _node_state(env, host) in ("idle", "mixed"), idle_timeout, f"node {host} to be idle")
        except SlurmSetupError as exc:
            raise SlurmSetupError(
                f"{exc} (state {_node_state(env, host)!r})\n"
                f"slurmctld.log:\n{_tail(base / 'log' / 'slurmctld.log')}\n"
                f"slurmd.log:\n{_tail(base / 'log' / 'slurmd.log')}"
            ) from None
        yield cluster
    finally:
        if daemons_started:
            _cancel_all(env)
        for pid_file in (base / "run" / "slurmd.pid", base / "run" / "slurmctld.pid", munge_pid):
            _stop_pid_file(pid_file)
        _unlink_system_conf(conf)
        keep = workdir / "slurm"
        keep.mkdir(exist_ok=True)
        for src in [conf, *(base / "log").glob("*"), munge_dir / "munged.log"]:
            with contextlib.suppress(OSError):
                shutil.copy2(src, keep / src.name)
        shutil.rmtree(base, ignore_errors=True)
