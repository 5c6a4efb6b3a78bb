"""What a profile costs before it runs: optimisation steps and sequences per training stage, from the params and the
data sizes (what ``effbert estimate`` prints with measured step times; no file or tracking I/O here).

Data sizes come from the prepared data when it is there (``results/prepare_data/<task>/meta.json``,
``results/prepare_corpus/meta.json``) and otherwise from the official sizes below, so the paper profile can be
priced on a machine that holds none of its data.

The corpus arithmetic (reference section 1.1): the official builder makes ONE 125-token instance per document per
data epoch (a Wikipedia article, or 20 BookCorpus lines), while effbert packs every sentence of a document into
rows (``prepare_corpus``), several per article. Ten official epochs over Wikipedia + BookCorpus are therefore
``10 x OFFICIAL_INSTANCES`` sequences; effbert covers the same number of optimisation steps in
``10 x OFFICIAL_INSTANCES / packed_sequences`` epochs (:func:`paper_equivalent_epochs`), which is what the paper
profile sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from effbert.data.tasks import get_task
from effbert.params import Params, method_tasks

__all__ = [
    "OFFICIAL_INSTANCES",
    "OFFICIAL_TRAIN_ROWS",
    "PAPER_WORDPIECES",
    "DataSizes",
    "StageCost",
    "corpus_sequences_estimate",
    "data_sizes",
    "paper_equivalent_epochs",
    "plan",
    "steps",
]

OFFICIAL_TRAIN_ROWS = {
    "cola": 8_551,
    "sst2": 67_349,
    "mrpc": 3_668,
    "stsb": 5_749,
    "qqp": 363_846,
    "mnli": 392_702,
    "qnli": 104_743,
    "rte": 2_490,
    "wnli": 635,
    "squad_v1": 87_599,
    "squad_v2": 130_319,
}
"""Training examples of each task's official train split (GLUE, SQuAD v1.1 and v2.0)."""

SQUAD_WINDOWS_PER_EXAMPLE = 2.5
"""Training windows per SQuAD example at 128 tokens when no prepared data says better (an estimate: contexts of
about 150 WordPiece tokens, about 110 of context room per window, a window every 32 tokens)."""

OFFICIAL_INSTANCES = 6_000_000 + 74_000_000 // 20
"""Instances per data epoch of the official Wikipedia + BookCorpus builder: one per document, about 6.0 M English
Wikipedia articles plus 74 M BookCorpus sentences joined 20 lines to a document (reference section 1.1)."""

PAPER_WORDPIECES = int(1.3 * 3_300_000_000)
"""WordPiece tokens of Wikipedia (2,500 M words) + BookCorpus (800 M words), at about 1.3 pieces per word."""


BYTES_PER_WORDPIECE = 4.8
"""UTF-8 bytes of raw English text per WordPiece token (measured on the bundled WikiText sample: 1.15 MB, 240k)."""


def corpus_sequences_estimate(mean_length: float, max_seq_length: int, corpus_bytes: int | None = None) -> int:
    """Packed rows of a corpus not prepared yet: its WordPiece tokens (from its raw size in bytes, or the paper
    corpus's :data:`PAPER_WORDPIECES` when None) over the tokens a row holds (``mean_length`` with its special
    tokens, when measured; ``max_seq_length - 20`` otherwise)."""
    tokens = PAPER_WORDPIECES if corpus_bytes is None else corpus_bytes / BYTES_PER_WORDPIECE
    per_row = (mean_length if mean_length > 3 else max_seq_length - 20) - 3
    return math.ceil(tokens / per_row)


def paper_equivalent_epochs(paper_epochs: float, packed_sequences: int) -> float:
    """Epochs over the packed corpus with the optimisation steps of ``paper_epochs`` official epochs (same batch)."""
    return paper_epochs * OFFICIAL_INSTANCES / packed_sequences


@dataclass(frozen=True)
class DataSizes:
    """Training rows per task (features: SQuAD windows) after the held-out cut, and the packed corpus's rows, with
    where each number came from (``prepared`` or ``estimate``)."""

    train_rows: dict[str, int]
    corpus_sequences: int
    source: dict[str, str]


