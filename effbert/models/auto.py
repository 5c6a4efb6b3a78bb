"""Load any model directory the pipeline writes (fine-tuned teachers and every method's students) through
transformers' Auto classes.

:func:`register_students` registers the student model families of the compression methods with the Auto classes
(importing a family's modeling file registers it); the loaders call it, so a stage that loads a student imports the
student code explicitly and its code dependencies say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from effbert.data.tasks import TaskSpec
from effbert.errors import EffbertError
from effbert.models.teacher import DIST_PREFIX, resolve_source


def register_students() -> None:
    """Register every student model family with transformers' Auto classes (idempotent)."""
    import effbert.methods.efficientbert.modeling_effbert  # noqa: F401  (registers "effbert" on import)
    from effbert.methods.dynabert import modeling as dynabert_modeling  # noqa: F401  (registers "effbert-dynabert")
    from effbert.methods.fastbert import modeling_fastbert  # noqa: F401  (registers "effbert-fastbert" on import)


def load_task_model(model_dir: str, spec: TaskSpec) -> Any:
    """A fine-tuned model directory with the head ``spec`` needs; checks the label list it was trained with."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    register_students()
    if spec.kind == "span":
        return AutoModelForQuestionAnswering.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    if spec.kind == "classification":
        saved = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if saved != list(spec.labels):
            raise EffbertError(
                f"{model_dir}: model labels {saved} differ from the task's fixed list {list(spec.labels)}"
            )
    return model


def model_directory(source: str) -> Path:
    """A model directory with ``config.json``: a path, or ``dist:<distribution>`` (resolved like a teacher source)."""
    path = Path(resolve_source(source)) if source.startswith(DIST_PREFIX) else Path(source)
    if not path.is_dir():
        raise EffbertError(f"model directory {source!r} does not exist")
    if not (path / "config.json").is_file():
        raise EffbertError(f"model directory {source!r} has no config.json")
    return path


def load_encoder(source: str) -> nn.Module:
    """Load the bare encoder saved in a model directory (a task model's head is left out), without its pooler.

    EffBert directories (``model_type: effbert``) load through effbert's Auto registration; anything else through
    ``transformers.AutoModel``. Files are read locally only.

    Raises:
        EffbertError: missing directory, no ``config.json``, or a directory transformers cannot load.
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    path = model_directory(source)
    register_students()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a task checkpoint loaded as a bare encoder warns about its unused head
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise EffbertError(f"cannot load model directory {source!r}: {err}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # encoders are compared without the pooler (the paper's parameter convention)
    return model
