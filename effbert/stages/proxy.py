"""One candidate's proxy evaluation in search stages 1 and 2, written as a pure function of a picklable job.

:func:`evaluate_candidate` takes a :class:`ProxyJob` (the candidate, the inherited checkpoint and every parameter it
needs, as plain values) and returns a result record; it reads its inputs from the paths in the job and writes
nothing but scratch files it removes. That is the unit a process pool (``search.workers``) or a cluster executor
dispatches: any machine that sees the same paths computes the same record.

The evaluation follows section 3.2 of the reference:

1. the candidate is sliced out of the warm-up supernet (``search.inherit_weights``; otherwise a randomly
   initialised compact model with a fresh ``fit_dense``);
2. short task-agnostic KD from the pre-trained teacher on the first ``proxy.corpus_fraction`` of the corpus;
3. short task KD from the proxy task's fine-tuned teacher on the first ``proxy.task_fraction`` of its train split,
   with a FRESH pooler and classifier initialised from the job's seed (the official code carries them over from the
   previous candidate);
4. fitness = the task's selection score on (the first ``proxy.heldout_examples`` rows of) the held-out slice of
   train. A candidate that cannot be built gets status ``invalid``, a non-finite loss ``diverged``, any other
   failure ``error``; all of them fitness 0 and a message, and they stay in the hall of fame.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_CACHE: dict[tuple[str, ...], Any] = {}
"""Per-process cache of what every candidate reads (teachers, supernet, data slices): loaded once per worker."""


@dataclass(frozen=True)
class ProxyJob:
    """Everything one proxy evaluation needs, as plain picklable values.

    Attributes:
        index: the candidate's position in the search (0-based).
        architecture: the candidate as an architecture string (``effbert.search.architecture_string``).
        fingerprint: its functional fingerprint.
        supernet_dir: the inherited checkpoint (the warm-up supernet, with ``fit_dense.safetensors``).
        corpus_dir: ``prepare_corpus`` output.
        data_dir: ``prepare_data`` output of the proxy task.
        task_teacher_dir: the proxy task's fine-tuned teacher.
        teacher_source: the pre-trained teacher (resolved local directory or hub name).
        task: the proxy task id.
        proxy: the ``search.proxy`` section as a mapping.
        seed: the global seed (every candidate sees the same data order: common random numbers).
        inherit_weights: start from the supernet's slices (False: random init).
        scratch_dir: where the Trainer may write; removed afterwards.
        threads: torch CPU threads for this evaluation (None: leave as is).
    """

    index: int
    architecture: str
    fingerprint: str
    supernet_dir: str
    corpus_dir: str
    data_dir: str
    task_teacher_dir: str
    teacher_source: str
    task: str
    proxy: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    inherit_weights: bool = True
    scratch_dir: str = ".effbert/scratch"
    threads: int | None = None


def _cached(key: tuple[str, ...], load: Any) -> Any:
    if key not in _CACHE:
        _CACHE[key] = load()
    return _CACHE[key]


def _head_prefix(n: int, fraction: float) -> int:
    return max(1, math.floor(n * fraction))


def _supernet(path: str) -> Any:
    from effbert.models.modeling_effbert import EffBertModel

    return _cached(("supernet", path), lambda: EffBertModel.from_pretrained(path).eval())


def _dataset(path: Path, rows: int | None = None) -> Any:
    import datasets

    def load() -> Any:
        data: Any = datasets.load_from_disk(str(path))
        return data if rows is None or rows >= len(data) else data.select(range(rows))

    return _cached(("dataset", str(path), str(rows)), load)


def candidate_body(architecture: Any, supernet_dir: str, inherit: bool, seed: int) -> tuple[Any, Any]:
    """The candidate's compact encoder and the KD objective's hidden-state projection state (or None when fresh).

    With inheritance: sliced from the supernet (``materialize``) and the supernet's trained ``fit_dense``.
    Without: a randomly initialised compact model of the same frame (seeded) and no projection state.
    """
    import torch

    from effbert.models.modeling_effbert import EffBertModel
    from effbert.models.supernet import compact_config, materialize
    from effbert.stages.distillation import FIT_DENSE_FILE

    supernet = _supernet(supernet_dir)
    if inherit:
        body = materialize(supernet, architecture)
        from safetensors.torch import load_file

        projection = load_file(str(Path(supernet_dir) / FIT_DENSE_FILE))
        return body, projection
    torch.manual_seed(seed)
    return EffBertModel(compact_config(supernet.config, architecture)), None


def with_fresh_head(body: Any, spec: Any, seed: int) -> Any:
    """A task model around ``body`` whose pooler and classifier are freshly initialised from ``seed``."""
    import torch

    from effbert.models.configuration_effbert import EffBertConfig
    from effbert.models.modeling_effbert import EffBertForQuestionAnswering, EffBertForSequenceClassification

    values = body.config.to_dict()
    values.pop("id2label", None)
    values.pop("label2id", None)
    values.update(num_labels=1 if spec.kind == "regression" else spec.num_labels)
    if spec.kind == "regression":
        values["problem_type"] = "regression"
    elif spec.kind == "classification":
        values["problem_type"] = "single_label_classification"
    config = EffBertConfig.from_dict(values)
    torch.manual_seed(seed)
    cls = EffBertForQuestionAnswering if spec.kind == "span" else EffBertForSequenceClassification
    model: Any = cls(config)
    # the head's weights come from their own seeded generator: the same for every candidate, whatever its size
    generator = torch.Generator().manual_seed(seed)
    fresh = [model.qa_outputs] if spec.kind == "span" else [model.effbert.pooler.dense, model.classifier]
    with torch.no_grad():
        for linear in fresh:
            linear.weight.normal_(0.0, config.initializer_range, generator=generator)
            linear.bias.zero_()
    if model.effbert.pooler is not None:
        body.pooler = model.effbert.pooler  # fresh pooler: never inherited, never leaked between candidates
    model.effbert = body
    return model


def heldout_score(model: Any, dataset: Any, tokenizer: Any, spec: Any, batch_size: int) -> float:
    """The task's selection score of ``model`` on a (classification or regression) held-out dataset."""
    from effbert.data.tasks import selection_score
    from effbert.eval.metrics import glue_metrics
    from effbert.inference import predict_logits
    from effbert.stages.common import device
    from effbert.training import logits_to_predictions

    logits = predict_logits(model, dataset, tokenizer, batch_size, device())[0]
    metrics = glue_metrics(spec.name, logits_to_predictions(spec, logits), dataset["label"])
    return float(selection_score(spec.name, metrics))


