"""FastBERT as a saved model and a stage's library: the Hugging Face class (Auto round trip, plain forward = the
teacher), the self-distillation (only the branches learn, bit-identical reruns) and the sweeps the evaluation and the
comparison run (speed 0 = the teacher's metric, rows of one batch exiting at different layers, latency records)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import effbert  # noqa: F401  (registers the Auto classes)
from effbert import params as params_module
from effbert.data.prepared import EvalSplit
from effbert.data.tasks import get_task
from effbert.eval.metrics import glue_metrics
from effbert.integrity import seal
from effbert.methods.fastbert.early_exit import FastBertModel, normalised_entropy
from effbert.methods.fastbert.evaluation import evaluate_sweep, time_sweep
from effbert.methods.fastbert.modeling_fastbert import FastBertConfig, FastBertForSequenceClassification, from_trained
from tests.conftest import ROOT, tiny_bert_classifier

WORDS = [f"w{i}" for i in range(45)]


def tokenizer(folder: Path) -> Any:
    from transformers import BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab_file=str(vocab))


def sst2_teacher() -> Any:
    return tiny_bert_classifier(id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})


def rows(count: int, seed: int) -> Any:
    import datasets

    generator = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for _ in range(count):
        length = int(torch.randint(3, 9, (1,), generator=generator))
        ids.append([2, *torch.randint(5, 50, (length,), generator=generator).tolist(), 3])
        labels.append(int(torch.randint(0, 2, (1,), generator=generator)))
    return datasets.Dataset.from_dict(
        {
            "input_ids": ids,
            "token_type_ids": [[0] * len(r) for r in ids],
            "attention_mask": [[1] * len(r) for r in ids],
            "label": labels,
            "idx": list(range(count)),
        }
    )


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A saved tiny SST-2 teacher with its tokenizer, and a prepared task (train, heldout, dev)."""
    teacher_dir, data_dir = tmp_path / "teacher", tmp_path / "data"
    teacher_dir.mkdir()
    sst2_teacher().save_pretrained(teacher_dir)
    tokenizer(tmp_path).save_pretrained(teacher_dir)
    for split, count, seed in (("train", 48, 1), ("heldout", 12, 2), ("dev", 20, 3)):
        rows(count, seed).save_to_disk(str(data_dir / split))
    seal(data_dir)
    return teacher_dir, data_dir


def tiny_params() -> Any:
    raw = params_module.read_yaml(ROOT / "params" / "smoke.yaml")
    distill = "{learning_rate: 0.01, epochs: 2.0, batch_size: 8, eval_batch_size: 8, eval_steps: 4, threads: 1}"
    sets = ["fastbert.branch_width=8", f"fastbert.distill={distill}", "bf16=false"]
    return params_module.validate(params_module.apply_overrides(raw, sets))


def trained_model(teacher: Any) -> FastBertForSequenceClassification:
    torch.manual_seed(3)
    return from_trained(FastBertModel(teacher, width=8))


def test_saved_model_loads_through_the_auto_class_and_its_forward_is_the_teacher(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    teacher = tiny_bert_classifier(num_labels=3)
    model = trained_model(teacher)
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "effbert-fastbert"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, FastBertForSequenceClassification)
    assert (loaded.config.branch_width, loaded.config.branch_heads, len(loaded.branches)) == (8, 2, 3)
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    ids = torch.randint(1, 50, (5, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[2, 4:] = 0
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=ids, attention_mask=mask).logits, teacher(input_ids=ids, attention_mask=mask).logits
        )
    fast = loaded.exit_forward(ids, mask, speed=1.0)
    assert fast.exit_layers.tolist() == [1] * 5
    with pytest.raises(ValueError, match="speed"):
        FastBertConfig(speed=1.5)


def test_self_distillation_trains_only_the_branches_and_reruns_bit_identically(
    workspace: tuple[Path, Path], tmp_path: Path, single_torch_thread: None
) -> None:
    from effbert.methods.fastbert.distillation import distill_branches
    from effbert.models.auto import load_task_model

    teacher_dir, data_dir = workspace
    outs = []
    for run in ("a", "b"):
        out = tmp_path / f"model_{run}"
        result = distill_branches(
            tiny_params(),
            "sst2",
            teacher_dir,
            data_dir,
            out,
            checkpoints=tmp_path / f"ck_{run}",
            callbacks=[],
            bf16=False,
        )
        assert result.outcome.best_score is not None and 0.0 <= result.outcome.best_score <= 1.0
        assert result.outcome.steps == 12  # 48 rows / 8 x 2 epochs
        outs.append(load_task_model(str(out), get_task("sst2")).state_dict())
    teacher = load_task_model(str(teacher_dir), get_task("sst2")).state_dict()
    start = sst2_teacher()
    torch.manual_seed(tiny_params().seed)  # the branches the stage starts from
    initial = FastBertModel(start, width=8).branches.state_dict()
    for name, value in outs[0].items():
        assert torch.equal(value, outs[1][name]), name  # bit-identical across two runs
        if name.startswith("branches."):
            assert not torch.equal(value, initial[name.removeprefix("branches.")]), name
        else:
            assert torch.equal(value, teacher[name]), name  # backbone and final classifier untouched


