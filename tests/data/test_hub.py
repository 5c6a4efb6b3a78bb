"""Hub materialization: fake in-memory hub datasets written as official files and read back by effbert's readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from effbert.data.corpus import read_documents
from effbert.data.glue import glue_split_path, read_glue_split
from effbert.data.hub import fetch, write_corpus, write_glue_task, write_squad
from effbert.data.squad import read_squad
from effbert.errors import DataFormatError
from effbert.params import DataParams

HUB_NAMES = {  # the hub's ClassLabel names, in the hub's order
    "cola": ["unacceptable", "acceptable"],
    "sst2": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qqp": ["not_duplicate", "duplicate"],
    "mnli": ["entailment", "neutral", "contradiction"],
    "ax": ["entailment", "neutral", "contradiction"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "wnli": ["not_entailment", "entailment"],
}
FIELDS = {
    "cola": ("sentence", None),
    "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "ax": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def glue_split(task: str, rows: list[tuple[Any, ...]]) -> Dataset:
    """rows: (text_a, [text_b,] label) with label a hub class index (-1 for test) or an STS-B score."""
    a, b = FIELDS[task]
    label = Value("float32") if task == "stsb" else ClassLabel(names=HUB_NAMES[task])
    columns: dict[str, list[Any]] = {a: [r[0] for r in rows]}
    if b is not None:
        columns[b] = [r[1] for r in rows]
    columns["label"] = [r[-1] for r in rows]
    columns["idx"] = list(range(len(rows)))
    features = Features({**{k: Value("string") for k in columns if k not in ("label", "idx")}})
    features["label"] = label
    features["idx"] = Value("int32")
    return Dataset.from_dict(columns, features=features)


def glue_dict(task: str, **splits: list[tuple[Any, ...]]) -> DatasetDict:
    return DatasetDict({name: glue_split(task, rows) for name, rows in splits.items()})


FAKE_GLUE: dict[str, DatasetDict] = {
    "cola": glue_dict(
        "cola",
        train=[("The cat\tsat .", 1), ("Cat the sat .", 0)],
        validation=[("It rained\non Sunday .", 1)],
        test=[("Is this fine ?", -1)],
    ),
    "sst2": glue_dict(
        "sst2",
        train=[("a charming\tjourney . ", 1), ('labored " gags', 0)],
        validation=[("dull", 0)],
        test=[("uneasy mishmash", -1)],
    ),
    "mrpc": glue_dict(
        "mrpc",
        train=[("He said so .", "He said it .", 1), ("A\tB", "C\r\nD", 0)],
        validation=[("x", "y", 0)],
        test=[("p", "q", -1)],
    ),
    "stsb": glue_dict(
        "stsb",
        train=[("A man plays .", "A man is playing .", 3.8), ("Dogs .", "Cats .", 0.25)],
        validation=[("One .", "Two .", 5.0)],
        test=[("t1", "t2", -1.0)],
    ),
    "mnli": glue_dict(
        "mnli",
        train=[("p0", "h entail", 0), ("p1", "h neutral", 1), ("p2", "h contra", 2)],
        validation_matched=[("pm", "hm", 2)],
        validation_mismatched=[("pmm", "hmm", 0)],
        test_matched=[("tm", "htm", -1)],
        test_mismatched=[("tmm", "htmm", -1)],
    ),
    "ax": glue_dict("ax", test=[("The dog barks .", "A dog\tmakes noise .", -1), ("x", "y", -1)]),
    "qnli": glue_dict(
        "qnli",
        train=[("Who ?", "Him .", 0), ("When ?", "Blue .", 1)],
        validation=[("Why ?", "Because .", 1)],
        test=[("Where ?", "There .", -1)],
    ),
}


def squad_rows(version_2: bool) -> Dataset:
    rows = [
        ("q1", "Alpha", "Alpha is first. Beta is second.", "What is first?", ["Alpha"], [0]),
        ("q2", "Alpha", "Alpha is first. Beta is second.", "What is second?", ["Beta", "Beta is"], [16, 16]),
        ("q3", "Gamma", "Gamma\tcontext here.", "Which context?", ["context"], [6]),
        ("q4", "Alpha", "Another alpha paragraph.", "Which paragraph?", ["alpha paragraph"], [8]),
    ]
    if version_2:
        rows.append(("q5", "Gamma", "Gamma\tcontext here.", "What is missing?", [], []))
    return Dataset.from_dict(
        {
            "id": [r[0] for r in rows],
            "title": [r[1] for r in rows],
            "context": [r[2] for r in rows],
            "question": [r[3] for r in rows],
            "answers": [{"text": r[4], "answer_start": r[5]} for r in rows],
        }
    )


WIKITEXT = [
    "",
    " = Alpha = \n",
    "",
    " First sentence . Second one . \n",
    "",
    " = = History = = \n",
    "",
    " More text here . \n",
    " = Beta = \n",
    " Beta text . \n",
]


class FakeHub:
    """Stands in for datasets.load_dataset: returns in-memory DatasetDicts and records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, path: str, config: str | None = None) -> DatasetDict:
        self.calls.append((path, config))
        if path == "nyu-mll/glue" and config in FAKE_GLUE:
            return FAKE_GLUE[config]
        if path in ("rajpurkar/squad", "rajpurkar/squad_v2"):
            v2 = path.endswith("v2")
            return DatasetDict({"train": squad_rows(v2), "validation": squad_rows(v2)})
        if (path, config) == ("Salesforce/wikitext", "wikitext-103-raw-v1"):
            split = Dataset.from_dict({"text": WIKITEXT})
            return DatasetDict({"train": split, "validation": Dataset.from_dict({"text": [" = Val = \n"]})})
        raise AssertionError(f"unexpected hub request {path}:{config}")


