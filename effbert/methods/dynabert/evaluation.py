"""A trained DynaBERT model's grid: reading it, scoring every (width, depth) sub-network on dev, and exporting one
sub-network as its own compact model directory.

The evaluation runs each sub-network through `effbert.eval.evaluation.evaluate_dev` inside
`subnetworks.subnetwork` (the model's own forward on weight slices, exactly what training scored); the parameter
counts are those of the `subnetworks.extract`-ed compact model. An exported sub-network is a `modeling` model
(``model_type`` "effbert-dynabert", Auto-loadable once effbert registers it) with the teacher's tokenizer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effbert.data.prepared import EvalSplit
from effbert.data.tasks import TaskSpec, selection_score
from effbert.errors import EffbertError
from effbert.params import EvaluateParams

log = logging.getLogger(__name__)

__all__ = [
    "GRID_CONFIG_KEY",
    "GRID_FILE",
    "compact_subnetwork",
    "evaluate_grid",
    "export_subnetwork",
    "load_grid",
    "subnetwork_params",
]

GRID_FILE = "dynabert.json"
"""Beside a DynaBERT model: ``{"widths": [...], "depths": [...], "grid": [[w, d], ...]}``."""

GRID_CONFIG_KEY = "dynabert_grid"
"""The same grid in the model's ``config.json`` (so a loaded model knows its sub-networks)."""


def load_grid(model_dir: Path | str) -> list[tuple[float, float]]:
    """The (width, depth) grid of the DynaBERT model in ``model_dir`` (its ``dynabert.json``).

    Raises:
        EffbertError: no ``dynabert.json`` there, or one without a ``grid`` list of pairs.
    """
    path = Path(model_dir) / GRID_FILE
    if not path.is_file():
        raise EffbertError(f"{path}: missing (is {model_dir} a DynaBERT model?)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return [(float(w), float(d)) for w, d in record["grid"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise EffbertError(f"{path}: not a DynaBERT grid record ({err})") from None


def compact_subnetwork(model: Any, width: float, depth: float) -> Any:
    """The sub-network at ``(width, depth)`` as a standalone `modeling.DynaBertForSequenceClassification` (a copy;
    ``model`` is unchanged)."""
    from effbert.methods.dynabert.modeling import DynaBertConfig, DynaBertForSequenceClassification
    from effbert.methods.dynabert.subnetworks import extract, width_sizes

    full: Any = model.config
    heads, neurons = width_sizes(full.num_attention_heads, full.intermediate_size, width)
    compact: Any = extract(model, width, depth)
    skip = {"model_type", "architectures", "transformers_version", GRID_CONFIG_KEY}
    settings = {k: v for k, v in compact.config.to_dict().items() if k not in skip}
    settings.update(intermediate_size=neurons, kept_heads=heads, dynabert_width=width, dynabert_depth=depth)
    config = DynaBertConfig(**settings)
    standalone = DynaBertForSequenceClassification(config)
    standalone.load_state_dict(compact.state_dict())
    return standalone.to(next(model.parameters()).device).train(model.training)


def subnetwork_params(compact: Any) -> dict[str, int]:
    """Parameters of a compact sub-network without the pooler (the paper's convention), with and without the
    embeddings (word, position and segment tables and their LayerNorm)."""
    from effbert.measure.size import model_params

    total = model_params(compact)
    embeddings = sum(p.numel() for p in compact.base_model.embeddings.parameters())
    return {"params": total, "params_without_embeddings": total - embeddings}


def evaluate_grid(
    model: Any,
    tokenizer: Any,
    spec: TaskSpec,
    splits: Sequence[EvalSplit],
    hp: EvaluateParams,
    device: str,
    *,
    bf16: bool = False,
    grid: Sequence[tuple[float, float]] | None = None,
) -> list[dict[str, Any]]:
    """Dev metrics of every sub-network of a DynaBERT model.

    Args:
        model: the full DynaBERT task model (as saved by the ``dynabert`` stage).
        tokenizer: its tokenizer.
        spec: the task (classification or regression).
        splits: the task's dev splits (`effbert.data.prepared.eval_splits`).
        hp: the ``evaluate`` params section.
        device: where the forward passes run.
        bf16: run them under bf16 autocast.
        grid: the (width, depth) points; None = the model's own (``config.dynabert_grid``, written by training).

    Returns:
        One record per point, in grid order: ``width``, ``depth``, ``metrics``, ``score`` (the task's selection
        score of those metrics), ``params`` and ``params_without_embeddings`` (the extracted sub-network, no pooler).

    Raises:
        EffbertError: no grid given and none in the model's config.
    """
    from effbert.eval.evaluation import evaluate_dev
    from effbert.methods.dynabert.subnetworks import subnetwork

    points = list(grid) if grid is not None else getattr(model.config, GRID_CONFIG_KEY, None)
    if not points:
        raise EffbertError(f"the model's config has no {GRID_CONFIG_KEY} and no grid was given")
    model = model.to(device).eval()  # every layer moves now: a sub-network's forward reaches only its own
    records = []
    for width, depth in points:
        with subnetwork(model, float(width), float(depth)):
            evaluation = evaluate_dev(model, tokenizer, spec, splits, hp, device, bf16=bf16)
        counts = subnetwork_params(compact_subnetwork(model, float(width), float(depth)))
        score = float(selection_score(spec.name, evaluation.metrics))
        records.append(
            {"width": float(width), "depth": float(depth), "metrics": evaluation.metrics, "score": score, **counts}
        )
        log.info("w %g d %g: score %.4f, %.2fM params", width, depth, score, counts["params"] / 1e6)
    return records


def export_subnetwork(model_dir: Path | str, width: float, depth: float, out_dir: Path | str) -> Path:
    """Write the sub-network at ``(width, depth)`` of the DynaBERT model in ``model_dir`` into ``out_dir`` as its own
    model directory (`compact_subnetwork`, ``save_pretrained``) with the model's tokenizer.

    Raises:
        EffbertError: ``model_dir`` cannot be loaded, or the point is outside (0, 1] or keeps nothing.
    """
    from transformers import AutoModelForSequenceClassification

    from effbert.models.teacher import load_tokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
        compact = compact_subnetwork(model.eval(), width, depth)
    except (OSError, ValueError) as err:
        raise EffbertError(
            f"{model_dir}: cannot export the sub-network at width {width}, depth {depth}: {err}"
        ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    compact.save_pretrained(str(out))
    load_tokenizer(str(model_dir)).save_pretrained(str(out))
    return out
