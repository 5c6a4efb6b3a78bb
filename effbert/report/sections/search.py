"""Section "Search": strategy and budget, the three stages against their vanilla candidate, the winners layer by
layer as formulas, the proxy's faithfulness (Kendall's tau, when search_quality ran) and the search figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from effbert.params import Params, StageBudget
from effbert.report.sections.blocks import Column, bullets, figure_src, image, section, table, text


def _strategy(params: Params) -> str:
    search = params.search
    if search.strategy == "lanas":
        height = search.lanas.tree_height or "the paper's rule"
        return (
            f"LaNAS (tree of LightGBM classifiers): {search.lanas.n_init} random samples first, tree refit every "
            f"{search.lanas.refit_every} evaluations, tree height {height}"
        )
    if search.strategy == "evolution":
        return (
            f"regularised evolution: population {search.evolution.population_size}, tournament "
            f"{search.evolution.tournament_size}"
        )
    return "random sampling"


def _budget(budget: StageBudget) -> str:
    limit = f" or {budget.max_minutes:g} minutes" if budget.max_minutes else ""
    return f"{budget.candidates} candidates{limit}"


def _overview(params: Params, stages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Strategy, fitness, parameter window, latency budget and candidate budget of the search."""
    search = params.search
    window = stages[0]["metrics"].get("param_window")
    low, high = search.param_window
    window_text = (
        f"{window[0] / 1e6:.2f}M-{window[1] / 1e6:.2f}M (the paper's {low / 1e6:g}M-{high / 1e6:g}M scaled to this "
        "student frame)"
        if window
        else f"{low / 1e6:g}M-{high / 1e6:g}M"
    )
    latency = search.max_latency_ms
    return bullets(
        [
            f"Strategy: {search.strategy}: {_strategy(params)}.",
            f"Fitness: held-out score on the proxy task {params.proxy_task}; candidates start from the warm-up "
            f"supernet's weights: {'yes' if search.inherit_weights else 'no (random init)'}.",
            f"Parameter window: {window_text}; latency budget: "
            + (f"{latency:g} ms per candidate." if latency else "none."),
            f"Budget: stage 1 {_budget(search.stage1)} (expressions and sizes), stage 2 {_budget(search.stage2)} "
            f"(expressions, sizes frozen), stage 3 {_budget(search.stage3)} (sizes, scored with weight sharing).",
        ]
    )


def _stage_row(stage: Mapping[str, Any]) -> dict[str, Any]:
    m = stage["metrics"]
    seconds = m.get("search_seconds")
    return {
        "stage": f"stage {stage['stage']}",
        "strategy": m.get("strategy"),
        "candidates": m.get("candidates"),
        "failed": m.get("failed"),
        "best": m.get("best_fitness"),
        "vanilla": m.get("vanilla_fitness"),
        "gain": m.get("gain_over_vanilla"),
        "gain_sd": m.get("gain_in_noise_sd"),
        "params": m.get("winner_params"),
        "latency": m.get("winner_latency_ms"),
        "minutes": seconds / 60 if isinstance(seconds, int | float) else None,
        "per_minute": m.get("candidates_per_minute"),
    }


