"""The published reference numbers: package data validity, citations of the papers, provenance against the reference
notes, row selection."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from effbert.data.tasks import TASKS
from effbert.errors import EffbertError
from effbert.report.paper import (
    MODEL_ORDER,
    PaperEntry,
    load_paper_results,
    parse_paper_results,
    rows_for_task,
    size_speed_rows,
)

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference"
SPLITS = {"GLUE test", "SQuAD v1.1 dev", "SQuAD v2.0 dev"}
PAPERS = (
    "Dong et al., EfficientBERT, Findings of EMNLP 2021",
    "Jiao et al., TinyBERT, Findings of EMNLP 2020",
    "Sun et al., MobileBERT, ACL 2020",
    "Devlin et al., BERT, NAACL 2019",
)
"""The papers the published rows come from (BERT-base's rows also from the TinyBERT and EfficientBERT papers)."""
FILE_REFERENCE = re.compile(r"\.md\b|shared/|\.\./")


@pytest.fixture(scope="module")
def entries() -> list[PaperEntry]:
    return load_paper_results()


def _valid_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "x",
        "model": "TinyBERT-4",
        "split": "GLUE test",
        "source": "somewhere section 1",
        "source_short": "somewhere",
        "metrics": {"sst2": {"accuracy": 92.6}},
    }
    entry.update(changes)
    return entry


def test_every_reference_model_and_split_is_there(entries: list[PaperEntry]) -> None:
    assert {e.model for e in entries} == set(MODEL_ORDER)
    assert {e.split for e in entries} == SPLITS
    for entry in entries:
        assert entry.provenance is not None, entry.id
        assert re.search(r"(efficientbert|baselines)\.md section \d", entry.provenance), entry.id
        assert "original:" in entry.provenance, entry.id
        for task, metrics in entry.metrics.items():
            assert set(metrics) <= set(TASKS[task].metrics)
            assert all(0 < v <= 100 for v in metrics.values()), entry.id
            assert entry.split.startswith("SQuAD") == TASKS[task].is_squad, entry.id


def test_the_package_data_file_is_what_the_loader_reads(entries: list[PaperEntry]) -> None:
    path = ROOT / "effbert" / "report" / "paper_results.json"
    assert load_paper_results(path) == entries
    assert "[n/a]" not in json.dumps([e.metrics for e in entries])  # n/a values are left out, never written


def _published_strings(entry: PaperEntry) -> list[str]:
    numbers = [f"{v:.1f}" for metrics in entry.metrics.values() for v in metrics.values()]
    numbers += [f"{entry.average:.1f}"] if entry.average is not None else []
    texts = [entry.params, entry.flops, entry.latency, entry.speedup, *entry.claims.values()]
    return numbers + [t for t in texts if t]


def test_every_number_appears_in_the_reference_file_it_cites(entries: list[PaperEntry]) -> None:
    """Provenance: no number that the cited notes do not contain (the notes write 1.2 GFLOPs as 1.2B in tables)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"{REFERENCE} is not present")
    for entry in entries:
        name = re.search(r"(efficientbert|baselines)\.md", entry.provenance or "")
        assert name is not None
        text = (REFERENCE / name.group(0)).read_text(encoding="utf-8")
        for value in _published_strings(entry):
            assert value in text, f"{entry.id}: {value!r} not in {name.group(0)}"


def test_what_a_report_shows_cites_the_papers_and_their_tables(entries: list[PaperEntry]) -> None:
    """Sources, labels, notes and caveats name a paper and its table or section, never a reference-notes file."""
    for entry in entries:
        assert entry.source.startswith(PAPERS), entry.id
        assert re.search(r"\b(Table \d|abstract|results table)", entry.source), entry.id
        assert re.search(r"\b(Table \d|abstract|table)", entry.source_short), entry.id
        shown = [
            entry.label,
            entry.source,
            entry.notes,
            entry.latency_caveat,
            entry.speedup_caveat,
            entry.claims_caveat,
        ]
        assert not [text for text in shown if text and FILE_REFERENCE.search(text)], entry.id


def test_rows_for_a_task_come_in_model_order(entries: list[PaperEntry]) -> None:
    sst2 = rows_for_task(entries, "sst2")
    assert [e.model for e in sst2] == sorted((e.model for e in sst2), key=MODEL_ORDER.index)
    assert sst2[0].model == "EfficientBERT" and sst2[0].metrics["sst2"] == {"accuracy": 92.3}
    assert {e.model for e in sst2} == set(MODEL_ORDER)
    squad = rows_for_task(entries, "squad_v1")
    assert {e.split for e in squad} == {"SQuAD v1.1 dev"}
    assert next(e for e in squad if e.model == "TinyBERT-4").metrics["squad_v1"] == {"exact_match": 72.7, "f1": 82.1}
    assert rows_for_task(entries, "wnli") == []
    assert all(e.label.startswith(f"paper, {e.split} (") for e in squad)


def test_size_and_speed_rows_carry_their_caveats(entries: list[PaperEntry]) -> None:
    rows = size_speed_rows(entries)
    assert rows and all(e.has_size_or_speed for e in rows)
    assert all(e.latency_caveat for e in rows if e.latency)
    assert all(e.speedup_caveat for e in rows if e.speedup)
    claims = next(e for e in rows if e.claims)
    assert claims.claims == {"smaller_than_bert_base": "6.9×", "faster_than_bert_base": "4.4×"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metrics": {"sst2": {"f1": 90.0}}}, "metrics.sst2.f1: sst2 reports accuracy"),
        ({"metrics": {"imdb": {"accuracy": 90.0}}}, "unknown task 'imdb'"),
        ({"metrics": {"sst2": {"accuracy": "[n/a]"}}}, "metrics.sst2.accuracy must be a number"),
        ({"model": "ALBERT"}, "model 'ALBERT' is not one of"),
        ({"source": ""}, "source must be a non-empty string"),
        ({"latency_ms": 3}, "unknown key(s) latency_ms"),
        ({"average": {"name": "avg"}}, "average must be"),
        ({"source": "../shared/reference/baselines.md section 1.3"}, "source is shown in reports: cite the paper"),
        ({"notes": "see efficientbert.md section 2.2"}, "notes is shown in reports: cite the paper"),
    ],
)
def test_a_malformed_entry_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(EffbertError, match=re.escape(message)) as raised:
        parse_paper_results({"entries": [_valid_entry(**change)]}, "paper.json")
    assert str(raised.value).startswith("paper.json: entries[0] (x): ")


def test_missing_keys_duplicates_and_broken_files(tmp_path: Path) -> None:
    broken = _valid_entry()
    del broken["split"]
    with pytest.raises(EffbertError, match=r"missing key\(s\) split"):
        parse_paper_results({"entries": [broken]})
    with pytest.raises(EffbertError, match="duplicate id 'x'"):
        parse_paper_results({"entries": [_valid_entry(), _valid_entry()]})
    with pytest.raises(EffbertError, match="'entries' list"):
        parse_paper_results([])
    bad_json = tmp_path / "paper.json"
    bad_json.write_text('{"entries": [', encoding="utf-8")
    with pytest.raises(EffbertError, match=r"paper\.json:1: not valid JSON"):
        load_paper_results(bad_json)
    with pytest.raises(EffbertError, match="not found"):
        load_paper_results(tmp_path / "absent.json")
