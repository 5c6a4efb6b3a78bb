"""What every stage command shares: seeding, device choice, a per-stage log file, atomic outputs, training history."""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("effbert")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels where cheap."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def device() -> str:
    """``cuda`` when a GPU is present, else ``cpu``: never hard-coded."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


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


def checkpoint_dir(stage: str, key: str, fingerprint: str) -> Path:
    """Where a long stage keeps resumable checkpoints: outside DVC's outputs, keyed by its inputs and params.

    DVC deletes declared outputs before it runs a stage, so checkpoints live in ``.effbert/checkpoints``;
    the fingerprint makes sure a run only ever resumes from checkpoints of the same inputs and params.
    """
    from effbert.tracking import project_root

    return project_root() / ".effbert" / "checkpoints" / stage / key / fingerprint


def history_callback(stage: Any) -> Any:
    """A TrainerCallback that forwards the Trainer's logs to the stage's MLflow run (``eval_`` -> ``heldout/``)."""
    from transformers import TrainerCallback

    class MlflowHistory(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs:
                metrics = {k.replace("eval_", "heldout/"): v for k, v in logs.items()}
                stage.log_metrics(metrics, step=state.global_step)

    return MlflowHistory()


TRAIN_CURVES = ("loss", "kd_attention", "kd_hidden", "kd_prediction")
"""Training-log columns plotted when present: the total loss and the distillation terms."""


def write_history(history: Any, report_dir: Path) -> None:
    """The Trainer's log history as ``history.csv``, per-curve CSVs under ``plots/`` (for ``dvc plots``) and
    ``history.png`` (for people): training losses against step, and the held-out selection score when evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from effbert.training import SELECTION

    history.to_csv(report_dir / "history.csv", index=False)
    plots = report_dir / "plots"
    plots.mkdir()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    curves = [c for c in TRAIN_CURVES if c in history and history[c].notna().any()]
    for curve in curves:
        rows = history.dropna(subset=[curve])[["step", curve]]
        rows.to_csv(plots / f"train_{curve}.csv", index=False)
        ax.plot(rows["step"], rows[curve], label=f"train {curve}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if len(curves) > 1:
        ax.set_yscale("log")
    score = f"eval_{SELECTION}"
    if score in history and history[score].notna().any():
        evals = history.dropna(subset=[score])[["step", score]]
        evals.rename(columns={score: "heldout_score"}).to_csv(plots / "heldout_score.csv", index=False)
        ax2 = ax.twinx()
        ax2.plot(evals["step"], evals[score], "o-", color="black", label="held-out score")
        ax2.set_ylabel("held-out selection score")
    fig.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(report_dir / "history.png", dpi=100)
    plt.close(fig)


SAMPLE_DATA = Path("data") / "sample"
"""The bundled demo data, relative to the project root: numbers on it are not comparable to the paper."""


def is_sample_data(source: str | Path | None) -> bool:
    """Whether ``source`` (a data path from params, relative to the project root or absolute) lies in the bundled
    demo sample (``data/sample`` or below it)."""
    if source is None:
        return False
    from effbert import tracking

    root = tracking.project_root()
    sample = (root / SAMPLE_DATA).resolve()
    path = (root / source).resolve()
    return path == sample or sample in path.parents