def _stage_table(params: Params, stages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per stage: best fitness against the vanilla candidate, candidates, the winner's size and latency, time."""
    protocol = stages[-1]["metrics"].get("latency_protocol")
    note = (
        f"Winner latency: median of {protocol.get('runs')} runs at batch {protocol.get('batch_size')}, sequence "
        f"{protocol.get('seq_len')}, {protocol.get('threads')} thread(s) on {protocol.get('machine', {}).get('cpu')}."
        if isinstance(protocol, dict)
        else ""
    )
    return table(
        f"Search stages: best proxy fitness ({params.proxy_task} held-out score) against the vanilla GELU MLP "
        "candidate of the same stage, candidates evaluated, the winner's size and latency, search time",
        [
            ("stage", "stage", "text"),
            ("strategy", "strategy", "text"),
            ("candidates", "candidates", "int"),
            ("failed", "failed", "int"),
            ("best", "best fitness", "float4"),
            ("vanilla", "vanilla fitness", "float4"),
            ("gain", "gain over vanilla", "signed4"),
            ("gain_sd", "gain / proxy noise SD", "rate"),
            ("params", "winner params", "millions"),
            ("latency", "winner latency ms", "ms"),
            ("minutes", "search minutes", "rate"),
            ("per_minute", "candidates / minute", "rate"),
        ],
        [_stage_row(stage) for stage in stages],
        note,
    )


def _noise(stages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The proxy's noise (stage 1's vanilla candidate under several seeds) and, per stage, whether its gain over the
    vanilla candidate is beyond it, in plain words (the stage's ``gain_verdict``)."""
    noise = stages[0]["metrics"].get("proxy_noise")
    if not noise:
        return text("The proxy's noise was not measured (search.noise_seeds: 0): the stage gains carry no error bar.")
    scores = ", ".join(f"{f:.4f}" for f in noise["fitness"])
    lines = [
        f"Proxy noise: the stage-1 vanilla GELU candidate scored under seeds {noise['seeds']} (data order and fresh "
        f"head): {scores}; mean {noise['mean']:.4f}, standard deviation {noise['std']:.4f}."
    ]
    for stage in stages:
        gain, said = stage["metrics"].get("gain_over_vanilla"), stage["metrics"].get("gain_verdict")
        if not isinstance(gain, int | float) or not said:
            continue
        note = (
            " (stage 3 scores with weight sharing, not the proxy: the unit is indicative)"
            if stage["stage"] == 3
            else ""
        )
        lines.append(f"Stage {stage['stage']}: gain {gain:+.4f} = {said}{note}.")
    return bullets(lines)


def _layer_table(stages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The winner of each stage, layer by layer, as formulas; the final winner's units and widths."""
    final = stages[-1]["layers"]
    rows = []
    for index in range(max(len(stage["layers"]) for stage in stages)):
        row: dict[str, Any] = {"layer": index + 1}
        for stage in stages:
            layers = stage["layers"]
            row[f"stage{stage['stage']}"] = layers[index]["formula"] if index < len(layers) else None
        row["size"] = f"{final[index]['units']} × {final[index]['width']}" if index < len(final) else None
        rows.append(row)
    hidden = sorted({stage["hidden_size"] for stage in stages})
    columns: list[Column] = [
        ("layer", "layer", "int"),
        *((f"stage{stage['stage']}", f"stage {stage['stage']} winner", "text") for stage in stages),
        ("size", "final units × width", "text"),
    ]
    return table(
        "The winner of each stage, layer by layer, as formulas (s×(H/r): s stacked MLP units of width H/r, H = "
        f"{'/'.join(map(str, hidden))}); the last stage's winner is the final student",
        columns,
        rows,
    )


def _kendall(quality: Mapping[str, Any] | None) -> dict[str, Any]:
    """Kendall's tau of the proxy with and without weight inheritance, or why it is not there."""
    if quality is None:
        return text(
            "Kendall's tau of the proxy: not measured (the optional stage search_quality did not run; "
            "effbert run --target search_quality)."
        )
    return table(
        f"Proxy faithfulness (search_quality): Kendall's tau-b between the proxy fitness and the final "
        f"{quality.get('proxy_task')} dev score of {quality.get('candidates')} candidates of "
        f"{quality.get('search_stage')}",
        [("proxy", "proxy", "text"), ("tau", "Kendall's tau", "float3"), ("p", "p-value", "float3")],
        [
            {
                "proxy": "with weight inheritance (warm-up supernet slices)",
                "tau": quality.get("kendall_tau_inherit"),
                "p": quality.get("kendall_p_inherit"),
            },
            {
                "proxy": "without (random init)",
                "tau": quality.get("kendall_tau_scratch"),
                "p": quality.get("kendall_p_scratch"),
            },
        ],
    )


def _figures(stages: Sequence[Mapping[str, Any]], quality_png: bool) -> list[dict[str, Any]]:
    """The search figure of each stage that drew one, then the search_quality figure when it is shown."""
    blocks = [
        image(
            figure_src(f"search_stage{stage['stage']}"),
            f"Search stage {stage['stage']}: fitness against parameters and latency with the Pareto front, best "
            "fitness so far, operators of the best candidates.",
        )
        for stage in stages
        if stage["figure"] is not None
    ]
    if quality_png:
        blocks.append(
            image(figure_src("search_quality"), "Proxy fitness against the final dev score (search_quality).")
        )
    return blocks


def search_section(
    params: Params, stages: Sequence[Mapping[str, Any]], quality: Mapping[str, Any] | None, quality_png: bool
) -> dict[str, Any]:
    """Per-stage figures, the winners as formulas, strategy and budget, Kendall's tau when measured.

    Args:
        params: the run's params (``search``).
        stages: from `effbert.report.inputs.collect_search`.
        quality: ``search_quality``'s ``metrics.json``, or None when it did not run.
        quality_png: whether the search_quality figure is shown.
    """
    blocks = [
        _overview(params, stages),
        _stage_table(params, stages),
        _noise(stages),
        _layer_table(stages),
        _kendall(quality),
        *_figures(stages, quality_png),
    ]
    return section("search", "Search", blocks)
