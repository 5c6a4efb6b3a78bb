"""A finished training phase saved as a folder that marks it done (a resumed stage skips the phase), written
atomically and once: by rank 0 of a distributed stage, the other processes waiting until it is in place. The folder
is sealed (`effbert.integrity.seal`); :func:`finished_phase` trusts it only while it matches its digests."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from effbert import launch
from effbert.integrity import damage, seal

log = logging.getLogger(__name__)

__all__ = ["finished_phase", "save_finished_phase"]


def finished_phase(directory: Path) -> bool:
    """Whether ``directory`` holds a finished phase whose files match their digests. A damaged one (a file cut short
    or changed since, no digests) is removed by the main process with one warning line naming the file, so the phase
    runs again; every process checks for itself and reaches the same answer."""
    if not directory.is_dir():
        return False
    problem = damage(directory)
    if problem is None:
        return True
    if launch.is_main_process():
        shutil.rmtree(directory, ignore_errors=True)
        log.warning("%s: removed the damaged finished phase %s; the phase runs again", problem, directory.name)
    return False


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
        seal(partial)
        if directory.exists():
            shutil.rmtree(directory)
        partial.replace(directory)
        for path in remove:
            shutil.rmtree(path, ignore_errors=True)
    launch.barrier()
