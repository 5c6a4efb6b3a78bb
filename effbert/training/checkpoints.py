"""Trainer checkpoints that are trusted only when intact: each ``checkpoint-N`` folder is sealed once the Trainer has
written it (`effbert.integrity.seal`: ``digests.json``, its last file), and a resumed training starts from the
newest one that still matches its digests.

A checkpoint cut short by a kill or a full disk (no ``digests.json``), or one whose files changed since (a flipped
bit, a truncated file), is removed with one warning line naming the file; so are the checkpoints after it, and a
checkpoint whose recorded best checkpoint (held-out selection) is not intact. Training then resumes from the previous
intact checkpoint, or starts over, which reaches the same weights (the Trainer restores data order and RNG states).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from effbert import launch
from effbert.integrity import Damage, damage, seal

log = logging.getLogger(__name__)

__all__ = ["intact_checkpoint", "sealing_callback"]

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def sealing_callback() -> Any:
    """A ``TrainerCallback`` that seals each checkpoint the Trainer saves, after every process has written its
    part (the main process writes ``digests.json``)."""
    from transformers import TrainerCallback

    class SealCheckpoints(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            launch.barrier()  # each process saves its own RNG state into the folder
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if launch.is_main_process() and folder.is_dir():
                seal(folder)

    return SealCheckpoints()


def _checkpoints(output_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, newest (highest step) first."""
    found = [p for p in output_dir.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True)


def _best_damage(checkpoint: Path) -> Damage | None:
    """Whether the best checkpoint ``checkpoint`` records (held-out selection) is missing or damaged."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    best = state.get("best_model_checkpoint")
    if not best or Path(best).name == checkpoint.name:
        return None
    folder = checkpoint.parent / Path(best).name
    return damage(folder) if folder.is_dir() else Damage(folder, "missing (the best checkpoint of a later one)")


def intact_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint of ``output_dir`` that matches its digests (and whose best checkpoint does), None when
    there is none; the damaged ones and every newer one are removed first, with one warning line.

    Only the main process checks and removes; the others wait, then find the same newest checkpoint.
    """
    chosen: Path | None = None
    if launch.is_main_process() and output_dir.is_dir():
        damaged: list[str] = []
        newer: list[Path] = []
        for checkpoint in _checkpoints(output_dir):
            problem = damage(checkpoint) or _best_damage(checkpoint)
            if problem is None:
                chosen = checkpoint
                break
            damaged.append(str(problem))
            newer.append(checkpoint)
        for folder in newer:
            shutil.rmtree(folder)
        if damaged:
            then = f"resuming from {chosen.name}" if chosen else "no intact checkpoint left: training starts over"
            log.warning(
                "damaged checkpoint%s removed: %s; %s",
                "s" if len(newer) > 1 else "",
                "; ".join(dict.fromkeys(damaged)),
                then,
            )
    launch.barrier()
    if not launch.is_main_process() and output_dir.is_dir():
        chosen = next(iter(_checkpoints(output_dir)), None)
    return chosen
