"""The registry's pyfunc model without a tracking store: answers are spans of their contexts, labels come from the
task's label list, inputs are checked, and the logged settings, signature and requirements are what the pipeline
evaluated with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from effbert import __version__
from effbert.data.tasks import get_task
from effbert.errors import EffbertError, ParamsError
from effbert.export.pyfunc import (
    MODEL_ARTIFACT,
    EffBertPyfunc,
    input_columns,
    pip_requirements,
    pyfunc_config,
    pyfunc_signature,
)
from tests.export.export_helpers import SENTENCES, save_student, small_params, tiny_student

CONTEXTS = ["The book was written by Ada Lovelace in 1843 in London.", "Paris is the capital of France."]


class FakeModelContext:
    """Stands in for MLflow's ``PythonModelContext``: the artifacts and model config ``load_context`` reads."""

    def __init__(self, model_dir: Path, config: dict) -> None:
        self.artifacts = {MODEL_ARTIFACT: str(model_dir)}
        self.model_config = config


def _loaded(task: str, tmp_path: Path) -> EffBertPyfunc:
    model = EffBertPyfunc()
    directory = save_student(tiny_student(task), tmp_path / task)
    model.load_context(FakeModelContext(directory, pyfunc_config(small_params(), task)))
    return model


@pytest.fixture(autouse=True)
def _single_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_span_model_answers_with_slices_of_each_context(tmp_path: Path) -> None:
    model = _loaded("squad_v1", tmp_path)
    frame = pd.DataFrame(
        {"id": ["q1", "q2"], "question": ["Who wrote the book?", "What is Paris?"], "context": CONTEXTS}
    )
    answers = model.predict(None, frame)
    assert list(answers.columns) == ["answer"] and len(answers) == 2
    for answer, context in zip(answers["answer"], CONTEXTS, strict=True):
        assert answer and answer in context
    without_ids = model.predict(None, frame.drop(columns="id"))
    assert without_ids["answer"].tolist() == answers["answer"].tolist()
    with pytest.raises(EffbertError, match="'id' column repeats"):
        model.predict(None, frame.assign(id=["same", "same"]))


def test_classifier_labels_pairs_and_missing_columns(tmp_path: Path) -> None:
    model = _loaded("sst2", tmp_path)
    out = model.predict(None, pd.DataFrame({"text_a": SENTENCES[:3]}))
    assert list(out.columns) == ["label", "probability"] and len(out) == 3
    assert set(out["label"]) <= set(get_task("sst2").labels)
    assert ((out["probability"] >= 0.5) & (out["probability"] <= 1)).all()
    with_pair = model.predict(None, pd.DataFrame({"text_a": SENTENCES[:2], "text_b": [None, "a second text"]}))
    assert len(with_pair) == 2
    with pytest.raises(EffbertError, match=r"sst2 model input lacks column\(s\) \['text_a'\]"):
        model.predict(None, pd.DataFrame({"sentence": SENTENCES[:1]}))
    with pytest.raises(EffbertError, match="before load_context"):
        EffBertPyfunc().predict(None, pd.DataFrame({"text_a": SENTENCES[:1]}))


def test_config_signature_and_requirements() -> None:
    p = small_params()
    config = pyfunc_config(p, "squad_v1")
    assert config == {
        "task": "squad_v1",
        "max_seq_length": p.data.max_seq_length,
        "doc_stride": p.data.doc_stride,
        "window_overlap": p.data.window_overlap,
        "max_query_length": p.data.max_query_length,
        "batch_size": p.evaluate.batch_size,
        "n_best": p.evaluate.n_best,
        "max_answer_length": p.evaluate.max_answer_length,
        "null_threshold": p.evaluate.null_threshold,
    }
    with pytest.raises(ParamsError, match="unknown task"):
        pyfunc_config(p, "imdb")
    assert input_columns(get_task("mrpc")) == (("text_a",), ("text_b",))
    span = pyfunc_signature("squad_v1")
    assert span.inputs.input_names() == ["question", "context", "id"]
    assert [c.required for c in span.inputs.inputs] == [True, True, False]
    assert span.outputs.input_names() == ["answer"]
    assert pyfunc_signature("sst2").outputs.input_names() == ["label", "probability"]
    assert pyfunc_signature("stsb").outputs.input_names() == ["score"]
    pins = pip_requirements()
    assert pins[0] == f"effbert=={__version__}"
    assert any(pin.startswith("torch==") for pin in pins) and any(pin.startswith("mlflow==") for pin in pins)
