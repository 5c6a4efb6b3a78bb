"""GLUE TSV readers: the real SST-2/MRPC/RTE files, tiny official-format files for the other tasks, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from effbert.data.glue import glue_split_path, read_glue_split
from effbert.errors import DataFormatError, ParamsError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GLUE = DATA / "glue"
needs_data = pytest.mark.skipif(not GLUE.is_dir(), reason="shared benchmark data not available")


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


# --- real files -----------------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    ("task", "folder", "sizes"),
    [("sst2", "SST-2", (67349, 872, 1821)), ("mrpc", "MRPC", (3668, 408, 1725)), ("rte", "RTE", (2490, 277, 3000))],
)
def test_real_row_counts(task: str, folder: str, sizes: tuple[int, int, int]) -> None:
    train = read_glue_split(task, glue_split_path(GLUE, task, "train"))
    dev = read_glue_split(task, glue_split_path(GLUE, task, "dev"))
    test = read_glue_split(task, glue_split_path(GLUE, task, "test"), labelled=False)
    assert (len(train), len(dev), len(test)) == sizes
    assert [r["idx"] for r in train] == list(range(len(train)))
    assert [r["idx"] for r in test] == list(range(len(test)))  # the index column of these files is 0..n-1
    assert all(r["label"] is None for r in test)
    for rows in (train, dev):
        assert {r["label"] for r in rows} == {0, 1}
        assert all(r["text_a"] for r in rows)
        assert all((r["text_b"] is None) == (task == "sst2") for r in rows)


@needs_data
def test_real_sst2_first_rows_verbatim() -> None:
    dev = read_glue_split("sst2", GLUE / "SST-2" / "dev.tsv")
    text = "it 's a charming and often affecting journey . "
    assert dev[0] == {"idx": 0, "text_a": text, "text_b": None, "label": 1, "label_text": "1"}
    test = read_glue_split("sst2", GLUE / "SST-2" / "test.tsv", labelled=False)
    assert test[0]["text_a"] == "uneasy mishmash of styles and genres ."


@needs_data
def test_real_mrpc_bom_and_quotes() -> None:
    train = read_glue_split("mrpc", GLUE / "MRPC" / "train.tsv")
    assert train[0]["label"] == 1
    assert train[0]["text_a"].startswith('Amrozi accused his brother , whom he called " the witness "')
    assert sum(r["label"] for r in train) == 2474
    dev = read_glue_split("mrpc", GLUE / "MRPC" / "dev.tsv")
    # second sentence of row 0 opens a quote it never closes: kept verbatim
    assert dev[0]["text_b"] == '" The foodservice pie business does not fit our long-term growth strategy .'


@needs_data
def test_real_rte_labels_and_unbalanced_quotes() -> None:
    path = GLUE / "RTE" / "train.tsv"
    rows = read_glue_split("rte", path)
    assert sum(r["label"] == 0 for r in rows) == 1249  # entailment is class 0
    assert rows[0]["label"] == 1
    raw = path.read_text(encoding="utf-8").split("\n")[1:]
    odd = [i for i, line in enumerate(raw) if line.count('"') % 2 == 1]
    assert odd, "expected rows with unbalanced quotes in RTE train"
    for i in odd:
        fields = raw[i].split("\t")
        assert (rows[i]["text_a"], rows[i]["text_b"]) == (fields[1], fields[2])


# --- paths ----------------------------------------------------------------------------------------------------


def test_glue_split_path(tmp_path: Path) -> None:
    assert glue_split_path(tmp_path, "sst2", "dev") == tmp_path / "SST-2" / "dev.tsv"
    assert glue_split_path(tmp_path, "cola", "train") == tmp_path / "CoLA" / "train.tsv"
    assert glue_split_path(tmp_path, "mnli", "dev_mm") == tmp_path / "MNLI" / "dev_mismatched.tsv"
    assert glue_split_path(tmp_path, "mnli", "test") == tmp_path / "MNLI" / "test_matched.tsv"
    assert glue_split_path(tmp_path, "mnli", "test_ax") == tmp_path / "diagnostic" / "diagnostic.tsv"
    assert glue_split_path(tmp_path, "ax", "test") == tmp_path / "diagnostic" / "diagnostic.tsv"
    with pytest.raises(ParamsError, match="dev_mm"):
        glue_split_path(tmp_path, "sst2", "dev_mm")
    with pytest.raises(ParamsError, match="unknown task"):
        glue_split_path(tmp_path, "nope", "dev")


# --- the other tasks in their official layout -------------------------------------------------------------------


def test_cola_headerless_train_and_headed_test(tmp_path: Path) -> None:
    train = write(
        tmp_path / "train.tsv",
        "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one.\r\n"
        'gj04\t0\t*\tThe more "we study verbs.\n\n',
    )
    rows = read_glue_split("cola", train)
    assert rows == [
        {
            "idx": 0,
            "text_a": "Our friends won't buy this analysis, let alone the next one.",
            "text_b": None,
            "label": 1,
            "label_text": "1",
        },
        {"idx": 1, "text_a": 'The more "we study verbs.', "text_b": None, "label": 0, "label_text": "0"},
    ]
    test = write(tmp_path / "test.tsv", "index\tsentence\n0\tBill whistled past the house.\n1\tThe car honked.\n")
    assert [(r["idx"], r["text_a"], r["label"]) for r in read_glue_split("cola", test, labelled=False)] == [
        (0, "Bill whistled past the house.", None),
        (1, "The car honked.", None),
    ]


def test_stsb(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    path = write(
        tmp_path / "dev.tsv",
        header + "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\t"
        "A man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA child.\tA man.\t0.5\n",
    )
    rows = read_glue_split("stsb", path)
    assert [r["label"] for r in rows] == [5.0, 0.5]
    assert [r["label_text"] for r in rows] == ["5.000", "0.5"]
    assert isinstance(rows[0]["label"], float)
    assert rows[1]["text_b"] == "A man."
    test = write(tmp_path / "test.tsv", header.replace("\tscore", "") + "7\tg\tf\ty\t1\tn\tn\tA b.\tC d.\n")
    assert read_glue_split("stsb", test, labelled=False) == [
        {"idx": 7, "text_a": "A b.", "text_b": "C d.", "label": None, "label_text": None}
    ]


def test_qqp_train_and_test_with_id_column(tmp_path: Path) -> None:
    train = write(
        tmp_path / "train.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        '133273\t213221\t213222\tHow is the life of a math student?\tWhich "level?\t0\n'
        "402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1\n",
    )
    rows = read_glue_split("qqp", train)
    assert [(r["idx"], r["label"]) for r in rows] == [(0, 0), (1, 1)]
    assert rows[0]["text_b"] == 'Which "level?'
    test = write(tmp_path / "test.tsv", "id\tquestion1\tquestion2\n0\tWhy?\tHow?\n1\tA?\tB?\n")
    assert [r["idx"] for r in read_glue_split("qqp", test, labelled=False)] == [0, 1]


MNLI_COLS = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2"
)


def test_mnli_gold_label_is_last_column(tmp_path: Path) -> None:
    train = write(
        tmp_path / "train.tsv",
        MNLI_COLS + "\tlabel1\tgold_label\n"
        "0\t31193\t31193n\tgovernment\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tConceptually cream.\tProduct.\t"
        "neutral\tneutral\n",
    )
    assert read_glue_split("mnli", train)[0] == {
        "idx": 0,
        "text_a": "Conceptually cream.",
        "text_b": "Product.",
        "label": 2,
        "label_text": "neutral",
    }
    dev = write(
        tmp_path / "dev_matched.tsv",
        MNLI_COLS + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
        "0\t1\t1e\tfiction\tx\ty\tx\ty\tThe new rights.\tEveryone loves.\tneutral\tentailment\tneutral\t"
        "neutral\tneutral\tentailment\n"
        "1\t2\t2c\tfiction\tx\ty\tx\ty\tA.\tB.\tcontradiction\tcontradiction\tcontradiction\tcontradiction\t"
        "contradiction\tcontradiction\n",
    )
    assert [r["label"] for r in read_glue_split("mnli", dev)] == [1, 0]  # gold_label, not label1
    test = write(tmp_path / "test_matched.tsv", MNLI_COLS + "\n" + "9796\t0\t0\tslate\tx\ty\tx\ty\tHi.\tHo.\n")
    assert read_glue_split("mnli", test, labelled=False)[0]["idx"] == 9796


def test_qnli_wnli_and_ax(tmp_path: Path) -> None:
    qnli = write(
        tmp_path / "qnli.tsv",
        "index\tquestion\tsentence\tlabel\n0\tWhat?\tThis.\tnot_entailment\n1\tWho?\tHim.\tentailment\n",
    )
    assert [(r["text_a"], r["label"]) for r in read_glue_split("qnli", qnli)] == [("What?", 1), ("Who?", 0)]
    wnli = write(tmp_path / "wnli.tsv", "index\tsentence1\tsentence2\tlabel\n0\tI stuck a pin.\tI stuck it.\t1\n")
    assert read_glue_split("wnli", wnli)[0]["label"] == 1
    ax = write(
        tmp_path / "diagnostic.tsv", "index\tsentence1\tsentence2\n0\tThe cat sat.\tThe cat did not sit.\n1\tA.\tB.\n"
    )
    rows = read_glue_split("ax", ax, labelled=False)
    assert rows == read_glue_split("mnli", ax, labelled=False)
    assert [(r["idx"], r["text_b"], r["label"]) for r in rows] == [(0, "The cat did not sit.", None), (1, "B.", None)]
    with pytest.raises(ParamsError, match="no labels"):
        read_glue_split("ax", ax)


def test_squad_task_rejected(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not a GLUE task"):
        read_glue_split("squad_v1", tmp_path / "x.tsv")


# --- errors ---------------------------------------------------------------------------------------------------


def _error(task: str, path: Path, labelled: bool = True) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        read_glue_split(task, path, labelled)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    path = glue_split_path(tmp_path, "rte", "dev")
    err = _error("rte", path)
    assert err.line is None
    assert str(err).startswith(f"{path}: ")
    assert "rte" in str(err) and "not found" in str(err)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path / "dev.tsv", content)
    err = _error("sst2", path)
    assert str(err).startswith(f"{path}:1: empty file")


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\n")
    assert "no data rows" in str(_error("sst2", path))


def test_undecodable_bytes_report_line(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", b"sentence\tlabel\ngood .\t1\nbad \xff byte\t0\n")
    err = _error("sst2", path)
    assert err.line == 3
    assert str(err).startswith(f"{path}:3: not valid UTF-8")


def test_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence\tlabel\n0\ta\tb\tentailment\n")
    err = _error("rte", path)
    assert str(err).startswith(f"{path}:1: missing column 'sentence2'")
    test = write(tmp_path / "test.tsv", "sentence\n a\n")  # test file without an index column
    assert "missing column 'index'" in str(_error("sst2", test, labelled=False))
    unlabelled = write(tmp_path / "t2.tsv", "index\tsentence1\tsentence2\n0\ta\tb\n")
    assert "missing column 'label'" in str(_error("rte", unlabelled))


def test_too_few_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta b\n")
    err = _error("rte", path)
    assert err.line == 3
    assert str(err).startswith(f"{path}:3: expected 4 tab-separated fields")
    cola = write(tmp_path / "cola.tsv", "src\t1\t\tfine.\nsrc\t0\tno mark or sentence\n")
    assert _error("cola", cola).line == 2
    blank_inside = write(tmp_path / "b.tsv", "sentence\tlabel\na\t1\n\nb\t0\n")
    assert _error("sst2", blank_inside).line == 3


def test_unknown_label(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tneutral\n")
    err = _error("rte", path)
    assert err.line == 3
    assert "unknown label 'neutral'" in str(err) and "'entailment', 'not_entailment'" in str(err)
    cola = write(tmp_path / "cola.tsv", "src\t2\t\tfine.\n")
    assert str(_error("cola", cola)).startswith(f"{cola}:1: unknown label '2'")


@pytest.mark.parametrize("score", ["high", "", "nan"])
def test_stsb_bad_score(tmp_path: Path, score: str) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    path = write(
        tmp_path / "dev.tsv", header + "0\tg\tf\ty\t0\tn\tn\ta\tb\t1.0\n" + f"1\tg\tf\ty\t0\tn\tn\ta\tb\t{score}\n"
    )
    err = _error("stsb", path)
    assert err.line == 3
    assert f"score {score!r}" in str(err)


def test_bad_test_index(tmp_path: Path) -> None:
    path = write(tmp_path / "test.tsv", "index\tsentence\n0\ta\nx1\tb\n")
    err = _error("sst2", path, labelled=False)
    assert err.line == 3 and "'x1'" in str(err)


def test_mrpc_bom_header_small(tmp_path: Path) -> None:
    path = write(
        tmp_path / "dev.tsv",
        b'\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t1\t2\tHe said " hi .\tHi .\r\n',
    )
    expected = {"idx": 0, "text_a": 'He said " hi .', "text_b": "Hi .", "label": 1, "label_text": "1"}
    assert read_glue_split("mrpc", path) == [expected]
