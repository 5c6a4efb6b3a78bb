"""Where a task's official files are read from: the ``data`` params section's folders and the official names."""

from __future__ import annotations

from pathlib import Path

from effbert.data import glue
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.params import DataParams


def source_path(data: DataParams, root: Path, task: str, split: str) -> Path:
    """The official file ``split`` of ``task`` is read from (whether or not it exists).

    Args:
        data: the ``data`` params section (``glue_dir``, ``squad_dir``, relative to ``root``).
        root: the project root.
        task: task id.
        split: ``train``, a dev split or a test split of the task.

    Returns:
        The path under ``root`` (``data/sample/glue/SST-2/test.tsv``, ``.../squad/test-v1.1.json``).

    Raises:
        EffbertError: the data folder of the task's benchmark is null (hub data not fetched yet).
    """
    spec = get_task(task)
    if spec.is_squad:
        if data.squad_dir is None:
            raise EffbertError("data.squad_dir is null: run `effbert fetch-data` first to materialize the hub data")
        name = spec.train_file if split == "train" else {**spec.dev_splits, **spec.test_splits}[split]
        return root / data.squad_dir / name
    if data.glue_dir is None:
        raise EffbertError("data.glue_dir is null: run `effbert fetch-data` first to materialize the hub data")
    return glue.glue_split_path(root / data.glue_dir, task, split)


SAMPLE_DATA = Path("data") / "sample"
"""The bundled demo data, relative to the project root: numbers on it are not comparable to the paper."""


def is_sample_data(source: str | Path | None, root: Path) -> bool:
    """Whether ``source`` (a data path from params, relative to ``root`` or absolute) lies in the bundled demo sample
    (``data/sample`` or below it)."""
    if source is None:
        return False
    sample = (root / SAMPLE_DATA).resolve()
    path = (root / source).resolve()
    return path == sample or sample in path.parents
