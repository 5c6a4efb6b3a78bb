"""The document blocks a report section is made of (the format is described in `effbert.report.render`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FIGURES_DIR = "figures"
"""Where the PNG figures go inside the report directory (Markdown links them relative to ``report.md``)."""

MODEL_NAMES = {"student": "student (ours)", "teacher": "teacher (ours)", "bert_base": "BERT-base (random init)"}
"""Display name of each model measured for size and speed."""

Column = tuple[str, str, str]
"""A table column: (row key, header label, format of `effbert.report.render.FORMATS`)."""


def figure_src(name: str) -> str:
    """``quality`` -> ``figures/quality.png``: the path a report links a figure by (relative to ``report.md``)."""
    return f"{FIGURES_DIR}/{name}.png"


def table(caption: str, columns: Sequence[Column], rows: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    """A table block; ``note`` (optional) is shown under it."""
    block: dict[str, Any] = {
        "kind": "table",
        "caption": caption,
        "columns": [{"key": key, "label": label, "format": fmt} for key, label, fmt in columns],
        "rows": rows,
    }
    if note:
        block["note"] = note
    return block


def text(value: str, style: str | None = None) -> dict[str, Any]:
    """A paragraph; ``style="warning"`` highlights it."""
    return {"kind": "text", "text": value, **({"style": style} if style else {})}


def bullets(items: Iterable[str]) -> dict[str, Any]:
    """A bulleted list."""
    return {"kind": "list", "items": list(items)}


def code(value: str) -> dict[str, Any]:
    """A block shown verbatim."""
    return {"kind": "code", "text": value}


def image(src: str, caption: str) -> dict[str, Any]:
    """A figure, ``src`` as `figure_src` gives it."""
    return {"kind": "image", "src": src, "caption": caption}


def section(section_id: str, title: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """A titled section of the report (``section_id`` is its HTML anchor)."""
    return {"id": section_id, "title": title, "blocks": blocks}


def pick(record: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """``record``'s values of ``keys`` (None where missing)."""
    return {key: record.get(key) for key in keys}