def test_a_self_distillation_killed_mid_training_resumes_to_the_same_weights(
    workspace: tuple[Path, Path], tmp_path: Path, single_torch_thread: None
) -> None:
    from transformers import TrainerCallback

    from effbert.methods.fastbert.distillation import distill_branches
    from effbert.models.auto import load_task_model

    class Kill(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 6:
                raise KeyboardInterrupt  # after the checkpoint of step 4

    teacher_dir, data_dir = workspace

    def run(name: str, checkpoints: Path, callbacks: list[Any]) -> Any:
        return distill_branches(
            tiny_params(),
            "sst2",
            teacher_dir,
            data_dir,
            tmp_path / name,
            checkpoints=checkpoints,
            callbacks=callbacks,
            bf16=False,
        )

    run("uninterrupted", tmp_path / "ck_once", [])
    with pytest.raises(KeyboardInterrupt):
        run("resumed", tmp_path / "ck_killed", [Kill()])
    assert (tmp_path / "ck_killed" / "checkpoint-4").is_dir()
    resumed = run("resumed", tmp_path / "ck_killed", [])
    assert resumed.outcome.resumed
    once = load_task_model(str(tmp_path / "uninterrupted"), get_task("sst2")).state_dict()
    again = load_task_model(str(tmp_path / "resumed"), get_task("sst2")).state_dict()
    for name, value in once.items():
        assert torch.equal(value, again[name]), name


def dev_split() -> EvalSplit:
    return EvalSplit("dev", rows(10, 5))


def test_sweep_at_speed_zero_is_the_teacher_and_rows_exit_at_different_layers(tmp_path: Path) -> None:
    teacher = sst2_teacher()
    model = trained_model(teacher)
    split = dev_split()
    batch = dict(
        tokenizer(tmp_path).pad(split.features.select_columns(["input_ids", "attention_mask"])[:], return_tensors="pt")
    )
    with torch.no_grad():
        first = model.branch_logits(**batch)[1][0]
    entropy = normalised_entropy(first).sort().values
    middle = float((entropy[4] + entropy[5]) / 2)  # half the rows are sure enough after layer 1
    records = evaluate_sweep(model, tokenizer(tmp_path), get_task("sst2"), [split], [0.0, middle, 1.0], 10, "cpu")
    with torch.no_grad():
        teacher_preds = teacher(**batch).logits.argmax(-1)
    expected = glue_metrics("sst2", teacher_preds.numpy(), split.features["label"])
    assert records[0]["metrics"] == expected and records[0]["mean_exit_layer"] == 4.0
    assert records[0]["exit_counts"] == [0, 0, 0, 10]
    assert records[1]["exit_counts"][0] == 5 and 1.0 < records[1]["mean_exit_layer"] < 4.0
    assert records[1]["mean_layers_run"] == records[1]["mean_exit_layer"]  # per-sample rule: a row runs to its exit
    assert records[1]["mean_batch_depth"] == max(i + 1 for i, n in enumerate(records[1]["exit_counts"]) if n)
    assert records[2]["mean_exit_layer"] == 1.0 and records[2]["layer_ratio"] == 4.0


def test_time_sweep_returns_a_record_per_speed_and_batch_size() -> None:
    model = trained_model(sst2_teacher())
    records = time_sweep(model, rows(6, 7), [0.0, 1.0], [1, 4], seq_len=12, runs=2, warmup=1, threads=1)
    assert [(r["speed"], r["batch_size"]) for r in records] == [(0.0, 1), (0.0, 4), (1.0, 1), (1.0, 4)]
    assert [r["calls"] for r in records] == [6, 2, 6, 2]
    assert all(r["median_ms"] > 0 and r["rule"] == "batch" and r["seq_len"] == 12 for r in records)
    assert records[0]["mean_exit_layer"] == 4.0 and records[2]["mean_exit_layer"] == 1.0
    few = time_sweep(model, rows(6, 7), [0.0], [1, 8], seq_len=12, runs=1, warmup=0, threads=1, latency_rows=3)
    assert [(r["batch_size"], r["batches"], r["calls"]) for r in few] == [(1, 3, 3), (8, 1, 1)]  # rows repeat to 8
    assert [r["timed_with"] for r in records] == [0.0, 0.0, 1.0, 1.0]  # different layers run: timed apart


def test_thresholds_that_run_the_same_layers_share_one_timing() -> None:
    """At a batch size where two thresholds run every batch to the same depth (the same computation), the later one
    reuses the earlier one's times instead of timing the same work again."""
    model = trained_model(sst2_teacher())
    records = time_sweep(model, rows(6, 7), [0.0, 1e-9, 1.0], [1, 6], seq_len=12, runs=2, warmup=1, threads=1)
    by = {(r["speed"], r["batch_size"]): r for r in records}
    assert by[(1e-9, 6)]["timed_with"] == 0.0 and by[(1e-9, 6)]["median_ms"] == by[(0.0, 6)]["median_ms"]
    assert by[(1.0, 6)]["timed_with"] == 1.0 and by[(1.0, 6)]["mean_layers_run"] == 1.0
    assert by[(0.0, 6)]["mean_layers_run"] == by[(1e-9, 6)]["mean_layers_run"] == 4.0