TASK_LIST = ["cola", "sst2", "mrpc", "stsb", "mnli", "qnli", "squad_v1", "squad_v2"]


@pytest.fixture
def fetched(tmp_path: Path) -> tuple[dict[str, str], Path, FakeHub]:
    hub = FakeHub()
    data = {
        "glue_dir": None,
        "squad_dir": None,
        "corpus": None,
        "corpus_hub": "Salesforce/wikitext:wikitext-103-raw-v1",
    }
    out = tmp_path / "hub"
    return fetch(data, TASK_LIST, out, load_dataset=hub), out, hub


def test_fetch_layout_and_calls(fetched: tuple[dict[str, str], Path, FakeHub]) -> None:
    paths, out, hub = fetched
    assert paths == {
        "glue_dir": (out / "glue").as_posix(),
        "squad_dir": (out / "squad").as_posix(),
        "corpus": (out / "corpus").as_posix(),
    }
    glue = [("nyu-mll/glue", t) for t in ("cola", "sst2", "mrpc", "stsb", "mnli", "qnli", "ax")]
    squad = [("rajpurkar/squad", None), ("rajpurkar/squad_v2", None)]
    assert hub.calls == [*glue, *squad, ("Salesforce/wikitext", "wikitext-103-raw-v1")]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(
        [
            *(
                f"glue/{f}/{s}.tsv"
                for f in ("CoLA", "SST-2", "MRPC", "STS-B", "QNLI")
                for s in ("train", "dev", "test")
            ),
            *(
                f"glue/MNLI/{s}.tsv"
                for s in ("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched")
            ),
            "glue/diagnostic/diagnostic.tsv",
            *(f"squad/{s}-v{v}.json" for s in ("train", "dev") for v in ("1.1", "2.0")),
            "corpus/00-Salesforce_wikitext.raw",
            "SOURCE.json",
        ]
    )  # no temp files left behind
    source = json.loads((out / "SOURCE.json").read_text("utf-8"))
    assert [(s["hub"], s["config"]) for s in source["sources"]] == hub.calls
    assert source["fetched"] == paths
    mnli = next(s for s in source["sources"] if s["config"] == "mnli")
    assert mnli["splits"]["train"]["num_rows"] == 3
    assert mnli["splits"]["train"]["fingerprint"] == FAKE_GLUE["mnli"]["train"]._fingerprint


def read(glue: Path, task: str, split: str) -> list[dict[str, Any]]:
    return read_glue_split(task, glue_split_path(glue, task, split), labelled=not split.startswith("test"))


def test_glue_single_sentence_tasks(fetched: tuple[dict[str, str], Path, FakeHub]) -> None:
    glue = Path(fetched[0]["glue_dir"])
    cola = read(glue, "cola", "train")
    assert [(r["text_a"], r["label"]) for r in cola] == [("The cat sat .", 1), ("Cat the sat .", 0)]
    assert (glue / "CoLA" / "train.tsv").read_text("utf-8").split("\n")[0] == "hub\t1\t\tThe cat sat ."  # no header
    assert read(glue, "cola", "dev")[0]["text_a"] == "It rained on Sunday ."
    unlabelled = {"text_b": None, "label": None, "label_text": None}
    assert read(glue, "cola", "test") == [{"idx": 0, "text_a": "Is this fine ?", **unlabelled}]
    sst2 = read(glue, "sst2", "train")
    assert [(r["text_a"], r["label"]) for r in sst2] == [("a charming journey . ", 1), ('labored " gags', 0)]
    assert (glue / "SST-2" / "train.tsv").read_text("utf-8").startswith("sentence\tlabel\na charming journey . \t1\n")
    assert read(glue, "sst2", "test")[0]["text_a"] == "uneasy mishmash"