def _heldout(rows: int, params: Params) -> int:
    return max(1, min(params.data.max_heldout_examples, round(params.data.heldout_fraction * rows)))


def data_sizes(
    params: Params, prepared: Mapping[str, int], corpus_sequences: int | None, corpus_bytes: int | None = None
) -> DataSizes:
    """The sizes :func:`plan` prices: ``prepared`` training rows per task where the data is prepared, official
    sizes (capped by ``data.max_train_examples``, the held-out slice cut) elsewhere; the prepared corpus's rows or
    :func:`corpus_sequences_estimate` (from the raw corpus's ``corpus_bytes`` when it is on this machine, else the
    paper corpus)."""
    rows: dict[str, int] = {}
    source: dict[str, str] = {}
    for task in params.tasks:
        if task in prepared:
            rows[task], source[task] = prepared[task], "prepared"
            continue
        examples = OFFICIAL_TRAIN_ROWS[task]
        limit = params.data.train_limit(task)
        examples = min(examples, limit) if limit else examples
        kept = examples - _heldout(examples, params)
        factor = SQUAD_WINDOWS_PER_EXAMPLE if get_task(task).is_squad else 1.0
        rows[task], source[task] = math.ceil(kept * factor), "estimate"
    if corpus_sequences is None:
        corpus = corpus_sequences_estimate(0.0, params.data.max_seq_length, corpus_bytes)
        source["corpus"] = "estimate" + (" (paper corpus)" if corpus_bytes is None else " (raw size)")
    else:
        corpus, source["corpus"] = corpus_sequences, "prepared"
    return DataSizes(rows, corpus, source)


def steps(rows: int, global_batch: int, epochs: float) -> int:
    """The Trainer's optimisation steps: batches per epoch (the last one partial) times epochs, rounded up."""
    return max(1, math.ceil(epochs * math.ceil(rows / global_batch)))


@dataclass(frozen=True)
class StageCost:
    """One training stage's price.

    Attributes:
        stage: the DVC stage (``warmup_kd``, ``finetune_teacher@mnli``).
        step: which measured step time prices it (``teacher``: a teacher fine-tuning step; ``kd``: a KD step of the
            student frame from the teacher; ``teacher_kd``: a teacher-sized student distilled from the teacher).
        steps: optimisation steps.
        batch: sequences per process per step.
        processes: processes (GPUs) training together.
        repeats: sub-networks or candidates per step priced (DynaBERT's grid, a search stage's candidates).
    """

    stage: str
    step: str
    steps: int
    batch: int
    processes: int
    repeats: int = 1

    @property
    def sequences(self) -> int:
        """Sequences the stage trains on (every process, every repeat)."""
        return self.steps * self.batch * self.processes * self.repeats


def _per_task(params: Params, tasks: list[str], sizes: DataSizes) -> list[tuple[str, int]]:
    return [(t, sizes.train_rows[t]) for t in tasks]


def plan(params: Params, sizes: DataSizes) -> list[StageCost]:
    """Every training stage of ``params`` with its steps (data prep, evaluation and export are not priced: they
    are a small share of any profile)."""
    gpus = params.launch.train_gpus
    corpus = sizes.corpus_sequences
    out: list[StageCost] = []

    def add(
        stage: str, step: str, rows: int, batch: int, epochs: float, processes: int = gpus, repeats: int = 1
    ) -> None:
        out.append(StageCost(stage, step, steps(rows, batch * processes, epochs), batch, processes, repeats))

    teacher = params.finetune_teacher
    for task, rows in _per_task(params, params.tasks, sizes):
        hp = teacher.for_task(task)
        add(f"finetune_teacher@{task}", "teacher", rows, hp.batch_size, hp.epochs)
    add("warmup_kd", "kd", corpus, params.warmup_kd.batch_size, params.warmup_kd.epochs)
    proxy, search = params.search.proxy, params.search
    proxy_rows = sizes.train_rows.get(params.proxy_task, OFFICIAL_TRAIN_ROWS[params.proxy_task])
    for number, budget in ((1, search.stage1), (2, search.stage2)):
        general_steps = steps(math.ceil(corpus * proxy.corpus_fraction), proxy.batch_size, proxy.general_epochs)
        task_steps = steps(math.ceil(proxy_rows * proxy.task_fraction), proxy.batch_size, proxy.task_epochs)
        candidates = budget.candidates
        out.append(
            StageCost(f"search_stage{number}", "kd", general_steps + task_steps, proxy.batch_size, 1, candidates)
        )
    stage3 = search.stage3
    add(
        "search_stage3",
        "kd",
        math.ceil(corpus * stage3.general.data_fraction),
        stage3.general.batch_size,
        stage3.general.epochs,
    )
    from effbert.methods.efficientbert.search.weight_sharing import MULTITASK_EXCLUDED

    sentence = [t for t in params.tasks if get_task(t).kind != "span" and t not in MULTITASK_EXCLUDED]
    multitask_rows = sum(math.ceil(sizes.train_rows[t] * stage3.multitask.data_fraction) for t in sentence)
    add("search_stage3 (multi-task)", "kd", multitask_rows, stage3.multitask.batch_size, stage3.multitask.epochs)
    final = params.final_distill
    add("final_distill_general", "kd", corpus, final.general.batch_size, final.general.epochs)
    for task, rows in _per_task(params, params.tasks, sizes):
        task_kd = final.task.for_task(task)
        add(f"final_distill@{task}", "kd", rows, task_kd.batch_size, task_kd.epochs)
    _variants(params, sizes, add)
    _methods(params, sizes, add)
    return out


