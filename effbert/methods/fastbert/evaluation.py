"""FastBERT's speed-accuracy curve: dev metrics and measured latency per exit threshold (``speed``).

- :func:`evaluate_sweep`: per threshold, the task's official dev metrics (as `effbert.eval.evaluation.evaluate_dev`
  scores a model) of the early-exit predictions under the per-sample rule (exited rows leave the batch), the mean
  exit layer (= the layers a row runs) and how deep a batch goes.
- :func:`time_sweep`: per threshold and batch size, the wall latency of early-exit inference on real dev rows padded
  to a fixed length, under the paper's batch rule (a batch runs until its last row exits: at batch 1 the same as
  per-sample), with the mean exit layer of the timed rows. It follows the latency protocol of
  `effbert.measure.latency` (threads set for the measurement, inference mode, untimed warm-up, every call timed
  alone, the median reported) with real rows instead of random ids: an exit depends on the text.

No file or tracking I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch

from effbert.data.prepared import EvalSplit
from effbert.data.tasks import TaskSpec, selection_score
from effbert.eval.inference import padded_batches
from effbert.eval.metrics import glue_metrics
from effbert.eval.scoring import logits_to_predictions
from effbert.measure.latency import machine_description, model_mode, time_calls, torch_threads

__all__ = ["evaluate_sweep", "padded_rows", "time_sweep"]


def _split_outputs(
    model: Any, tokenizer: Any, split: EvalSplit, speed: float, batch_size: int, device: str, bf16: bool
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Early-exit logits (N, C), exit layers (N,) and per batch the layers run, of one split in row order."""
    from effbert.compute import autocast

    logits, exits, layers_run = [], [], []
    with torch.inference_mode(), autocast(bf16, device):
        for batch in padded_batches(split.features, tokenizer, batch_size):
            result = model.exit_forward(**{k: v.to(device) for k, v in batch.items()}, speed=speed, rule="sample")
            logits.append(result.logits.float().cpu())
            exits.append(result.exit_layers.cpu())
            layers_run.append(result.layers_run)
    return torch.cat(logits), torch.cat(exits), layers_run


def evaluate_sweep(
    model: Any,
    tokenizer: Any,
    spec: TaskSpec,
    splits: Sequence[EvalSplit],
    speeds: Sequence[float],
    batch_size: int,
    device: str,
    bf16: bool = False,
) -> list[dict[str, Any]]:
    """Score early-exit inference at every threshold of ``speeds`` on every dev split (per-sample exit rule).

    Args:
        model: a `FastBertForSequenceClassification` (anything with ``exit_forward`` and ``config``).
        tokenizer: pads the batches.
        spec: the (classification) task.
        splits: its prepared dev splits (`effbert.data.prepared.eval_splits`).
        speeds: the thresholds, in the order of the result.
        batch_size: rows per batch.
        device: where the forward passes run.
        bf16: run them under bf16 autocast.

    Returns:
        One record per threshold: ``speed``, ``metrics`` (names suffixed ``_mm`` for MNLI mismatched), ``score``
        (the task's selection score), ``rows``, ``mean_exit_layer``, ``mean_layers_run`` (layers a row runs, on
        average: under the per-sample rule its exit layer, so the expected backbone cost), ``mean_batch_depth``
        (per batch of ``batch_size``: its deepest row, what the batch rule would run), ``layers`` (the backbone's),
        ``layer_ratio`` (layers / mean exit layer: the backbone's FLOPs ratio, branches not counted) and
        ``exit_counts`` (rows exiting after each layer, 1..L), all splits together.
    """
    model = model.to(device).eval()
    layers = int(model.config.num_hidden_layers)
    records = []
    for speed in speeds:
        metrics: dict[str, float] = {}
        rows: dict[str, int] = {}
        exits, runs = [], []
        for split in splits:
            logits, exit_layers, layers_run = _split_outputs(model, tokenizer, split, speed, batch_size, device, bf16)
            preds = logits_to_predictions(spec, logits.numpy())
            suffix = "" if split.name == "dev" else "_" + split.name.removeprefix("dev_")
            split_metrics = glue_metrics(spec.name, preds, split.features["label"])
            metrics.update({f"{k}{suffix}": v for k, v in split_metrics.items()})
            rows[split.name] = len(split.features)
            exits.append(exit_layers)
            runs += layers_run
        exit_layers = torch.cat(exits)
        mean_exit = float(exit_layers.float().mean())
        records.append(
            {
                "speed": float(speed),
                "metrics": metrics,
                "score": selection_score(spec.name, metrics),
                "rows": rows,
                "mean_exit_layer": mean_exit,
                "mean_layers_run": mean_exit,
                "mean_batch_depth": sum(runs) / max(1, len(runs)),
                "layers": layers,
                "layer_ratio": layers / mean_exit,
                "exit_counts": torch.bincount(exit_layers, minlength=layers + 1)[1:].tolist(),
            }
        )
    return records


