"""A finished training phase saved as a folder that marks it done (a resumed stage skips the phase), written
atomically and once: by rank 0 of a distributed stage, the other processes waiting until it is in place."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from effbert import launch

__all__ = ["save_finished_phase"]


def save_finished_phase(directory: Path, write: Callable[[Path], None], *, remove: Sequence[Path] = ()) -> None:
    """Save a finished phase into ``directory``: ``write`` fills a sibling ``<name>.partial`` folder, which is then
    renamed into place (an older ``directory`` replaced), and the phase's Trainer checkpoints ``remove`` go.

    Only the main process writes; every process returns once the folder is there.
    """
    if launch.is_main_process():
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        write(partial)
        if directory.exists():
            shutil.rmtree(directory)
        partial.replace(directory)
        for path in remove:
            shutil.rmtree(path, ignore_errors=True)
    launch.barrier()
