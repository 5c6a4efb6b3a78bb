"""Rendering: the HTML is self-contained (no network reference of any kind), Markdown and HTML show the same tables,
numbers are formatted, hostile text is neutralised, figures are PNGs."""

from __future__ import annotations

import base64
import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from effbert.errors import EffbertError
from effbert.report.render import (
    MISSING,
    format_cell,
    latency_figure,
    network_references,
    png_size,
    quality_figure,
    render_html,
    render_markdown,
    table_summaries,
)
from tests.report.report_samples import sample_report, stand_in_png

# The list of network references, checked independently of render.network_references.
NETWORK = re.compile(r"(?i)http://|https://|//|url\(|@import|<script|<link")
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


@pytest.fixture(scope="module")
def sample() -> tuple[dict[str, Any], dict[str, bytes]]:
    return sample_report()


@pytest.fixture(scope="module")
def page(sample: tuple[dict[str, Any], dict[str, bytes]]) -> str:
    return render_html(*sample)


class _Tables(HTMLParser):
    """Captions, body-row counts and image sources of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[Any]] = []
        self.images: list[str] = []
        self._in_caption = False
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(["", 0])
        elif tag == "caption":
            self._in_caption = True
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[-1][1] += 1
        elif tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._in_caption = False
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self.tables[-1][0] += data


def _markdown_tables(markdown: str) -> list[tuple[str, int]]:
    """(caption, body rows) of every table in the Markdown: the caption line, then header, rule and rows."""
    found = []
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        caption = re.match(r"\*\*(Table \d+\.)\*\* (.*)", line)
        if caption:
            rows = 0
            for row in lines[index + 4 :]:
                if not row.startswith("| "):
                    break
                rows += 1
            found.append((f"{caption.group(1)} {caption.group(2)}", rows))
    return found


def test_html_has_no_network_reference(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    without_images = DATA_URI.sub("", page)
    assert NETWORK.findall(without_images) == []
    assert network_references(page) == []
    for forbidden in ("<iframe", "@font-face", "srcset", "<base"):
        assert forbidden not in page.lower()


def test_markdown_and_html_show_the_same_tables(sample: tuple[dict[str, Any], dict[str, bytes]], page: str) -> None:
    report, _ = sample
    expected = table_summaries(report)
    assert len(expected) >= 12
    parser = _Tables()
    parser.feed(page)
    assert [(caption, rows) for caption, rows in parser.tables] == expected
    assert _markdown_tables(render_markdown(report)) == expected
    assert all(rows > 0 for _, rows in expected)


def test_every_figure_is_embedded_in_html_and_linked_in_markdown(
    sample: tuple[dict[str, Any], dict[str, bytes]], page: str
) -> None:
    report, images = sample
    parser = _Tables()
    parser.feed(page)
    assert len(parser.images) == len(images) == 6
    embedded = {base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in parser.images}
    assert embedded == set(images.values())
    markdown = render_markdown(report)
    for src in images:
        assert f"]({src})" in markdown
    assert markdown.count("![Figure ") == len(images)


def test_sections_are_in_order_with_a_table_of_contents(page: str) -> None:
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == [
        "Quality per task",
        "Size and speed",
        "Methods compared",
        "Search",
        "Export and submission",
        "Training cost",
        "Lineage and reproduction",
    ]
    assert page.count('<li><a href="#') == len(titles)


def test_rows_are_labelled_ours_or_paper(sample: tuple[dict[str, Any], dict[str, bytes]], page: str) -> None:
    report, _ = sample
    quality = report["sections"][0]["blocks"][0]
    assert quality["caption"].startswith("sst2:")
    labels = [row["label"] for row in quality["rows"]]
    assert labels[0].startswith("ours, GLUE dev (872 rows") and "demo sample" in labels[0]
    assert labels[2] == "ours, the most frequent training label predicted for every dev row"
    assert all(label.startswith("paper, GLUE test (") for label in labels[3:])
    assert page.count('<tr class="ours">') > 0 and page.count('<tr class="paper">') > 0


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (None, "metric", MISSING),
        (math.nan, "ratio", MISSING),
        ("16M", "millions", "16M"),
        (True, "text", "yes"),
        (5_412_345, "millions", "5.41M"),
        (11_173_625_856, "giga", "11.17G"),
        (0.9482, "percent", "94.8 %"),
        (6.2, "ratio", "6.20×"),
        (86.35, "metric", "86.3"),
        (1234567, "int", "1,234,567"),
        (0.0125, "signed4", "+0.0125"),
        (0.5123, "ms", "0.512"),
        (3.456, "ms", "3.46"),
        (34.56, "ms", "34.6"),
        (1056.4, "ms", "1056"),
        ([1.234, 15.67], "ms_range", "1.23–15.7"),
        (2.4e-7, "scientific", "2.40e-07"),
    ],
)
def test_cells_are_formatted(value: Any, fmt: str, text: str) -> None:
    assert format_cell(value, fmt) == text


def test_an_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown column format 'pct'"):
        format_cell(1.0, "pct")


HOSTILE = 'see https://example.org/x and //cdn.example/y, url(a.png) @import "b"; <script>alert(1)</script> src=z'


def _hostile_report() -> dict[str, Any]:
    return {
        "title": f"title {HOSTILE}",
        "sections": [
            {
                "id": "s",
                "title": "Only",
                "blocks": [
                    {"kind": "text", "text": HOSTILE},
                    {"kind": "list", "items": [HOSTILE]},
                    {"kind": "code", "text": HOSTILE},
                    {
                        "kind": "table",
                        "caption": HOSTILE,
                        "columns": [{"key": "a", "label": HOSTILE}],
                        "rows": [{"a": HOSTILE, "_group": "paper"}],
                        "note": HOSTILE,
                    },
                ],
            }
        ],
    }


def test_hostile_text_is_escaped_and_neutralised() -> None:
    page = render_html(_hostile_report(), {})
    assert NETWORK.findall(page) == [] and network_references(page) == []
    assert "&lt;script&gt;" in page and "alert(1)" in page  # shown as text, not run
    assert HOSTILE in render_markdown(_hostile_report())  # Markdown keeps the text as it is


@pytest.mark.parametrize(
    "snippet",
    [
        '<img src="http://example.org/a.png">',
        '<link rel="stylesheet" href="style.css">',
        "<script>1</script>",
        "<style>@import 'x.css';</style>",
        "<style>body { background: url(x.png) }</style>",
        '<img src="figures/quality.png">',
        '<a href="//cdn.example/x">x</a>',
        '<img srcset="a.png 2x">',
    ],
)
def test_the_network_check_finds_each_kind_of_reference(snippet: str) -> None:
    assert network_references(f"<html><body>{snippet}</body></html>")


def test_data_uris_and_anchors_are_not_network_references() -> None:
    png = base64.b64encode(b"//" * 30).decode()  # base64 of slashes contains '//'-like runs of '/'
    page = f'<a href="#top">top</a><img src="data:image/png;base64,{png}">'
    assert network_references(page) == []


def test_image_errors_name_the_figure() -> None:
    report = {
        "title": "t",
        "sections": [{"id": "s", "title": "S", "blocks": [{"kind": "image", "src": "figures/a.png", "caption": "a"}]}],
    }
    with pytest.raises(ValueError, match=r"figure 1 \(figures/a.png\): no image bytes"):
        render_html(report, {})
    with pytest.raises(ValueError, match="not a PNG"):
        render_html(report, {"figures/a.png": b"GIF89a" + bytes(30)})
    page = render_html(report, {"figures/a.png": stand_in_png("a", (50, 30))})
    assert 'width="50" height="30"' in page


def test_unknown_block_kinds_and_row_groups_are_errors() -> None:
    bad_kind = {"title": "t", "sections": [{"id": "s", "title": "S", "blocks": [{"kind": "video"}]}]}
    with pytest.raises(ValueError, match="unknown block kind 'video'"):
        render_html(bad_kind, {})
    with pytest.raises(ValueError, match="unknown block kind 'video'"):
        render_markdown(bad_kind)
    table = {"kind": "table", "caption": "c", "columns": [{"key": "a"}], "rows": [{"a": 1, "_group": "mine"}]}
    with pytest.raises(ValueError, match="unknown row group 'mine'"):
        render_html({"title": "t", "sections": [{"id": "s", "title": "S", "blocks": [table]}]}, {})


def test_figures_are_pngs() -> None:
    quality = quality_figure(
        [{"task": "sst2", "teacher": 86.4, "student": 81.9}, {"task": "mrpc", "teacher": 77.2, "student": None}]
    )
    rows = [
        {"batch_size": b, "model": m, "median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.2}
        for b, m, ms in [(1, "student", 2.0), (1, "teacher", 7.0), (32, "student", 30.0)]
    ]
    latency = latency_figure(rows, seq_len=128)
    assert png_size(quality)[0] > 300 and png_size(latency)[0] > 300
    with pytest.raises(EffbertError, match="quality figure"):
        quality_figure([])
    with pytest.raises(EffbertError, match="latency figure"):
        latency_figure([], seq_len=128)


def _markdown_sources(markdown: str) -> list[str]:
    """The items of the list under "Sources of the published rows:" in the Markdown."""
    lines = markdown.splitlines()
    start = lines.index("Sources of the published rows:") + 2
    items = []
    for line in lines[start:]:
        if not line.startswith("- "):
            break
        items.append(line[2:])
    return items


class _Sources(HTMLParser):
    """The items of the first list after the "Sources of the published rows:" paragraph of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[str] = []
        self._state = "before"  # before -> heading -> list -> done

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._state == "heading" and tag == "ul":
            self._state = "list"
        elif self._state == "list" and tag == "li":
            self.items.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._state == "list" and tag == "ul":
            self._state = "done"

    def handle_data(self, data: str) -> None:
        if self._state == "before" and data.strip() == "Sources of the published rows:":
            self._state = "heading"
        elif self._state == "list" and self.items:
            self.items[-1] += data


