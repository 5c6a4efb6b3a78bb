"""Render a report as one self-contained HTML file and as Markdown, and draw the report's own figures.

A report is a JSON-ready dict; the renderers read these keys and ignore any other (the stage keeps its raw data
beside them):

- ``title``: the document title;
- ``intro``: blocks before the first section (optional);
- ``sections``: a list of ``{"id": str, "title": str, "blocks": [block, ...]}``.

A block is one of

- ``{"kind": "text", "text": str, "style": "warning"}`` (``style`` optional: a highlighted paragraph);
- ``{"kind": "list", "items": [str, ...]}``;
- ``{"kind": "code", "text": str}`` (shown verbatim);
- ``{"kind": "table", "caption": str, "columns": [column, ...], "rows": [row, ...], "note": str}`` where a column is
  ``{"key": str, "label": str, "format": str}`` (see `FORMATS`; ``format`` defaults to ``text``), a row maps column
  keys to raw values (None for "no value"; a string is shown as it is whatever the column's format) and may carry
  ``"_group"`` (``ours``, ``paper``, ``reference``: the row's kind, used for shading in HTML); ``note`` optional;
- ``{"kind": "image", "src": "figures/name.png", "caption": str}``: Markdown links ``src`` (relative to the report
  file), HTML embeds the PNG bytes given for ``src`` as a base64 data URI.

Tables and figures are numbered in document order ("Table 3.", "Figure 2.") identically in both renderings. The
HTML carries inline CSS only: no script, no link, no external URL of any kind (`network_references` checks it),
so it opens offline and fetches nothing. Nothing here reads or writes files.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from effbert.errors import EffbertError

MISSING = "–"
"""What a cell without a value shows."""


def _ms(value: float) -> str:
    """Milliseconds with about three significant digits."""
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def _ms_range(value: Any) -> str:
    low, high = value
    return f"{_ms(float(low))}–{_ms(float(high))}"


FORMATS: dict[str, Callable[[Any], str]] = {
    "text": str,
    "int": lambda v: f"{int(v):,}",
    "millions": lambda v: f"{v / 1e6:.2f}M",
    "giga": lambda v: f"{v / 1e9:.2f}G",
    "metric": lambda v: f"{v:.1f}",
    "float3": lambda v: f"{v:.3f}",
    "float4": lambda v: f"{v:.4f}",
    "signed4": lambda v: f"{v:+.4f}",
    "percent": lambda v: f"{100 * v:.1f} %",
    "ratio": lambda v: f"{v:.2f}×",
    "rate": lambda v: f"{v:.1f}",
    "ms": lambda v: _ms(float(v)),
    "ms_range": _ms_range,
    "scientific": lambda v: f"{v:.2e}",
}
"""Column formats: name -> function of a raw value (never None, never a string) to the text shown.

``metric``: a metric already x100, one decimal; ``percent``: a fraction shown x100 with ``%``; ``ratio``: a factor
with ``×``; ``ms``/``ms_range``: milliseconds (a ``[low, high]`` pair for a spread); ``millions``/``giga``: counts in
M/G with two decimals."""

NUMERIC_FORMATS = frozenset(FORMATS) - {"text"}
"""Formats whose columns are right-aligned."""

GROUPS = ("ours", "paper", "reference")
"""The row kinds a table may mark with ``_group``."""


def format_cell(value: Any, fmt: str = "text") -> str:
    """The text of one table cell.

    Args:
        value: the raw value: None, a string (shown as it is), a bool (``yes``/``no``) or what ``fmt`` formats.
        fmt: a key of `FORMATS`.

    Returns:
        The formatted text; `MISSING` for None and for non-finite numbers.

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown column format {fmt!r}; known: {', '.join(FORMATS)}")
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return MISSING
    return FORMATS[fmt](value)