def test_glue_pair_tasks_and_scores(fetched: tuple[dict[str, str], Path, FakeHub]) -> None:
    glue = Path(fetched[0]["glue_dir"])
    mrpc = read(glue, "mrpc", "train")
    assert [(r["text_a"], r["text_b"], r["label"]) for r in mrpc] == [
        ("He said so .", "He said it .", 1),
        ("A B", "C  D", 0),
    ]
    assert read(glue, "mrpc", "test")[0]["text_b"] == "q"
    stsb = read(glue, "stsb", "train")
    assert [r["label"] for r in stsb] == [3.8, 0.25]
    assert read(glue, "stsb", "dev")[0]["label"] == 5.0
    assert "\t3.800\n" in (glue / "STS-B" / "train.tsv").read_text("utf-8")
    assert read(glue, "stsb", "test")[0]["text_a"] == "t1"
    qnli = read(glue, "qnli", "train")  # hub: entailment=0, not_entailment=1; ours the same
    assert [(r["text_a"], r["label"]) for r in qnli] == [("Who ?", 0), ("When ?", 1)]
    assert (glue / "QNLI" / "dev.tsv").read_text("utf-8").split("\n")[1].endswith("\tnot_entailment")


def test_mnli_label_order_is_remapped(fetched: tuple[dict[str, str], Path, FakeHub]) -> None:
    glue = Path(fetched[0]["glue_dir"])
    # hub: entailment=0, neutral=1, contradiction=2; ours: contradiction=0, entailment=1, neutral=2
    train = read(glue, "mnli", "train")
    assert [(r["text_b"], r["label"]) for r in train] == [("h entail", 1), ("h neutral", 2), ("h contra", 0)]
    gold = [line.split("\t")[-1] for line in (glue / "MNLI" / "train.tsv").read_text("utf-8").splitlines()[1:]]
    assert gold == ["entailment", "neutral", "contradiction"]
    assert [(r["text_a"], r["label"]) for r in read(glue, "mnli", "dev")] == [("pm", 0)]
    assert [(r["text_a"], r["label"]) for r in read(glue, "mnli", "dev_mm")] == [("pmm", 1)]
    assert read(glue, "mnli", "test")[0]["text_a"] == "tm"
    assert read(glue, "mnli", "test_mm")[0]["text_b"] == "htmm"
    ax = read(glue, "ax", "test")
    unlabelled = {"label": None, "label_text": None}
    assert ax[0] == {"idx": 0, "text_a": "The dog barks .", "text_b": "A dog makes noise .", **unlabelled}
    assert read(glue, "mnli", "test_ax") == ax


def test_squad_round_trip(fetched: tuple[dict[str, str], Path, FakeHub]) -> None:
    squad = Path(fetched[0]["squad_dir"])
    v1 = read_squad(squad / "train-v1.1.json", version_2=False)
    assert [ex["id"] for ex in v1] == ["q1", "q2", "q4", "q3"]  # grouped by title, then context
    assert v1[1]["answers"] == {"text": ["Beta", "Beta is"], "answer_start": [16, 16]}
    assert v1[3]["context"] == "Gamma\tcontext here."  # JSON needs no neutralising
    doc = json.loads((squad / "dev-v1.1.json").read_text("utf-8"))
    assert doc["version"] == "1.1"
    assert [a["title"] for a in doc["data"]] == ["Alpha", "Gamma"]
    assert [len(a["paragraphs"]) for a in doc["data"]] == [2, 1]
    assert "is_impossible" not in doc["data"][0]["paragraphs"][0]["qas"][0]
    v2 = read_squad(squad / "dev-v2.0.json", version_2=True)
    assert [(ex["id"], ex["is_impossible"]) for ex in v2][-2:] == [("q3", False), ("q5", True)]
    assert v2[-1]["answers"] == {"text": [], "answer_start": []}
    assert json.loads((squad / "train-v2.0.json").read_text("utf-8"))["version"] == "v2.0"


def test_corpus_round_trip(fetched: tuple[dict[str, str], Path, FakeHub]) -> None:
    corpus = Path(fetched[0]["corpus"])
    assert [f.name for f in corpus.iterdir()] == ["00-Salesforce_wikitext.raw"]
    assert (corpus / "00-Salesforce_wikitext.raw").read_text("utf-8") == "".join(t if t else "\n" for t in WIKITEXT)
    assert read_documents(corpus) == [["First sentence .", "Second one .", "More text here ."], ["Beta text ."]]