def padded_rows(rows: Any, seq_len: int, pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Tokenised rows (a ``datasets.Dataset`` or a list of dicts with ``input_ids``, optionally ``token_type_ids``)
    cut or padded to ``seq_len``: ``input_ids`` (pad id), ``attention_mask`` (0 on padding), ``token_type_ids``."""
    items = list(rows) if isinstance(rows, list) else [rows[i] for i in range(len(rows))]
    ids = torch.full((len(items), seq_len), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(items), seq_len), dtype=torch.long)
    types = torch.zeros((len(items), seq_len), dtype=torch.long)
    for i, item in enumerate(items):
        tokens = list(item["input_ids"])[:seq_len]
        ids[i, : len(tokens)] = torch.tensor(tokens)
        mask[i, : len(tokens)] = 1
        if item.get("token_type_ids") is not None:
            segments = list(item["token_type_ids"])[: len(tokens)]
            types[i, : len(segments)] = torch.tensor(segments)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "token_type_ids": types.to(device)}


def _time_batches(
    model: Any,
    batches: list[dict[str, torch.Tensor]],
    speed: float,
    runs: int,
    warmup: int,
    device: torch.device,
    timed: dict[tuple[int, tuple[int, ...]], tuple[float, list[float]]],
) -> tuple[list[float], torch.Tensor, list[int], float]:
    """Milliseconds of ``max(runs, len(batches))`` calls cycling through ``batches`` after ``warmup`` untimed calls
    per batch; the exit layers (per row) and layers run (per batch) of one pass over them; the threshold timed.

    ``timed`` maps (batch size, layers run per batch) to the threshold and times of an earlier timing: the same
    layers on the same batches are the same computation, so its times are reused (and ``timed`` gains new ones)."""
    calls = [partial(model.exit_forward, **batch, speed=speed, rule="batch") for batch in batches]
    results = [call() for call in calls]
    exits, layers_run = torch.cat([r.exit_layers.cpu() for r in results]), [r.layers_run for r in results]
    key = (int(batches[0]["input_ids"].shape[0]), tuple(layers_run))
    if key in timed:
        return timed[key][1], exits, layers_run, timed[key][0]
    for call in calls:
        time_calls(call, warmup, device)
    times: list[float] = []
    for index in range(max(runs, len(calls))):
        times += time_calls(calls[index % len(calls)], 1, device)
    timed[key] = (float(speed), times)
    return times, exits, layers_run, float(speed)


def _latency_record(
    speed: float, size: int, seq_len: int, times: list[float], exits: torch.Tensor, layers_run: list[int]
) -> dict[str, Any]:
    cuts = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else [times[0]] * 9
    median = statistics.median(times)
    return {
        "speed": float(speed),
        "batch_size": size,
        "seq_len": seq_len,
        "rule": "batch",
        "batches": len(layers_run),
        "calls": len(times),
        "median_ms": median,
        "mean_ms": statistics.fmean(times),
        "p10_ms": cuts[0],
        "p90_ms": cuts[-1],
        "ms_per_row": median / size,
        "mean_exit_layer": float(exits.float().mean()),
        "mean_layers_run": sum(layers_run) / len(layers_run),
    }


def time_sweep(
    model: Any,
    rows: Any,
    speeds: Sequence[float],
    batch_sizes: Sequence[int],
    seq_len: int,
    runs: int,
    warmup: int,
    threads: int | None,
    latency_rows: int | None = None,
) -> list[dict[str, Any]]:
    """Wall latency of early-exit inference per threshold and batch size on real rows (the paper's batch rule).

    At batch size ``b`` the first ``max(latency_rows, b)`` of ``rows`` (``latency_rows`` None: all of them; e.g. the
    dev split and ``fastbert.latency_rows``), padded to ``seq_len``, are cut into batches of ``b`` (an incomplete
    last batch is dropped; with fewer rows than ``b`` the rows repeat to fill one batch). Each (threshold, size)
    times ``max(runs, batches)`` calls cycling through the batches, after ``warmup`` untimed calls per batch, on the
    model's device in inference mode with ``threads`` torch threads. Thresholds under which every batch runs the
    same layers as under an earlier one at that size do the same computation, so they share its timing (``timed_with``
    names that threshold; at batch 32 most thresholds run every layer).

    Returns:
        One record per (speed, batch size), speeds outer: ``speed``, ``batch_size``, ``seq_len``, ``rule``,
        ``batches``, ``calls``, ``median_ms`` / ``mean_ms`` / ``p10_ms`` / ``p90_ms`` (per call = per batch),
        ``ms_per_row`` (median / batch size), ``mean_exit_layer`` (the timed rows'), ``mean_layers_run`` (per
        batch: its deepest row), ``threads``, ``device``, ``machine``.
    """
    device = next(model.parameters()).device
    pad = int(getattr(model.config, "pad_token_id", None) or 0)
    records = []
    with torch_threads(threads) as used, model_mode(model, False), torch.inference_mode():
        machine = machine_description(device)
        by_size = []  # (size, its batches): they depend on the size alone
        for size in batch_sizes:
            count = max(size, min(len(rows), latency_rows or len(rows)))
            inputs = padded_rows([rows[i % len(rows)] for i in range(count)], seq_len, pad, device)
            by_size.append(
                (size, [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, count - size + 1, size)])
            )
        timed: dict[tuple[int, tuple[int, ...]], tuple[float, list[float]]] = {}  # (size, layers run) -> timing
        for speed in speeds:
            for size, batches in by_size:
                times, exits, layers_run, timed_with = _time_batches(model, batches, speed, runs, warmup, device, timed)
                record = _latency_record(speed, size, seq_len, times, exits, layers_run)
                extra = {"timed_with": timed_with, "threads": used, "device": str(device), "machine": machine}
                records.append({**record, **extra})
    return records
