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

import dataclasses
import logging
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effbert.compute import device, seed_everything, set_threads
from effbert.data.prepared import head_rows
from effbert.params import Params, ProxyParams

log = logging.getLogger(__name__)

_CACHE: dict[tuple[str, ...], Any] = {}
"""Per-process cache of what every candidate reads (teachers, supernet, data slices): loaded once per worker."""


@dataclass(frozen=True)
class ProxyJob:
    """Everything one proxy evaluation needs, as plain picklable values.

    Attributes:
        index: the candidate's position in the search (0-based).
        architecture: the candidate as an architecture string (``search.space.architecture_string``).
        fingerprint: its functional fingerprint.
        supernet_dir: the inherited checkpoint (the warm-up supernet, with ``fit_dense.safetensors``).
        corpus_dir: ``prepare_corpus`` output.
        data_dir: ``prepare_data`` output of the proxy task.
        task_teacher_dir: the proxy task's fine-tuned teacher.
        teacher_source: the pre-trained teacher (resolved local directory or hub name).
        task: the proxy task id.
        proxy: the ``search.proxy`` section.
        seed: the global seed (every candidate sees the same data order: common random numbers).
        inherit_weights: start from the supernet's slices (False: random init).
        scratch_dir: where the Trainer may write; removed afterwards.
        threads: torch CPU threads for this evaluation (None: leave as is).
        bf16: train and score under bf16 autocast (fp32 weights).
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
    proxy: ProxyParams = field(default_factory=ProxyParams)
    seed: int = 42
    inherit_weights: bool = True
    scratch_dir: str = ".effbert/scratch"
    threads: int | None = None
    bf16: bool = False

    @classmethod
    def for_stage(
        cls,
        params: Params,
        teacher_source: str,
        supernet_dir: Path,
        corpus_dir: Path,
        data_root: Path,
        teacher_root: Path,
        scratch_dir: Path,
        *,
        bf16: bool,
        threads: int | None = None,
    ) -> ProxyJob:
        """The job of a stage's candidates, the candidate still blank (see :meth:`candidate`): the proxy task's
        prepared data and fine-tuned teacher under ``data_root`` and ``teacher_root``, the ``search`` params."""
        task = params.proxy_task
        return cls(
            index=0,
            architecture="",
            fingerprint="",
            supernet_dir=str(supernet_dir.resolve()),
            corpus_dir=str(corpus_dir.resolve()),
            data_dir=str((data_root / task).resolve()),
            task_teacher_dir=str((teacher_root / task).resolve()),
            teacher_source=teacher_source,
            task=task,
            proxy=params.search.proxy,
            seed=params.seed,
            inherit_weights=params.search.inherit_weights,
            scratch_dir=str(scratch_dir),
            threads=threads,
            bf16=bf16,
        )

    def candidate(self, index: int, architecture: str, fingerprint: str) -> ProxyJob:
        """This job for one candidate."""
        return dataclasses.replace(self, index=index, architecture=architecture, fingerprint=fingerprint)


def _cached(key: tuple[str, ...], load: Any) -> Any:
    if key not in _CACHE:
        _CACHE[key] = load()
    return _CACHE[key]


def _supernet(path: str) -> Any:
    from effbert.methods.efficientbert.modeling_effbert import EffBertModel

    return _cached(("supernet", path), lambda: EffBertModel.from_pretrained(path).eval())


def _dataset(path: Path, rows: int | None = None) -> Any:
    from effbert.data.prepared import load_split

    return _cached(("dataset", str(path), str(rows)), lambda: load_split(path.parent, path.name, rows))


def candidate_body(architecture: Any, supernet_dir: str, inherit: bool, seed: int) -> tuple[Any, Any]:
    """The candidate's compact encoder and the KD objective's hidden-state projection state (or None when fresh).

    With inheritance: sliced from the supernet (``materialize``) and the supernet's trained ``fit_dense``.
    Without: a randomly initialised compact model of the same frame (seeded) and no projection state.
    """
    import torch

    from effbert.distill.projection import FIT_DENSE_FILE
    from effbert.methods.efficientbert.modeling_effbert import EffBertModel
    from effbert.methods.efficientbert.supernet import compact_config, materialize

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

    from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
    from effbert.methods.efficientbert.modeling_effbert import (
        EffBertForQuestionAnswering,
        EffBertForSequenceClassification,
    )

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


def _short_kd(module: Any, tokenizer: Any, rows: Any, spec: Any, phase: Any, job: ProxyJob) -> float:
    """Train ``module`` briefly (no checkpoints, no evaluation); returns its final training loss."""
    from effbert.distill.trainer import fit
    from effbert.training import training_arguments

    scratch = Path(job.scratch_dir) / f"candidate-{job.index}"
    args = training_arguments(
        phase,
        output_dir=scratch,
        seed=job.seed,
        save_steps=10**9,  # a candidate is the unit of resume: no intermediate checkpoints
        save_total_limit=1,
        select_on_heldout=False,
        bf16=job.bf16,
        label_names=None if spec is None else ["labels"],
    )
    try:
        outcome = fit(module, tokenizer, rows, args, spec=spec, resume=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome.final_loss


def _kd_loss(student_hidden: int, teacher_config: Any, task: Any, proxy: ProxyParams) -> Any:
    """The proxy's KD objective: attention and hidden weights 1, the prediction weight of ``search.proxy``."""
    from effbert.distill import DistillationLoss

    return DistillationLoss(
        student_hidden,
        teacher_config.hidden_size,
        task=task,
        attention_weight=1.0,
        hidden_weight=1.0,
        prediction_weight=proxy.prediction_weight,
        temperature=1.0,
    )


