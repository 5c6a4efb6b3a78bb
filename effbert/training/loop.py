"""One resumable training call for every stage that trains (stopped with a checkpoint by SIGTERM or SIGINT), and
the callback that forwards its logs."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effbert import interrupt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    """What a finished training reports.

    Attributes:
        steps: optimizer steps in all (a resumed run counts the steps before the kill).
        seconds: wall time of this call (a resumed run: its remainder).
        resumed: whether it continued from a checkpoint a killed run left.
        log_history: the Trainer's log records (losses per logging step, evaluations, the final summary).
        best_score: the best held-out selection score, when the Trainer selected on one.
        best_step: the step of that checkpoint.
    """

    steps: int
    seconds: float
    resumed: bool
    log_history: list[dict[str, Any]] = field(repr=False)
    best_score: float | None = None
    best_step: int | None = None

    def last_logged(self, column: str = "loss") -> float | None:
        """The last logged value of a column of the log (None when it was never logged, NaN values skipped)."""
        values = [float(row[column]) for row in self.log_history if row.get(column) is not None]
        values = [value for value in values if not math.isnan(value)]
        return values[-1] if values else None

    @property
    def final_loss(self) -> float:
        """The last logged training loss; the run's mean loss when no logging step was reached; NaN without either."""
        last = self.last_logged("loss")
        if last is not None:
            return last
        return float(self.log_history[-1].get("train_loss", math.nan)) if self.log_history else math.nan

    def history(self) -> Any:
        """The log records as a pandas DataFrame (one row per record)."""
        import pandas as pd

        return pd.DataFrame(self.log_history)


def train(trainer: Any, *, resume: bool = True) -> TrainingOutcome:
    """Run ``trainer``, continuing from the last checkpoint in its ``output_dir`` when a killed run left one.

    A SIGTERM or SIGINT during training (`effbert.interrupt`) stops it after the current optimizer step, with a
    checkpoint of that step (when ``resume``: the next run continues from it), and raises `StageInterrupted`.
    Every checkpoint the Trainer saves is sealed (`effbert.training.checkpoints`); a resumed run starts from the
    newest intact one (a damaged one is removed with one warning line naming the file).

    Args:
        trainer: a Hugging Face Trainer (`effbert.training.build_trainer`).
        resume: look for a checkpoint to continue from (False: train from the start; the search's candidates are
            the unit of resume and keep no checkpoints, and an interrupted one saves none).

    Raises:
        StageInterrupted: a signal stopped the training.
    """
    from effbert.training.checkpoints import intact_checkpoint, sealing_callback

    interrupt.check("before training")
    output_dir = Path(trainer.args.output_dir)
    checkpoint = str(intact_checkpoint(output_dir) or "") if resume else ""
    trainer.add_callback(sealing_callback())
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    started = time.perf_counter()
    trainer.add_callback(stop_on_signal(save=resume))
    with interrupt.deferred():
        trainer.train(resume_from_checkpoint=checkpoint or None)
    if interrupt.requested() is not None:
        step = trainer.state.global_step
        saved = f"checkpoint {output_dir / f'checkpoint-{step}'} saved" if resume else "no checkpoint (not resumable)"
        log.warning("training stopped at step %d by a signal: %s", step, saved)
        interrupt.check(f"training stopped at step {step}, {saved}")
    state = trainer.state
    selected = trainer.args.load_best_model_at_end
    return TrainingOutcome(
        steps=int(state.global_step),
        seconds=time.perf_counter() - started,
        resumed=bool(checkpoint),
        log_history=list(state.log_history),
        best_score=float(state.best_metric or 0.0) if selected else None,
        best_step=int(str(state.best_model_checkpoint or "-0").rsplit("-", 1)[-1]) if selected else None,
    )


def metrics_callback(log_metrics: Callable[[Mapping[str, float], int], None]) -> Any:
    """A ``TrainerCallback`` that passes each of the Trainer's log records to ``log_metrics(metrics, step)``, with
    ``eval_`` renamed ``heldout/`` (the Trainer evaluates on the held-out slice of train)."""
    from transformers import TrainerCallback

    class ForwardLogs(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs:
                log_metrics({k.replace("eval_", "heldout/"): v for k, v in logs.items()}, state.global_step)

    return ForwardLogs()


def stop_on_signal(*, save: bool) -> Any:
    """A ``TrainerCallback`` that ends training after the optimizer step during which a signal arrived
    (`effbert.interrupt.requested`), saving a checkpoint of that step when ``save``. In a distributed training the
    processes agree on the step (the flag is reduced over them), so that they all save and stop together."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if _any_process(interrupt.requested() is not None, args.device):
                control.should_training_stop = True
                control.should_save = control.should_save or save

    return StopOnSignal()


def _any_process(flag: bool, device: Any) -> bool:
    """``flag`` on any process of the distributed training (this one's own flag without one)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