def test_the_published_rows_cite_the_papers_not_reference_files(
    sample: tuple[dict[str, Any], dict[str, bytes]], page: str
) -> None:
    markdown = render_markdown(sample[0])
    parser = _Sources()
    parser.feed(page)
    for sources in (_markdown_sources(markdown), parser.items):
        assert len(sources) >= 4
        assert not [s for s in sources if re.search(r"\.md\b|shared/reference|\.\./", s)]
        text = "\n".join(sources)
        for paper in (
            "Dong et al., EfficientBERT, Findings of EMNLP 2021",
            "Jiao et al., TinyBERT, Findings of EMNLP 2020, Table 1",
            "Sun et al., MobileBERT, ACL 2020",
            "Devlin et al., BERT, NAACL 2019",
        ):
            assert paper in text, paper
    for document in (markdown, page):
        assert "shared/reference" not in document
        assert not re.search(r"(efficientbert|baselines)\.md", document)


def test_lineage_shows_bf16_per_stage(sample: tuple[dict[str, Any], dict[str, bytes]], page: str) -> None:
    report, _ = sample
    lineage = next(s for s in report["sections"] if s["title"] == "Lineage and reproduction")
    facts = {row["item"]: row["value"] for row in lineage["blocks"][0]["rows"]}
    assert facts["bf16 autocast (params bf16; per stage below)"] == "auto (native-bf16 CPU flags here: avx512_bf16)"
    runs = next(b for b in lineage["blocks"] if b.get("caption", "").startswith("MLflow runs behind"))
    assert [row["bf16"] for row in runs["rows"]] == [None, "on", None]
    assert "avx512_bf16" in page


def test_search_states_the_proxy_noise_and_each_gain_in_its_units(page: str) -> None:
    assert "gain / proxy noise SD" in page
    assert "Proxy noise: the stage-1 vanilla GELU candidate scored under seeds [42, 43, 44]" in page
    assert "standard deviation 0.0075" in page
    assert "Stage 1: gain +0.0225 = 3.0 SD of the proxy&#x27;s noise: beyond noise" in page or (
        "Stage 1: gain +0.0225 = 3.0 SD of the proxy's noise: beyond noise" in page
    )


def test_each_task_table_shows_the_majority_class_baseline(sample: tuple[dict[str, Any], dict[str, bytes]]) -> None:
    report, _ = sample
    tables = {b["caption"].split(":")[0]: b for b in report["sections"][0]["blocks"] if b.get("caption")}
    mrpc = [r for r in tables["mrpc"]["rows"] if r["model"] == "majority class (no model)"]
    assert len(mrpc) == 1 and mrpc[0]["accuracy"] == pytest.approx(68.38) and mrpc[0]["f1"] == pytest.approx(81.22)
    assert not [r for r in tables["squad_v1"]["rows"] if r["model"].startswith("majority")]  # no span baseline