def _columns(block: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(key, label, format) of each column of a table block."""
    return [(c["key"], c.get("label", c["key"]), c.get("format", "text")) for c in block["columns"]]


Numbered = list[tuple[Mapping[str, Any], int]]
"""A section's blocks, each with its table or figure number (0 for other blocks)."""


def _numbered(report: Mapping[str, Any]) -> list[tuple[Mapping[str, Any] | None, Numbered]]:
    """The intro (section None) and every section with its blocks numbered: tables and figures count separately,
    in document order."""
    counters = {"table": 0, "image": 0}
    out: list[tuple[Mapping[str, Any] | None, Numbered]] = []
    for section in [None, *report.get("sections", [])]:
        blocks = report.get("intro", []) if section is None else section["blocks"]
        numbered: Numbered = []
        for block in blocks:
            kind = block["kind"]
            if kind in counters:
                counters[kind] += 1
            numbered.append((block, counters.get(kind, 0)))
        out.append((section, numbered))
    return out


def table_summaries(report: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(numbered caption, row count) of every table, in document order: what both renderings must show."""
    return [
        (f"Table {number}. {block['caption']}", len(block["rows"]))
        for _, blocks in _numbered(report)
        for block, number in blocks
        if block["kind"] == "table"
    ]


# ---------------------------------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(block: Mapping[str, Any], number: int) -> list[str]:
    columns = _columns(block)
    lines = [f"**Table {number}.** {block['caption']}", ""]
    lines.append("| " + " | ".join(_md_cell(label) for _, label, _ in columns) + " |")
    lines.append("|" + "|".join("---:" if fmt in NUMERIC_FORMATS else "---" for _, _, fmt in columns) + "|")
    for row in block["rows"]:
        cells = [_md_cell(format_cell(row.get(key), fmt)) for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if block.get("note"):
        lines += ["", f"*{block['note']}*"]
    return lines


def _md_block(block: Mapping[str, Any], number: int) -> list[str]:
    kind = block["kind"]
    if kind == "text":
        return [f"> **Note.** {block['text']}" if block.get("style") == "warning" else block["text"]]
    if kind == "list":
        return [f"- {item}" for item in block["items"]]
    if kind == "code":
        return ["```text", block["text"].rstrip("\n"), "```"]
    if kind == "table":
        return _md_table(block, number)
    if kind == "image":
        caption = f"Figure {number}. {block['caption']}"
        return [f"![{_md_cell(caption)}]({block['src']})", "", f"*{caption}*"]
    raise ValueError(f"unknown block kind {kind!r}")


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown (GitHub flavour): the same sections, tables, captions and figures as `render_html`.

    Args:
        report: see the module docstring.

    Returns:
        The Markdown text; figures are linked by their ``src`` path (relative to the Markdown file).
    """
    lines = [f"# {report['title']}", ""]
    for section, blocks in _numbered(report):
        if section is not None:
            lines += [f"## {section['title']}", ""]
        for block, number in blocks:
            lines += [*_md_block(block, number), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# -------------------------------------------------------------------------------------------------------- HTML

_NEUTRALISE = [
    (re.compile("//"), "/&#47;"),
    (re.compile(r"(?i)\b(https?):"), r"\1&#58;"),
    (re.compile(r"(?i)\b(url\s*)\("), r"\1&#40;"),
    (re.compile("@"), "&#64;"),
    (re.compile(r"(?i)\b(src|href|action|poster|srcset)(\s*)="), r"\1\2&#61;"),
]


def _text(value: str) -> str:
    """HTML-escaped text that cannot read as a network reference (``//``, ``url(``, ``@import``) in the source."""
    escaped = html.escape(value, quote=True)
    for pattern, replacement in _NEUTRALISE:
        escaped = pattern.sub(replacement, escaped)
    return escaped


def _anchor(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-") or "section"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG image.

    Raises:
        ValueError: the bytes are not a PNG image.
    """
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _align(fmt: str) -> str:
    """The CSS class of a column: ``num`` (right-aligned) or ``txt``."""
    return "num" if fmt in NUMERIC_FORMATS else "txt"


def _html_table(block: Mapping[str, Any], number: int) -> list[str]:
    columns = _columns(block)
    out = ["<table>", f"<caption>Table {number}. {_text(block['caption'])}</caption>", "<thead><tr>"]
    out += [f'<th class="{_align(fmt)}">{_text(label)}</th>' for _, label, fmt in columns]
    out.append("</tr></thead><tbody>")
    for row in block["rows"]:
        group = row.get("_group")
        if group is not None and group not in GROUPS:
            raise ValueError(f"table {number}: unknown row group {group!r}; known: {', '.join(GROUPS)}")
        cells = "".join(
            f'<td class="{_align(fmt)}">{_text(format_cell(row.get(key), fmt))}</td>' for key, _, fmt in columns
        )
        out.append(f'<tr class="{group}">{cells}</tr>' if group else f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    if block.get("note"):
        out.append(f'<p class="note">{_text(block["note"])}</p>')
    return out


def _html_image(block: Mapping[str, Any], number: int, images: Mapping[str, bytes]) -> list[str]:
    src = block["src"]
    if src not in images:
        raise ValueError(f"figure {number} ({src}): no image bytes given for it")
    try:
        width, height = png_size(images[src])
    except ValueError:
        raise ValueError(f"figure {number} ({src}): not a PNG image") from None
    data = base64.b64encode(images[src]).decode("ascii")
    caption = f"Figure {number}. {block['caption']}"
    return [
        "<figure>",
        f'<img src="data:image/png;base64,{data}" width="{width}" height="{height}" alt="{_text(caption)}">',
        f"<figcaption>{_text(caption)}</figcaption>",
        "</figure>",
    ]


def _html_block(block: Mapping[str, Any], number: int, images: Mapping[str, bytes]) -> list[str]:
    kind = block["kind"]
    if kind == "text":
        css = ' class="warning"' if block.get("style") == "warning" else ""
        return [f"<p{css}>{_text(block['text'])}</p>"]
    if kind == "list":
        return ["<ul>", *(f"<li>{_text(item)}</li>" for item in block["items"]), "</ul>"]
    if kind == "code":
        return [f"<pre><code>{_text(block['text'].rstrip(chr(10)))}</code></pre>"]
    if kind == "table":
        return _html_table(block, number)
    if kind == "image":
        return _html_image(block, number, images)
    raise ValueError(f"unknown block kind {kind!r}")


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1f2328; background: #ffffff; line-height: 1.45; margin: 0 auto; max-width: 1200px; padding: 20px 28px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.5em; border-bottom: 2px solid #d0d7de; padding-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.15em; }
nav ol { columns: 2; margin: 0.3em 0 1em; }
nav a { color: #0550ae; text-decoration: none; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.88em; max-width: 100%; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 0.35em; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; vertical-align: top; }
th { background: #f0f3f6; text-align: left; }
th.num { text-align: right; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.txt { min-width: 8em; }
tr.ours td { background: #eaf3ff; }
tr.ours td:first-child { border-left: 4px solid #2f81f7; }
tr.paper td { background: #fbfbfb; color: #3d444d; }
tr.paper td:first-child { border-left: 4px solid #9a6700; }
tr.reference td:first-child { border-left: 4px solid #8c959f; }
figure { margin: 0.8em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #d8dee4; }
figcaption { font-size: 0.88em; color: #57606a; margin-top: 0.3em; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 10px 12px; overflow-x: auto; font-size: 0.88em; }
p.note { font-size: 0.85em; color: #57606a; margin-top: -1em; }
p.warning { background: #fff8c5; border: 1px solid #d4a72c; padding: 8px 12px; }
ul { padding-left: 1.4em; }
"""


def render_html(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page: inline CSS, figures as base64 data URIs, no script.

    Args:
        report: see the module docstring.
        images: the PNG bytes of every image block, keyed by the block's ``src``.

    Returns:
        The HTML text; it references nothing outside itself (checked with `network_references`).

    Raises:
        ValueError: an image block without bytes in ``images`` or with bytes that are not a PNG, an unknown block
            kind, column format or row group.
    """
    title = _text(report["title"])
    toc = "".join(
        f'<li><a href="#{_anchor(s.get("id") or s["title"])}">{_text(s["title"])}</a></li>'
        for s in report.get("sections", [])
    )
    body: list[str] = [f"<h1>{title}</h1>"]
    for section, blocks in _numbered(report):
        if section is not None:
            body.append(f'<section id="{_anchor(section.get("id") or section["title"])}">')
            body.append(f"<h2>{_text(section['title'])}</h2>")
        for block, number in blocks:
            body += _html_block(block, number, images)
        if section is None:
            body.append(f"<nav><ol>{toc}</ol></nav>")
        else:
            body.append("</section>")
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{title}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
        ]
    )
    found = network_references(page)
    if found:
        raise ValueError(f"the rendered HTML references something outside itself: {found[:3]}")
    return page + "\n"


_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]*")
_NETWORK = re.compile(
    r"(?i)https?:|//|url\s*\(|@import|@font-face|<script|<link|<iframe|<object|<embed|<base\b|\bsrcset\s*="
    r"|\b(?:src|href|action|poster)\s*=\s*(?![\"']?(?:data:image/png;base64,|#))"
)


def network_references(page: str) -> list[str]:
    """What in an HTML page could make a browser fetch something: URLs, protocol-relative ``//``, CSS ``url(`` and
    ``@import``, script/link/frame elements, and ``src``/``href`` attributes that are not embedded PNG data URIs or
    in-page anchors. Embedded PNG data URIs themselves are skipped (base64 may contain ``//``).

    Args:
        page: the HTML text.

    Returns:
        Each offending match with a little context; empty for a self-contained page.
    """
    stripped = _DATA_URI.sub("data:image/png;base64,", page)
    return [stripped[max(0, m.start() - 20) : m.end() + 20] for m in _NETWORK.finditer(stripped)]


# ----------------------------------------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Any:
    """A matplotlib figure on an Agg canvas (no pyplot: nothing global to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def quality_figure(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Grouped bars of the teacher's and the student's dev score per task, the student's share of the teacher's
    score written above its bar.

    Args:
        rows: one per task: ``task`` (str), ``teacher`` and ``student`` (the task's selection score x100, or None
            when the model was not evaluated).

    Returns:
        The PNG bytes.

    Raises:
        EffbertError: no rows.
    """
    if not rows:
        raise EffbertError("quality figure: no task has dev scores (results/eval_summary/summary.json)")
    fig = _figure(max(4.5, 1.6 * len(rows) + 2), 3.6)
    ax = fig.add_subplot()
    width = 0.38
    positions = range(len(rows))
    teacher = [r["teacher"] if r["teacher"] is not None else 0.0 for r in rows]
    student = [r["student"] if r["student"] is not None else 0.0 for r in rows]
    ax.bar([p - width / 2 for p in positions], teacher, width, label="teacher (ours)", color="#8c959f")
    bars = ax.bar([p + width / 2 for p in positions], student, width, label="student (ours)", color="#2f81f7")
    for bar, row in zip(bars, rows, strict=True):
        if row["teacher"] and row["student"] is not None:
            ax.annotate(
                f"{100 * row['student'] / row['teacher']:.0f} %",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_xticks(list(positions), [str(r["task"]) for r in rows])
    ax.set_ylabel("dev selection score (x100)")
    ax.set_ylim(0, max([*teacher, *student, 1.0]) * 1.18)
    ax.set_title("Student vs teacher on dev (ours); % = student / teacher", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


LOG_SCALE_RATIO = 10.0
"""A latency panel switches to a log scale when its slowest median is more than this many times its fastest."""


def latency_figure(rows: Sequence[Mapping[str, Any]], seq_len: int) -> bytes:
    """Median latency bars with p10-p90 whiskers, one panel per batch size (log scale when the medians differ by
    more than `LOG_SCALE_RATIO`).

    Args:
        rows: one per (batch size, model): ``batch_size``, ``model`` (name shown), ``median_ms``, ``p10_ms``,
            ``p90_ms``.
        seq_len: the sequence length measured (shown in the titles).

    Returns:
        The PNG bytes.

    Raises:
        EffbertError: no rows.
    """
    if not rows:
        raise EffbertError("latency figure: nothing was measured")
    batches = sorted({int(r["batch_size"]) for r in rows})
    fig = _figure(max(4.5, 1.3 * len(rows) + 1.0 * len(batches)), 3.6)
    palette = ["#2f81f7", "#8c959f", "#cf222e", "#1a7f37", "#9a6700"]
    models = list(dict.fromkeys(str(r["model"]) for r in rows))
    colors = {model: palette[i % len(palette)] for i, model in enumerate(models)}
    for index, batch in enumerate(batches, start=1):
        ax = fig.add_subplot(1, len(batches), index)
        panel = [r for r in rows if int(r["batch_size"]) == batch]
        medians = [float(r["median_ms"]) for r in panel]
        errors = [
            [m - float(r["p10_ms"]) for m, r in zip(medians, panel, strict=True)],
            [float(r["p90_ms"]) - m for m, r in zip(medians, panel, strict=True)],
        ]
        names = [str(r["model"]) for r in panel]
        ax.bar(range(len(panel)), medians, yerr=errors, capsize=3, color=[colors[n] for n in names])
        ax.set_xticks(range(len(panel)), [n.replace(" (", "\n(") for n in names], fontsize=8)
        log_scale = max(medians) > LOG_SCALE_RATIO * min(medians)
        if log_scale:
            ax.set_yscale("log")
        ax.set_title(f"batch {batch}, seq {seq_len}", fontsize=10)
        ax.set_ylabel("ms (median, p10-p90)" + (", log scale" if log_scale else ""))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


__all__ = [
    "FORMATS",
    "GROUPS",
    "MISSING",
    "NUMERIC_FORMATS",
    "format_cell",
    "latency_figure",
    "network_references",
    "png_size",
    "quality_figure",
    "render_html",
    "render_markdown",
    "table_summaries",
]


METHOD_STYLES = {
    "teacher": ("#8c959f", "s"),
    "efficientbert": ("#cf222e", "*"),
    "tinybert": ("#2f81f7", "o"),
    "theseus": ("#1a7f37", "D"),
    "dynabert": ("#9a6700", "^"),
    "fastbert": ("#8250df", "v"),
    "student_plus": ("#cf222e", "P"),
    "student_tiny": ("#cf222e", "p"),
    "student_plusplus": ("#cf222e", "X"),
}
"""Colour and marker of each method (EfficientBERT's variants: its colour, their own markers) in the figures."""


def _plain_ticks() -> Any:
    """Tick labels as plain numbers (2, 5, 10) on a log axis, not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")


def _front_line(ax: Any, points: Sequence[tuple[float, float]]) -> None:
    """The Pareto front (cost up, score up) as a dashed step line through the given front points."""
    ordered = sorted(points)
    if len(ordered) > 1:
        xs, ys = zip(*ordered, strict=True)
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=0.8, label="Pareto front")


def methods_figure(rows: Sequence[Mapping[str, Any]], task: str, batch_size: int) -> bytes:
    """Dev score against latency at ``batch_size`` (log x) and against parameters, one colour per method; a method
    with several models (DynaBERT's grid, FastBERT's thresholds) drawn as a curve; the Pareto front dashed.

    Args:
        rows: `effbert.report.comparison.task_table`'s rows of one task.
        task: the task (the title).
        batch_size: the latency's batch size (a ``latency_ms_b<B>`` key of the rows).

    Raises:
        EffbertError: no rows.
    """
    from effbert.report.comparison import pareto_front

    if not rows:
        raise EffbertError(f"methods figure ({task}): no rows")
    fig = _figure(10.0, 4.0)
    axes = [
        (fig.add_subplot(1, 2, 1), f"latency_ms_b{batch_size}", "pareto_latency", f"latency, batch {batch_size} (ms)"),
        (fig.add_subplot(1, 2, 2), "params", "pareto_params", "parameters (M)"),
    ]
    for ax, key, front_key, label in axes:
        scale = 1e6 if key == "params" else 1.0
        for method in dict.fromkeys(str(r["method"]) for r in rows):
            mine = [r for r in rows if r["method"] == method and r.get(key) is not None]
            points = sorted((float(r[key]) / scale, float(r["score"])) for r in mine)
            if not points:
                continue
            color, marker = METHOD_STYLES.get(method, ("#57606a", "x"))
            name = str(mine[0].get("method_label", method))
            top = 5 if method == "efficientbert" else 3
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, marker=marker, color=color, label=name, zorder=top, s=60 if top == 5 else 30)
            if len(points) > 1:  # a grid or a sweep: the method's own best trade-offs as its curve
                own = [pt for pt, on in zip(points, pareto_front(points), strict=True) if on]
                ax.plot(*zip(*own, strict=True), color=color, linewidth=1.2, zorder=2)
        front = [(float(r[key]) / scale, float(r["score"])) for r in rows if r.get(front_key) and r.get(key)]
        _front_line(ax, front)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plain_ticks())
        ax.xaxis.set_minor_formatter(_plain_ticks())
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(label + ", log scale")
        ax.set_ylabel("dev score")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{task}: methods compared on one teacher, one data set, one latency protocol", fontsize=10)
    fig.tight_layout()
    return _png(fig)
