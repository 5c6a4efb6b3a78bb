"""Search figures render to PNG for full, degenerate and failing searches."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from effbert.methods.efficientbert.search.hall_of_fame import hall_of_fame
from effbert.methods.efficientbert.search.plots import quality_figure, search_figure

LAYERS = (
    "linear1_1(gelu(linear1_1(x,wb1)),wb2)",
    "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))",
    "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
    "elu(linear2_1(gelu(linear2_1(x,wb1)),wb2))",
)
PNG_MAGIC = b"\x89PNG"


def record(index: int, rng: random.Random, status: str = "ok", latency: bool = True) -> dict[str, Any]:
    """A plausible evaluation record of a 3-layer architecture."""
    ok = status == "ok"
    return {
        "index": index,
        "architecture": " | ".join(rng.choice(LAYERS) for _ in range(3)),
        "fingerprint": f"fp{index}",
        "origin": rng.choice(["seed", "random", "evolution"]),
        "params": rng.randrange(5_000_000, 15_000_000),
        "latency_ms": rng.uniform(1.0, 5.0) if latency and ok else math.nan,
        "fitness": rng.uniform(0.3, 0.9) if ok else 0.0,
        "status": status,
        "error": "" if ok else "boom",
        "wall_seconds": 1.0,
        "worker": "w0",
        "run_id": "",
    }


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


def main_axes(fig: Figure) -> int:
    """Panels, not counting colour bars."""
    return sum(1 for ax in fig.axes if ax.get_label() != "<colorbar>")


@pytest.fixture
def search() -> pd.DataFrame:
    rng = random.Random(0)
    statuses = ["ok"] * 20 + ["invalid", "diverged", "error"]
    return hall_of_fame([record(i, rng, status) for i, status in enumerate(statuses)])


def test_search_figure_renders_four_panels(search: pd.DataFrame) -> None:
    fig = search_figure(search, "stage 1", reference_fitness=0.6, top=5)
    assert isinstance(fig, Figure)
    assert main_axes(fig) == 4
    assert png(fig).startswith(PNG_MAGIC)
    legend = fig.axes[2].get_legend()
    assert legend is not None
    labels = [text.get_text() for text in legend.get_texts()]
    assert "vanilla GELU" in labels


def test_search_figure_without_latency_says_so() -> None:
    rng = random.Random(1)
    df = hall_of_fame([record(i, rng, latency=False) for i in range(5)])
    fig = search_figure(df, "no latency")
    texts = [text.get_text() for text in fig.axes[1].texts]
    assert "latency not measured" in texts
    assert png(fig).startswith(PNG_MAGIC)


def test_search_figure_single_record() -> None:
    fig = search_figure(hall_of_fame([record(0, random.Random(2))]), "one")
    assert main_axes(fig) == 4
    assert png(fig).startswith(PNG_MAGIC)


def test_search_figure_only_a_failed_record() -> None:
    fig = search_figure(hall_of_fame([record(0, random.Random(3), status="error")]), "failed")
    assert main_axes(fig) == 4
    assert "no successful candidates" in [text.get_text() for text in fig.axes[3].texts]
    assert png(fig).startswith(PNG_MAGIC)


def test_search_figure_of_nothing() -> None:
    assert png(search_figure(hall_of_fame([]), "empty")).startswith(PNG_MAGIC)


def test_quality_figure_one_panel_per_proxy() -> None:
    rng = random.Random(4)
    df = pd.DataFrame(
        {
            "fitness_short": [rng.random() for _ in range(8)],
            "fitness_long": [rng.random() for _ in range(7)] + [math.nan],
            "final": [rng.random() for _ in range(8)],
        }
    )
    fig = quality_figure(df, ["fitness_short", "fitness_long"], "final", {"fitness_short": 0.42})
    assert len(fig.axes) == 2
    assert "0.420" in fig.axes[0].get_title()
    assert "n/a" in fig.axes[1].get_title()
    assert png(fig).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="missing_column"):
        quality_figure(df, ["missing_column"], "final", {})
