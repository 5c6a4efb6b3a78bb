"""The MLflow ``python_function`` model of a final student: text in, labels or answers out.

:class:`EffBertPyfunc` is logged (by `effbert.tracking.StageRun.register_model`) with one artifact, the Hugging Face
model directory under :data:`MODEL_ARTIFACT`, and a ``model_config`` (:func:`pyfunc_config`: the task and the
tokenisation / span-decoding settings the student was evaluated with). Once registered::

    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/effbert-sst2@champion")
    model.predict(pd.DataFrame({"text_a": ["a gripping film", "dull and far too long"]}))

Input columns: ``text_a`` (and ``text_b`` for sentence-pair tasks) for GLUE tasks; ``question`` and ``context``
(``id`` optional) for SQuAD. Output: a DataFrame with ``label`` and ``probability`` (classification), ``score``
(regression) or ``answer`` (span QA), one row per input row. Tokenisation, batching and answer decoding are the
ones the evaluation uses (`effbert.data.prepare`, `effbert.eval.inference`, `effbert.data.qa_features`). Loading needs
the ``effbert`` package importable (the class is pickled by reference). No tracking-store I/O here.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from effbert import __version__
from effbert.data.tasks import TaskSpec, get_task
from effbert.errors import EffbertError
from effbert.params import Params

__all__ = [
    "MODEL_ARTIFACT",
    "REQUIREMENTS",
    "EffBertPyfunc",
    "input_columns",
    "pip_requirements",
    "pyfunc_config",
    "pyfunc_signature",
]

MODEL_ARTIFACT = "model"
"""Name of the artifact holding the Hugging Face model directory."""

REQUIREMENTS = ("torch", "transformers", "tokenizers", "datasets", "numpy", "pandas", "mlflow")
"""Distributions the model needs at load time besides effbert (pinned to the versions it was logged with)."""


def input_columns(spec: TaskSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (required, optional) input columns of a task's model.

    Args:
        spec: the task.

    Returns:
        ``(("question", "context"), ("id",))`` for span QA, ``(("text_a",), ("text_b",))`` otherwise.
    """
    if spec.is_squad:
        return ("question", "context"), ("id",)
    return ("text_a",), ("text_b",)


def pyfunc_config(params: Params, task: str) -> dict[str, Any]:
    """The ``model_config`` of a logged student: the task and the settings the pipeline evaluated it with.

    Args:
        params: the run's params (``data`` tokenisation, ``evaluate`` batch size and span decoding).
        task: task id.

    Returns:
        Plain JSON values: ``task``, ``max_seq_length``, ``doc_stride`` or ``window_overlap`` (SQuAD's window rule,
        the other null), ``max_query_length``, ``batch_size``,
        ``n_best``, ``max_answer_length``, ``null_threshold``.

    Raises:
        ParamsError: unknown task.
    """
    get_task(task)
    data, evaluate = params.data, params.evaluate
    return {
        "task": task,
        "max_seq_length": data.max_seq_length,
        "doc_stride": data.doc_stride,
        "window_overlap": data.window_overlap,
        "max_query_length": data.max_query_length,
        "batch_size": evaluate.batch_size,
        "n_best": evaluate.n_best,
        "max_answer_length": evaluate.max_answer_length,
        "null_threshold": evaluate.null_threshold,
    }


def pyfunc_signature(task: str) -> Any:
    """The MLflow ``ModelSignature`` of a task's model: its string input columns and its output columns.

    Args:
        task: task id.

    Returns:
        The signature (MLflow then checks every input DataFrame against it).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    spec = get_task(task)
    required, optional = input_columns(spec)
    inputs: list[Any] = [ColSpec("string", name) for name in required]
    inputs += [ColSpec("string", name, required=False) for name in optional]
    if spec.is_squad:
        outputs: list[Any] = [ColSpec("string", "answer")]
    elif spec.kind == "regression":
        outputs = [ColSpec("double", "score")]
    else:
        outputs = [ColSpec("string", "label"), ColSpec("double", "probability")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model: effbert and :data:`REQUIREMENTS` at their installed versions."""
    pins = [f"effbert=={__version__}"]
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


