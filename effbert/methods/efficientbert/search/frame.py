"""What every search stage derives from the ``student`` frame and the warm-up supernet: the fixed parameter count,
the parameter window scaled from the paper's, and each candidate's latency (measured once per architecture and
machine, cached in a JSON file next to the search state, with a checksum: a damaged cache is discarded with one
warning line and rebuilt)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from effbert.integrity import read_sealed_json, write_sealed_json
from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.search.space import (
    SearchSpace,
    architecture_string,
    config_frame_params,
    scaled_param_window,
)
from effbert.params import LatencyParams, SearchParams, StudentParams

LATENCY_FILE = "latency.json"
"""The latency cache inside a search state folder: ``{"latency_ms": {key: ms}, "sha256": ...}``."""


def load_latency_cache(path: Path) -> dict[str, float]:
    """The measured latencies of a cache file (empty when there is none). A cache cut short or changed since it was
    written (it fails to parse or to match its checksum) is discarded with one warning line: its latencies are
    measured again."""
    record = read_sealed_json(path, "latency cache", "measuring again") or {}
    entries = record.get("latency_ms", {})
    return {str(k): float(v) for k, v in entries.items()} if isinstance(entries, dict) else {}


class LatencyMeter:
    """Latency of a candidate (the compact model sliced from the supernet) under the protocol of
    `effbert.measure.latency`, cached by machine (CPU model, torch version, threads) and architecture string: measured
    once per architecture on the machine that runs the search."""

    def __init__(self, supernet: Any, latency: LatencyParams, cache_file: Path) -> None:
        from effbert.measure.latency import machine_description, torch_threads

        self.supernet = supernet
        self.latency = latency
        self.cache_file = cache_file
        with torch_threads(latency.threads):
            self.machine = machine_description("cpu")  # recorded next to the figures (metrics.json)
        self.machine_key = f"{self.machine['cpu']}; torch {self.machine['torch']}; {latency.threads} threads"
        self.cache = load_latency_cache(cache_file)

    def __call__(self, arch: Architecture) -> float:
        key = f"{self.machine_key} | {architecture_string(arch)}"
        if key not in self.cache:
            from effbert.measure.latency import measure_latency
            from effbert.methods.efficientbert.supernet import materialize

            compact = materialize(self.supernet, arch)
            hp = self.latency
            result = measure_latency(
                compact, hp.batch_size, hp.seq_len, warmup=hp.warmup, runs=hp.runs, threads=hp.threads, device="cpu"
            )
            self.cache[key] = result.median_ms
            write_sealed_json(self.cache_file, {"latency_ms": self.cache})
        return self.cache[key]


class SearchFrame:
    """The supernet's frame as the search sees it: fixed parameters, the window, latency, the latency budget.

    Args:
        supernet: the warm-up supernet (eval mode).
        teacher_hidden: the teacher's hidden size (the ``fit_dense`` projection counts in the paper's window).
        student: the ``student`` params section (the supernet must have its frame).
        search: the ``search`` params section (window, latency protocol and budget).
        state_dir: the stage's search state folder (holds the latency cache).

    Raises:
        ValueError: the supernet's hidden size or layer count differs from the ``student`` section's.
    """

    def __init__(
        self, supernet: Any, teacher_hidden: int, student: StudentParams, search: SearchParams, state_dir: Path
    ) -> None:
        config = supernet.config
        if config.hidden_size != student.hidden_size or config.num_hidden_layers != student.num_layers:
            raise ValueError(
                f"supernet H={config.hidden_size}, L={config.num_hidden_layers} differs from the student section "
                f"(H={student.hidden_size}, L={student.num_layers})"
            )
        self.supernet = supernet
        self.hidden = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers)
        self.fixed_params, max_mlp = config_frame_params(config, teacher_hidden, student.max_ffn_units)
        low, high = search.param_window
        self.window = scaled_param_window(self.fixed_params, max_mlp, (int(low), int(high)))
        self.latency = LatencyMeter(supernet, search.latency, state_dir / LATENCY_FILE)
        budget = search.max_latency_ms
        self.accept: Callable[[Architecture], bool] | None = (
            None if budget is None else (lambda arch: self.latency(arch) <= budget)
        )

    def describe(self, space: SearchSpace) -> Callable[[Architecture], dict[str, Any]]:
        """The columns of a proposal known before it is evaluated: parameters and latency."""

        def columns(arch: Architecture) -> dict[str, Any]:
            return {"params": space.params(arch), "latency_ms": round(self.latency(arch), 4)}

        return columns


def vanilla_at(arch: Architecture) -> Architecture:
    """Plain GELU MLPs with the size ids of ``arch``: the reference a searched architecture is compared with."""
    from effbert.methods.efficientbert.expr import vanilla

    exprs = [str(vanilla()) for _ in arch.layers]
    return Architecture.from_size_ids(exprs, arch.size_ids, arch.hidden_size, name=f"vanilla-{arch.name}")
