"""DynaBERT's grid evaluation (every sub-network's dev metrics and sizes) and the export of one sub-network as its own
Auto-loadable model directory, computing exactly the sub-network's function."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModel, AutoModelForSequenceClassification

from effbert.data.prepared import EvalSplit
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.eval.evaluation import evaluate_dev
from effbert.measure.size import model_params
from effbert.methods.dynabert.evaluation import compact_subnetwork, evaluate_grid, export_subnetwork, load_grid
from effbert.methods.dynabert.subnetworks import subnetwork
from effbert.params import EvaluateParams
from tests.dynabert.dynabert_helpers import saved_model, tiny_teacher, token_rows
from tests.export.export_helpers import tokenizer

GRID = [[1.0, 1.0], [0.5, 1.0], [1.0, 0.5], [0.5, 0.5]]


def test_every_grid_point_is_scored_in_its_subnetwork_with_its_extracted_size() -> None:
    model, spec = tiny_teacher(), get_task("sst2")
    splits = [EvalSplit("dev", token_rows(24, 5))]
    hp = EvaluateParams(batch_size=8)
    model.config.dynabert_grid = GRID
    records = evaluate_grid(model, tokenizer(), spec, splits, hp, "cpu")
    assert [(r["width"], r["depth"]) for r in records] == [tuple(p) for p in GRID]
    full = evaluate_dev(model, tokenizer(), spec, splits, hp, "cpu").metrics
    assert records[0]["metrics"] == full and records[0]["score"] == full["accuracy"]
    assert records[0]["params"] == model_params(model)
    compact = compact_subnetwork(model, 0.5, 0.5)
    assert records[3]["metrics"] == evaluate_dev(compact, tokenizer(), spec, splits, hp, "cpu").metrics
    sizes = [r["params"] for r in records]
    assert sizes[0] > sizes[1] > sizes[3] and sizes[0] > sizes[2] > sizes[3]
    embeddings = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert all(r["params"] - r["params_without_embeddings"] == embeddings for r in records)
    assert (
        evaluate_grid(model, tokenizer(), spec, splits, hp, "cpu", grid=[(0.5, 0.5)])[0]["metrics"]
        == records[3]["metrics"]
    )


def test_an_exported_subnetwork_loads_with_the_auto_classes_and_computes_the_subnetwork(tmp_path: Path) -> None:
    model = tiny_teacher()
    source = saved_model(model, tmp_path / "dynabert", GRID)
    assert load_grid(source) == [tuple(p) for p in GRID]
    out = export_subnetwork(source, 0.5, 0.5, tmp_path / "w0.5_d0.5")
    ids = torch.randint(1, 50, (2, 12), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad(), subnetwork(model, 0.5, 0.5):
        logits = model(input_ids=ids, attention_mask=mask).logits
        hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    classifier = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    encoder = AutoModel.from_pretrained(str(out)).eval()
    assert classifier.config.num_hidden_layers == 2 and classifier.config.kept_heads == 2
    assert classifier.config.intermediate_size == 16
    with torch.no_grad():
        assert torch.allclose(classifier(input_ids=ids, attention_mask=mask).logits, logits, atol=1e-6)
        assert torch.allclose(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, hidden, atol=1e-6)
    assert (out / "tokenizer.json").is_file()
    assert model_params(classifier) < model_params(model)


def test_the_extract_command_writes_the_directory_and_rejects_a_model_without_a_grid(tmp_path: Path) -> None:
    from effbert.stages.dynabert.extract import command

    source = saved_model(tiny_teacher(), tmp_path / "dynabert", GRID)
    result = CliRunner().invoke(
        command, ["--model", str(source), "--width", "0.5", "--depth", "1", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out")).config.num_hidden_layers == 4
    (source / "dynabert.json").unlink()
    with pytest.raises(EffbertError, match=r"dynabert\.json"):
        load_grid(source)
