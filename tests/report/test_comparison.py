"""The methods' comparison: Pareto fronts, the per-task rows, the Markdown tables and the figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from effbert import params as params_mod
from effbert.report import render
from effbert.report.comparison import comparison_markdown, pareto_front, task_table
from effbert.report.sections.methods import absent_notes, methods_section

ROOT = Path(__file__).resolve().parents[2]


def test_pareto_front_keeps_only_undominated_points() -> None:
    # (cost, score): b dominates a (cheaper and better); c is dearer but the best; d ties c's cost with a lower score
    points = [(10.0, 0.80), (5.0, 0.85), (20.0, 0.90), (20.0, 0.70), (5.0, 0.85)]
    assert pareto_front(points) == [False, True, True, False, True]
    assert pareto_front([]) == []


def comparison_rows() -> list[dict[str, Any]]:
    """Rows as `task_table` writes them (a fake comparison, no model involved)."""
    shapes = [
        ("teacher", "", 10.0, 22e6, 0.90),
        ("efficientbert", "", 2.0, 5e6, 0.85),
        ("tinybert", "", 1.5, 4e6, 0.80),
        ("dynabert", "width 0.5, depth 1", 6.0, 15e6, 0.86),
        ("dynabert", "width 1, depth 1", 10.0, 22e6, 0.89),
    ]
    return [{"method": m, "variant": v, "latency_ms_b1": lat, "params": p, "score": s} for m, v, lat, p, s in shapes]


def test_task_table_marks_teacher_share_and_fronts(monkeypatch: pytest.MonkeyPatch) -> None:
    from effbert.report import comparison

    p = params_mod.load(ROOT / "params" / "smoke.yaml")
    rows = comparison_rows()
    grid = {"width 0.5, depth 1": (0.5, 1.0), "width 1, depth 1": (1.0, 1.0)}
    candidates = [
        comparison.Candidate(r["method"], "sst2", Path("x"), {"score": r["score"]}, *grid.get(r["variant"], (1.0, 1.0)))
        for r in rows
    ]
    shapes = {c.shape_key: {k: v for k, v in r.items() if k != "score"} for c, r in zip(candidates, rows, strict=True)}
    one_batch = p.model_copy(update={"latency": p.latency.model_copy(update={"batch_sizes": [1]})})
    table = task_table(one_batch, "sst2", candidates, shapes, Path("unused"))
    by_method = {r["method"]: r for r in table}
    assert by_method["teacher"]["vs_teacher"] == 1.0
    assert by_method["efficientbert"]["vs_teacher"] == pytest.approx(0.85 / 0.90)
    assert by_method["efficientbert"]["pareto_latency"] and by_method["tinybert"]["pareto_latency"]
    assert by_method["efficientbert"]["method_label"] == "EfficientBERT (ours)"
    dyna = [r for r in table if r["method"] == "dynabert"]
    assert [r["variant"] for r in dyna] == ["width 0.5, depth 1", "width 1, depth 1"]
    assert [r["pareto_latency"] for r in dyna] == [True, False]  # w1 ties the teacher's latency, scores less


def test_markdown_and_figure_render_every_method() -> None:
    rows = comparison_rows()
    flags = pareto_front((r["latency_ms_b1"], r["score"]) for r in rows)
    for row, flag in zip(rows, flags, strict=True):
        row.update(pareto_latency=flag, pareto_params=flag, method_label=row["method"], vs_teacher=row["score"] / 0.9)
        row.update(shape="3L H8", params_without_embeddings=row["params"] / 2, macs=1e9)
    comparison = {
        "tasks": {"sst2": rows},
        "protocol": {"batch_sizes": [1], "seq_len": 128},
        "machine": {"cpu": "test cpu"},
        "macs_seq_len": 128,
    }
    text = comparison_markdown(comparison)
    assert text.count("| dynabert |") == 2 and "### sst2" in text and "test cpu" in text
    png = render.methods_figure(rows, "sst2", 1)
    assert png.startswith(b"\x89PNG")
    p = params_mod.load(ROOT / "params" / "smoke.yaml")
    section = methods_section(comparison, p)
    kinds = [block["kind"] for block in section["blocks"]]
    assert kinds.count("table") == 1 and kinds.count("image") == 1


def test_report_says_why_a_method_is_absent() -> None:
    p = params_mod.load(ROOT / "params" / "smoke.yaml")  # sst2, mrpc, squad_v1
    notes = absent_notes(p)
    assert any(n.startswith("dynabert is absent from squad_v1") for n in notes)
    assert any(n.startswith("fastbert is absent from squad_v1") for n in notes)