def evaluate_candidate(job: ProxyJob) -> dict[str, Any]:
    """Train and score one candidate (see the module docstring); never raises for a bad candidate.

    Returns:
        ``fitness``, ``status`` (ok / invalid / diverged / error), ``error``, ``general_loss``, ``task_loss``,
        ``wall_seconds`` and ``worker`` (host:pid).
    """
    from effbert.methods.efficientbert.search.space import parse_architecture_string

    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    record: dict[str, Any] = {"fitness": 0.0, "status": "ok", "error": "", "general_loss": math.nan}
    record["task_loss"] = math.nan
    set_threads(job.threads)
    seed_everything(job.seed)
    try:
        supernet = _supernet(job.supernet_dir)
        architecture = parse_architecture_string(job.architecture, supernet.config.hidden_size)
        body, projection = candidate_body(architecture, job.supernet_dir, job.inherit_weights, job.seed)
    except (ValueError, RuntimeError) as err:
        record.update(status="invalid", error=str(err).splitlines()[0][:500])
        record.update(wall_seconds=time.perf_counter() - started, worker=worker)
        return record
    try:
        record.update(_train_and_score(job, body, projection))
    except (RuntimeError, ValueError, FloatingPointError) as err:
        record.update(status="error", error=f"{type(err).__name__}: {str(err).splitlines()[0][:500]}", fitness=0.0)
    record.update(wall_seconds=time.perf_counter() - started, worker=worker)
    return record


def _train_and_score(job: ProxyJob, body: Any, projection: Any) -> dict[str, Any]:
    """Steps 2-4 of the module docstring: short general KD, short task KD with a fresh head, held-out fitness."""
    from transformers import AutoModel

    from effbert.data.tasks import get_task
    from effbert.distill.trainer import DistillationModule
    from effbert.eval.scoring import heldout_score
    from effbert.models.auto import load_task_model
    from effbert.models.teacher import load_tokenizer

    proxy = job.proxy
    spec = get_task(job.task)
    tokenizer = _cached(("tokenizer", job.task_teacher_dir), lambda: load_tokenizer(job.task_teacher_dir))
    teacher = _cached(("teacher", job.teacher_source), lambda: AutoModel.from_pretrained(job.teacher_source))
    task_teacher = _cached(("task_teacher", job.task_teacher_dir), lambda: load_task_model(job.task_teacher_dir, spec))
    corpus_path = Path(job.corpus_dir) / "corpus"
    corpus = _dataset(corpus_path, head_rows(len(_dataset(corpus_path)), proxy.corpus_fraction))
    train_path = Path(job.data_dir) / "train"
    train = _dataset(train_path, head_rows(len(_dataset(train_path)), proxy.task_fraction))
    heldout = _dataset(Path(job.data_dir) / "heldout", proxy.heldout_examples)

    loss = _kd_loss(body.config.hidden_size, teacher.config, "agnostic", proxy)
    if projection is not None:
        loss.hidden_loss.load_state_dict(projection)
    general = DistillationModule(body, teacher, loss)
    result: dict[str, Any] = {"general_loss": _short_kd(general, tokenizer, corpus, None, proxy.phase("general"), job)}
    student = with_fresh_head(body, spec, job.seed)
    task_loss = _kd_loss(body.config.hidden_size, task_teacher.config, spec.kind, proxy)
    task_loss.hidden_loss.load_state_dict(loss.hidden_loss.state_dict())  # fit_dense continues, as in the paper
    module = DistillationModule(student, task_teacher, task_loss)
    result["task_loss"] = _short_kd(module, tokenizer, train, spec, proxy.phase("task"), job)
    if not (math.isfinite(result["general_loss"]) and math.isfinite(result["task_loss"])):
        result.update(status="diverged", error="non-finite training loss")
    else:
        result["fitness"] = heldout_score(
            student, heldout, tokenizer, spec, proxy.eval_batch_size, device(), bf16=job.bf16
        )
    return result