def _short_kd(module: Any, tokenizer: Any, train: Any, spec: Any, *, lr: float, epochs: float, job: ProxyJob) -> float:
    """Train ``module`` briefly (no checkpoints, no evaluation); returns the last logged training loss."""
    from effbert.distill.trainer import DistillationTrainerMixin
    from effbert.training import build_trainer, training_arguments

    proxy = job.proxy
    scratch = Path(job.scratch_dir) / f"candidate-{job.index}"
    args = training_arguments(
        output_dir=scratch,
        seed=job.seed,
        learning_rate=lr,
        epochs=epochs,
        batch_size=proxy["batch_size"],
        warmup_ratio=proxy["warmup_ratio"],
        weight_decay=proxy["weight_decay"],
        max_grad_norm=proxy["max_grad_norm"],
        save_steps=10**9,  # a candidate is the unit of resume: no intermediate checkpoints
        save_total_limit=1,
        bf16=False,
        select_on_heldout=False,
        label_names=None if spec is None else ["labels"],
    )
    trainer = build_trainer(spec, module, tokenizer, args, train, mixin=DistillationTrainerMixin)
    try:
        trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return float(losses[-1]) if losses else float(trainer.state.log_history[-1].get("train_loss", math.nan))


def evaluate_candidate(job: ProxyJob) -> dict[str, Any]:
    """Train and score one candidate (see the module docstring); never raises for a bad candidate.

    Returns:
        ``fitness``, ``status`` (ok / invalid / diverged / error), ``error``, ``general_loss``, ``task_loss``,
        ``wall_seconds`` and ``worker`` (host:pid).
    """
    from effbert.data.tasks import get_task
    from effbert.distill.trainer import DistillationModule
    from effbert.models.teacher import load_task_model, load_tokenizer
    from effbert.search.space import parse_architecture_string
    from effbert.stages import distillation
    from effbert.stages.common import seed_everything, set_threads

    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    record: dict[str, Any] = {"fitness": 0.0, "status": "ok", "error": "", "general_loss": math.nan}
    record["task_loss"] = math.nan
    set_threads(job.threads)
    seed_everything(job.seed)
    proxy = job.proxy
    spec = get_task(job.task)
    try:
        supernet = _supernet(job.supernet_dir)
        architecture = parse_architecture_string(job.architecture, supernet.config.hidden_size)
        body, projection = candidate_body(architecture, job.supernet_dir, job.inherit_weights, job.seed)
    except (ValueError, RuntimeError) as err:
        record.update(status="invalid", error=str(err).splitlines()[0][:500])
        record.update(wall_seconds=time.perf_counter() - started, worker=worker)
        return record
    try:
        from transformers import AutoModel

        tokenizer = _cached(("tokenizer", job.task_teacher_dir), lambda: load_tokenizer(job.task_teacher_dir))
        teacher = _cached(("teacher", job.teacher_source), lambda: AutoModel.from_pretrained(job.teacher_source))
        task_teacher = _cached(
            ("task_teacher", job.task_teacher_dir), lambda: load_task_model(job.task_teacher_dir, spec)
        )
        corpus_path = Path(job.corpus_dir) / "corpus"
        corpus_rows = _head_prefix(len(_dataset(corpus_path)), proxy["corpus_fraction"])
        corpus = _dataset(corpus_path, corpus_rows)
        train_path = Path(job.data_dir) / "train"
        train = _dataset(train_path, _head_prefix(len(_dataset(train_path)), proxy["task_fraction"]))
        heldout = _dataset(Path(job.data_dir) / "heldout", proxy["heldout_examples"])

        loss = distillation.criterion(body.config.hidden_size, teacher.config, "agnostic", _Weights(proxy))
        if projection is not None:
            loss.hidden_loss.load_state_dict(projection)
        general = DistillationModule(body, teacher, loss)
        record["general_loss"] = _short_kd(
            general, tokenizer, corpus, None, lr=proxy["general_learning_rate"], epochs=proxy["general_epochs"], job=job
        )
        student = with_fresh_head(body, spec, job.seed)
        task_loss = distillation.criterion(body.config.hidden_size, task_teacher.config, spec.kind, _Weights(proxy))
        task_loss.hidden_loss.load_state_dict(loss.hidden_loss.state_dict())  # fit_dense continues, as in the paper
        module = DistillationModule(student, task_teacher, task_loss)
        record["task_loss"] = _short_kd(
            module, tokenizer, train, spec, lr=proxy["task_learning_rate"], epochs=proxy["task_epochs"], job=job
        )
        if not (math.isfinite(record["general_loss"]) and math.isfinite(record["task_loss"])):
            record.update(status="diverged", error="non-finite training loss")
        else:
            record["fitness"] = heldout_score(student, heldout, tokenizer, spec, proxy["eval_batch_size"])
    except (RuntimeError, ValueError, FloatingPointError) as err:
        record.update(status="error", error=f"{type(err).__name__}: {str(err).splitlines()[0][:500]}", fitness=0.0)
    record.update(wall_seconds=time.perf_counter() - started, worker=worker)
    return record


class _Weights:
    """The loss weights of the proxy KD (attention and hidden 1, prediction from ``search.proxy``)."""

    def __init__(self, proxy: dict[str, Any]) -> None:
        self.attention_weight = 1.0
        self.hidden_weight = 1.0
        self.prediction_weight = proxy["prediction_weight"]
        self.temperature = 1.0