def _variants(params: Params, sizes: DataSizes, add: Callable[..., None]) -> None:
    """EfficientBERT's variants: TINY and ++ repeat the final distillation (general and task KD) at their frames,
    EfficientBERT+ only the task KD (on GLUE); each step priced as the main student's (``kd``: TINY's is cheaper,
    ++'s twelve narrow layers about the same)."""
    from effbert.params import VARIANT_MODELS, variant_tasks

    final = params.final_distill
    for variant in params.variants:
        if variant != "plus":
            add(
                f"variant_general@{variant}",
                "kd",
                sizes.corpus_sequences,
                final.general.batch_size,
                final.general.epochs,
            )
        for task in variant_tasks(variant, params.tasks):
            task_kd = final.task.for_task(task)
            add(
                f"variant_distill@{VARIANT_MODELS[variant]}-{task}",
                "kd",
                sizes.train_rows[task],
                task_kd.batch_size,
                task_kd.epochs,
            )


def _methods(params: Params, sizes: DataSizes, add: Callable[..., None]) -> None:
    """The compared methods' training stages (TinyBERT's augmented rows: ``variants + 1`` per example)."""
    methods = set(params.methods)
    if "tinybert" in methods:
        tiny = params.tinybert
        add("tinybert_general@corpus", "kd", sizes.corpus_sequences, tiny.general.batch_size, tiny.general.epochs)
        for task in method_tasks("tinybert", params.tasks):
            rows = sizes.train_rows[task] * ((tiny.augment.variants + 1) if task in tiny.augment.tasks else 1)
            for name, hp in (("intermediate", tiny.intermediate), ("prediction", tiny.prediction)):
                phase = hp.for_task(task)
                add(f"tinybert@{task} ({name})", "kd", rows, phase.batch_size, phase.epochs)
    if "theseus" in methods:
        for task in method_tasks("theseus", params.tasks):
            for name, hp in (("compress", params.theseus.compress), ("finetune", params.theseus.finetune)):
                phase = hp.for_task(task)
                add(f"theseus@{task} ({name})", "teacher", sizes.train_rows[task], phase.batch_size, phase.epochs)
    if "dynabert" in methods:
        dyna = params.dynabert
        for task in method_tasks("dynabert", params.tasks):
            for name, hp, grid in (
                ("width", dyna.width, len(dyna.widths)),
                ("depth", dyna.depth, len(dyna.widths) * len(dyna.depths)),
            ):
                phase = hp.for_task(task)
                rows = sizes.train_rows[task]
                add(f"dynabert@{task} ({name})", "teacher_kd", rows, phase.batch_size, phase.epochs, repeats=grid)
    if "fastbert" in methods:
        for task in method_tasks("fastbert", params.tasks):
            phase = params.fastbert.distill.for_task(task)
            add(f"fastbert@{task}", "forward", sizes.train_rows[task], phase.batch_size, phase.epochs)