def test_document_and_sentence_rows_become_documents(tmp_path: Path) -> None:
    from effbert.data.hub import corpus_lines

    articles = [{"text": "Title line.\n\nFirst paragraph. Two.\nSecond paragraph."}, {"text": "Other article."}]
    write_corpus(corpus_lines(articles, {"name": "wiki", "rows": "documents"}), tmp_path / "w.raw")
    assert read_documents(tmp_path / "w.raw") == [
        ["Title line.", "First paragraph.", "Two.", "Second paragraph."],
        ["Other article."],
    ]
    lines = [{"text": f"Line {i}."} for i in range(5)]
    source = {"name": "books", "rows": "sentences", "lines_per_document": 2}
    write_corpus(corpus_lines(lines, source), tmp_path / "b.raw")
    assert read_documents(tmp_path / "b.raw") == [["Line 0.", "Line 1."], ["Line 2.", "Line 3."], ["Line 4."]]


def test_fetch_skips_local_sources(tmp_path: Path) -> None:
    hub = FakeHub()
    params = DataParams(glue_dir="data/glue", squad_dir=None, corpus="data/corpus")
    assert fetch(params, ["sst2", "squad_v1"], tmp_path, load_dataset=hub) == {
        "squad_dir": (tmp_path / "squad").as_posix()
    }
    assert hub.calls == [("rajpurkar/squad", None)]
    assert not (tmp_path / "glue").exists()
    params = DataParams(glue_dir=None, squad_dir=None, corpus="c")
    assert fetch(params, ["sst2"], tmp_path / "b", load_dataset=hub) == {
        "glue_dir": (tmp_path / "b" / "glue").as_posix()
    }
    assert hub.calls[-1] == ("nyu-mll/glue", "sst2")  # no AX without MNLI, no SQuAD without a SQuAD task


@pytest.mark.parametrize(
    ("task", "first", "label_line"),
    [
        ("wnli", "index\tsentence1\tsentence2\tlabel", "0\ta\tb\t1"),
        ("rte", "index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment"),
    ],
)
def test_explicit_label_names(tmp_path: Path, task: str, first: str, label_line: str) -> None:
    rows = {"train": [{"sentence1": "a", "sentence2": "b", "label": 1 if task == "wnli" else 0, "idx": 0}]}
    (path,) = write_glue_task(task, rows, tmp_path, label_names=HUB_NAMES[task])
    assert path.read_text("utf-8").splitlines() == [first, label_line]
    assert read_glue_split(task, path)[0]["label"] == (1 if task == "wnli" else 0)


def test_qqp_headers(tmp_path: Path) -> None:
    row = {"question1": "Why?", "question2": "How?", "label": 1, "idx": 7}
    train, test = write_glue_task("qqp", {"train": [row], "test": [{**row, "label": -1}]}, tmp_path, HUB_NAMES["qqp"])
    assert train.read_text("utf-8") == "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t\t\tWhy?\tHow?\t1\n"
    assert test.read_text("utf-8") == "id\tquestion1\tquestion2\n7\tWhy?\tHow?\n"
    assert read_glue_split("qqp", test, labelled=False)[0]["idx"] == 7


def test_bad_label_names_and_values(tmp_path: Path) -> None:
    rows = {"train": [{"premise": "p", "hypothesis": "h", "label": 0, "idx": 0}]}
    with pytest.raises(DataFormatError, match="do not map"):
        write_glue_task("mnli", rows, tmp_path, label_names=["entailment", "neutral", "other"])
    with pytest.raises(DataFormatError, match="names missing do not map"):
        write_glue_task("mnli", rows, tmp_path)
    bad = {"validation": [{"sentence": "s", "label": 2, "idx": 0}]}
    with pytest.raises(DataFormatError, match="outside"):
        write_glue_task("sst2", bad, tmp_path, label_names=HUB_NAMES["sst2"])
    assert list(tmp_path.rglob("*.tsv")) == [] and list(tmp_path.rglob("*.tmp")) == []  # nothing half-written


def test_squad_v1_needs_answers_and_corpus_writer(tmp_path: Path) -> None:
    row = {"id": "x", "title": "T", "context": "c", "question": "q", "answers": {"text": [], "answer_start": []}}
    with pytest.raises(DataFormatError, match="no answer"):
        write_squad([row], tmp_path / "train-v1.1.json", version_2=False)
    assert not (tmp_path / "train-v1.1.json").exists()
    write_corpus(["Plain text one.", "", "Doc two."], tmp_path / "c.raw")
    assert read_documents(tmp_path / "c.raw") == [["Plain text one."], ["Doc two."]]