class EffBertPyfunc(PythonModel):
    """A final student as an MLflow ``python_function`` model (see the module docstring)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.spec: TaskSpec | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = "cpu"

    def load_context(self, context: Any) -> None:
        """Load the model directory and tokenizer from the artifacts; read the task settings.

        Args:
            context: MLflow's ``PythonModelContext`` (``artifacts``, ``model_config``).

        Raises:
            EffbertError: the model config names no task.
        """
        import torch

        from effbert.models.auto import load_task_model
        from effbert.models.teacher import load_tokenizer

        self.config = dict(context.model_config or {})
        if "task" not in self.config:
            raise EffbertError(
                "pyfunc model_config has no 'task': log the model with effbert.export.pyfunc.pyfunc_config"
            )
        self.spec = get_task(self.config["task"])
        model_dir = context.artifacts[MODEL_ARTIFACT]
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_task_model(model_dir, self.spec).eval()
        self.tokenizer = load_tokenizer(model_dir)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Predict one row per input row.

        Args:
            context: MLflow's context (unused; everything was loaded by :meth:`load_context`).
            model_input: the task's input columns (:func:`input_columns`), one row per example.
            params: unused.

        Returns:
            ``label`` and ``probability``, ``score``, or ``answer`` (see the module docstring).

        Raises:
            EffbertError: the model was not loaded, a required column is missing, or SQuAD ids repeat.
        """
        if self.spec is None:
            raise EffbertError("EffBertPyfunc.predict before load_context: load it with mlflow.pyfunc.load_model")
        frame = pd.DataFrame(model_input)
        required, optional = input_columns(self.spec)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise EffbertError(
                f"{self.spec.name} model input lacks column(s) {missing}; expected {list(required)}"
                f" (optional {list(optional)}), got {list(frame.columns)}"
            )
        if self.spec.is_squad:
            return self._answers(self.spec, frame)
        return self._classify(self.spec, frame)

    def _classify(self, spec: TaskSpec, frame: pd.DataFrame) -> pd.DataFrame:
        """Labels with their probabilities (or regression scores) for GLUE rows."""
        import torch

        from effbert.data.fingerprint import fingerprint
        from effbert.data.prepare import tokenize_pairs
        from effbert.eval.inference import predict_logits
        from effbert.eval.scoring import logits_to_predictions

        texts_b = frame["text_b"].fillna("") if "text_b" in frame.columns else [""] * len(frame)
        examples = [
            {"idx": i, "text_a": str(a), "text_b": str(b)}
            for i, (a, b) in enumerate(zip(frame["text_a"], texts_b, strict=True))
        ]
        features = tokenize_pairs(
            examples, self.tokenizer, self.config["max_seq_length"], fingerprint("pyfunc", spec.name, examples)
        )
        logits = predict_logits(self.model, features, self.tokenizer, self.config["batch_size"], self.device)[0]
        predictions = logits_to_predictions(spec, logits)
        if spec.kind == "regression":
            return pd.DataFrame({"score": predictions})
        probabilities = torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy()
        return pd.DataFrame(
            {
                "label": [spec.labels[int(i)] for i in predictions],
                "probability": probabilities[np.arange(len(predictions)), predictions],
            }
        )

    def _answers(self, spec: TaskSpec, frame: pd.DataFrame) -> pd.DataFrame:
        """Answer texts (slices of each context) for SQuAD rows."""
        from effbert.data.fingerprint import fingerprint
        from effbert.data.prepare import tokenize_squad
        from effbert.data.qa_features import Windows, postprocess_predictions
        from effbert.eval.inference import predict_logits

        ids = [str(i) for i in frame["id"]] if "id" in frame.columns else [str(i) for i in range(len(frame))]
        if len(set(ids)) != len(ids):
            raise EffbertError(f"{spec.name} model input: the 'id' column repeats values")
        examples = [
            {"id": i, "question": str(q), "context": str(c)}
            for i, q, c in zip(ids, frame["question"], frame["context"], strict=True)
        ]
        features = tokenize_squad(
            examples,
            self.tokenizer,
            windows=Windows(
                max_seq_length=self.config["max_seq_length"],
                max_query_length=self.config["max_query_length"],
                doc_stride=self.config["doc_stride"],
                overlap=self.config.get("window_overlap"),
            ),
            for_training=False,
            fp=fingerprint("pyfunc", spec.name, examples),
        )
        start, end = predict_logits(self.model, features, self.tokenizer, self.config["batch_size"], self.device)
        answers, _ = postprocess_predictions(
            examples,
            features,
            start,
            end,
            n_best=self.config["n_best"],
            max_answer_length=self.config["max_answer_length"],
            version_2=spec.name == "squad_v2",
            null_threshold=self.config["null_threshold"],
        )
        return pd.DataFrame({"answer": [answers[i] for i in ids]})
