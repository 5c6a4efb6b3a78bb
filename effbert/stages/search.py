"""Stages ``search_stage1``, ``search_stage2`` and ``search_stage3``: the progressive coarse-to-fine MLP search.

* Stage 1 (coarse): expression and size id per layer, inside the parameter window; candidates trained briefly from
  the warm-up supernet's slices and scored on the proxy task (:mod:`effbert.stages.proxy`).
* Stage 2 (fine): expressions only, sizes frozen to the stage-1 winner; same evaluation.
* Stage 3 (sizes only): expressions fixed to the stage-2 winner; the supernet is trained with weight sharing (a random
  sub-architecture per step: general KD on the corpus, then multi-task KD over the profile's sentence tasks) and
  candidates are scored on the proxy task's held-out slice with no further training.

The loop (:func:`search_loop`) is the same for all three: the sampler (``search.strategy``) proposes a batch of
``search.workers`` candidates from the evaluated history alone; each evaluated candidate is appended to the search
state (``records.jsonl`` under ``.effbert/checkpoints``) at once, so a killed search restarted with the same command
re-proposes the same batch and evaluates only what is missing, reaching the same result as an uninterrupted run.
Each candidate becomes a nested MLflow run of the stage's run.

Outputs per stage: ``hall_of_fame.csv``, ``architecture.json`` (the winner; the next stage's, and finally
``final_distill``'s, input), ``winner.json``, ``metrics.json``, ``search.png`` and ``plots/best_so_far.csv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.models.architecture import ARCHITECTURE_FILE, Architecture
from effbert.params import Params, StageBudget
from effbert.search.samplers import Evaluated, Proposal, Sampler, make_sampler
from effbert.search.space import SearchSpace, architecture_string, parse_architecture_string
from effbert.stages.common import checkpoint_dir

log = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
LATENCY_FILE = "latency.json"

Evaluate = Callable[[list[tuple[int, Proposal]]], Iterator[tuple[int, dict[str, Any]]]]
"""Evaluates (index, proposal) pairs; yields (index, result) as each finishes (any order)."""


# ---------------------------------------------------------------------------------------------------------------
# search state


def load_records(path: Path) -> dict[int, dict[str, Any]]:
    """The evaluated candidates of a search state file, by index (a torn last line from a kill is ignored)."""
    records: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the process was killed while writing this line: that candidate is evaluated again
        records[int(record["index"])] = record
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record and flush it to disk before the next candidate starts."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def evaluated(records: dict[int, dict[str, Any]], hidden: int, below: int) -> list[Evaluated]:
    """The history the sampler sees before candidate ``below``: records 0..below-1 in index order."""
    return [
        Evaluated(
            parse_architecture_string(records[i]["architecture"], hidden),
            records[i]["fingerprint"],
            records[i]["fitness"],
        )
        for i in range(below)
    ]


@dataclass(frozen=True)
class LoopSettings:
    """How one search stage runs: its name (for seeds), the budget, the batch width and the seed."""

    stage: str
    budget: StageBudget
    workers: int
    seed: int


def search_loop(
    space: SearchSpace,
    sampler: Sampler,
    settings: LoopSettings,
    state_file: Path,
    evaluate: Evaluate,
    describe: Callable[[Architecture], dict[str, Any]],
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Propose, evaluate and record candidates until the budget is spent; resumes from ``state_file``.

    Batch ``b`` holds candidates ``b*w .. b*w+w-1`` (``w`` = workers); its proposals are a function of the records
    before it and of ``(seed, stage, b)`` only, so after a kill the same batch is proposed again and only its missing
    candidates are evaluated.

    Args:
        space: the stage's search space.
        sampler: the proposal strategy.
        settings: stage name, budget, workers, seed.
        state_file: the append-only record file (created when missing).
        evaluate: runs candidates (in this process or a pool).
        describe: extra columns of a proposal computed before evaluation (params, latency).
        on_record: called with each finished record before it is appended (e.g. logs an MLflow child run and sets
            ``run_id``).

    Returns:
        every record, in index order.
    """
    from tqdm.auto import tqdm

    records = load_records(state_file)
    budget = settings.budget
    previous = max((r.get("elapsed_seconds", 0.0) for r in records.values()), default=0.0)
    started = time.perf_counter()
    if records:
        log.info("%s: resuming with %d evaluated candidates from %s", settings.stage, len(records), state_file)
    progress = tqdm(total=budget.candidates, initial=min(len(records), budget.candidates), desc=settings.stage)
    width = settings.workers
    while True:
        missing = next((i for i in range(budget.candidates) if i not in records), None)
        if missing is None:
            break
        elapsed = previous + time.perf_counter() - started
        if budget.max_minutes is not None and elapsed >= budget.max_minutes * 60:
            log.info("%s: time budget of %.1f min spent (%d candidates)", settings.stage, budget.max_minutes, missing)
            break
        batch = missing // width
        first = batch * width
        history = evaluated(records, space.hidden, first)
        count = min(width, budget.candidates - first)
        rng = random.Random(f"{settings.seed}/{settings.stage}/batch{batch}")
        proposals = sampler.propose(history, count, rng, {h.fingerprint for h in history})
        todo = [(first + k, p) for k, p in enumerate(proposals) if first + k not in records]
        if not proposals:
            log.warning("%s: the sampler found no new candidate; the space looks exhausted", settings.stage)
            break
        extra = {index: describe(p.arch) for index, p in todo}
        for index, result in evaluate(todo):
            proposal = proposals[index - first]
            record = {
                "index": index,
                "architecture": architecture_string(proposal.arch),
                "fingerprint": proposal.fingerprint,
                "origin": proposal.origin,
                **extra[index],
                **result,
                "run_id": "",
                "elapsed_seconds": previous + time.perf_counter() - started,
            }
            if on_record is not None:
                on_record(record)
            append_record(state_file, record)
            records[index] = record
            progress.update(1)
            log.info(
                "%s candidate %d (%s): fitness %.4f [%s] %.1f s",
                settings.stage,
                index,
                proposal.origin,
                record["fitness"],
                record["status"],
                record.get("wall_seconds", math.nan),
            )
        if len(proposals) < count:
            log.warning("%s: the sampler proposed %d of %d; stopping", settings.stage, len(proposals), count)
            break
    progress.close()
    return [records[i] for i in sorted(records)]


# ---------------------------------------------------------------------------------------------------------------
# evaluation back-ends


def in_process(evaluate_one: Callable[[int, Proposal], dict[str, Any]]) -> Evaluate:
    """Evaluate candidates one after the other in this process."""

    def run(todo: list[tuple[int, Proposal]]) -> Iterator[tuple[int, dict[str, Any]]]:
        for index, proposal in todo:
            yield index, evaluate_one(index, proposal)

    return run


def process_pool(pool: ProcessPoolExecutor, make_job: Callable[[int, Proposal], Any], function: Any) -> Evaluate:
    """Evaluate a batch in parallel worker processes (``function(job)`` must be a picklable top-level function)."""

    def run(todo: list[tuple[int, Proposal]]) -> Iterator[tuple[int, dict[str, Any]]]:
        futures: dict[Future[Any], int] = {pool.submit(function, make_job(i, p)): i for i, p in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: futures[f]):
                yield futures[future], future.result()

    return run


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------
# latency and parameter columns


class LatencyMeter:
    """Latency of a candidate (compact model sliced from the supernet) with `effbert bench`'s protocol, cached in a
    JSON file next to the search state by machine (CPU model, torch version, threads) and architecture string:
    measured once per architecture on the machine that runs the search."""

    def __init__(self, supernet: Any, latency: Any, cache_file: Path) -> None:
        from effbert.bench import machine_description, torch_threads

        self.supernet = supernet
        self.latency = latency
        self.cache_file = cache_file
        with torch_threads(latency.threads):
            self.machine = machine_description("cpu")  # recorded next to the figures (metrics.json)
        self.machine_key = f"{self.machine['cpu']}; torch {self.machine['torch']}; {latency.threads} threads"
        self.cache: dict[str, float] = (
            json.loads(cache_file.read_text(encoding="utf-8")) if cache_file.is_file() else {}
        )

    def __call__(self, arch: Architecture) -> float:
        key = f"{self.machine_key} | {architecture_string(arch)}"
        if key not in self.cache:
            from effbert.bench import measure_latency
            from effbert.models.supernet import materialize

            compact = materialize(self.supernet, arch)
            hp = self.latency
            result = measure_latency(
                compact, hp.batch_size, hp.seq_len, warmup=hp.warmup, runs=hp.runs, threads=hp.threads, device="cpu"
            )
            self.cache[key] = result.median_ms
            tmp = self.cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.cache, indent=0), encoding="utf-8")
            tmp.replace(self.cache_file)
        return self.cache[key]


# ---------------------------------------------------------------------------------------------------------------
# the stages


@dataclass(frozen=True)
class StageInputs:
    """The paths a search stage reads (all given on the command line by dvc.yaml)."""

    supernet_dir: Path
    corpus_dir: Path
    data_root: Path  # results/prepare_data
    teacher_root: Path  # results/models/teacher
    previous_dir: Path | None = None  # the previous search stage's output


class _Frame:
    """What all three stages derive from the params and the supernet: parameter counts, window, latency."""

    def __init__(self, params: Params, inputs: StageInputs, state_dir: Path) -> None:
        from transformers import AutoConfig

        from effbert.models.modeling_effbert import EffBertModel
        from effbert.search.space import frame_params, scaled_param_window

        self.params = params
        self.teacher_source = _frame_teacher(params)
        teacher_hidden = int(AutoConfig.from_pretrained(self.teacher_source).hidden_size)
        self.supernet = EffBertModel.from_pretrained(str(inputs.supernet_dir)).eval()
        config = self.supernet.config
        if config.hidden_size != params.student.hidden_size or config.num_hidden_layers != params.student.num_layers:
            raise EffbertError(
                f"{inputs.supernet_dir}: supernet H={config.hidden_size}, L={config.num_hidden_layers} differs from "
                f"the student section (H={params.student.hidden_size}, L={params.student.num_layers})"
            )
        self.hidden = config.hidden_size
        self.num_layers = config.num_hidden_layers
        self.fixed_params, max_mlp = frame_params(
            hidden=config.hidden_size,
            num_layers=config.num_hidden_layers,
            vocab_size=config.vocab_size,
            embedding_size=config.embedding_size,
            max_position_embeddings=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            fit_dense_size=teacher_hidden,
            max_units=params.student.max_ffn_units,
        )
        low, high = params.search.param_window
        self.window = scaled_param_window(self.fixed_params, max_mlp, (int(low), int(high)))
        self.latency = LatencyMeter(self.supernet, params.search.latency, state_dir / LATENCY_FILE)
        budget = params.search.max_latency_ms
        self.accept = None if budget is None else (lambda arch: self.latency(arch) <= budget)

    def describe(self, space: SearchSpace) -> Callable[[Architecture], dict[str, Any]]:
        def columns(arch: Architecture) -> dict[str, Any]:
            return {"params": space.params(arch), "latency_ms": round(self.latency(arch), 4)}

        return columns


def _sampler(params: Params, space: SearchSpace) -> Sampler:
    s = params.search
    return make_sampler(
        s.strategy,
        space,
        n_init=s.lanas.n_init,
        refit_every=s.lanas.refit_every,
        tree_height=s.lanas.tree_height,
        population_size=s.evolution.population_size,
        tournament_size=s.evolution.tournament_size,
        seed=params.seed,
    )


COMMON_KEYS = (
    "seed",
    "student",
    "finetune_teacher.model",
    "search.strategy",
    "search.proxy_task",
    "search.inherit_weights",
    "search.param_window",
    "search.max_latency_ms",
    "search.latency",
    "search.workers",
    "search.lanas",
    "search.evolution",
    "search.proxy",
)
"""The params every search stage reads (dvc.yaml lists the same keys)."""

_STAGE3_RESULT_KEYS = ("tasks", "search.stage3.general", "search.stage3.multitask", "search.stage3.heldout_examples")


def stage_keys(number: int) -> tuple[str, ...]:
    """The params keys search stage ``number`` reads."""
    return (*COMMON_KEYS, f"search.stage{number}", *(("tasks",) if number == 3 else ()))


def stage_sections(params: Params, number: int) -> dict[str, Any]:
    """The stage's params as a mapping (logged to MLflow)."""
    data = params.model_dump(mode="json")
    sections: dict[str, Any] = {}
    for key in stage_keys(number):
        node: Any = data
        for part in key.split("."):
            node = node[part]
        sections[key] = node
    return sections


def stage_tasks(params: Params, number: int) -> list[str]:
    """The tasks whose data and fine-tuned teacher a stage reads: the proxy task; stage 3 every sentence task."""
    if number < 3:
        return [params.search.proxy_task]
    return [t for t in params.tasks if get_task(t).kind != "span"]


def search_state_dir(params: Params, number: int, inputs: StageInputs) -> Path:
    """The resumable state of a search stage, keyed by what decides its results and its inputs' digests.

    The budget (``candidates``, ``max_minutes``) is not part of the key: proposals depend only on the history, so a
    search re-run with a larger budget continues from the candidates already evaluated and ends exactly where a
    fresh run with that budget would.
    """
    from effbert.params import section_digest

    keys = (*COMMON_KEYS, *(_STAGE3_RESULT_KEYS if number == 3 else ()))
    paths = [inputs.supernet_dir, inputs.corpus_dir] + ([inputs.previous_dir] if inputs.previous_dir else [])
    paths += [inputs.data_root / t for t in stage_tasks(params, number)]
    paths += [inputs.teacher_root / t for t in stage_tasks(params, number)]
    digests = [str((tracking.read_lineage(p) or {}).get("digest") or tracking.path_digest(p))[:12] for p in paths]
    fingerprint = hashlib.sha256("-".join([section_digest(params, *keys), *digests]).encode()).hexdigest()[:24]
    return checkpoint_dir(f"search_stage{number}", "search", fingerprint)


def _proxy_evaluate(params: Params, inputs: StageInputs, state_dir: Path, stack: list[Any]) -> Evaluate:
    """Stage 1/2 evaluation: :func:`effbert.stages.proxy.evaluate_candidate` in this process or in a pool."""
    from effbert.stages.proxy import ProxyJob, evaluate_candidate

    task = params.search.proxy_task
    workers = params.search.workers
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    teacher_source = _frame_teacher(params)

    def make_job(index: int, proposal: Proposal) -> ProxyJob:
        return ProxyJob(
            index=index,
            architecture=architecture_string(proposal.arch),
            fingerprint=proposal.fingerprint,
            supernet_dir=str(inputs.supernet_dir.resolve()),
            corpus_dir=str(inputs.corpus_dir.resolve()),
            data_dir=str((inputs.data_root / task).resolve()),
            task_teacher_dir=str((inputs.teacher_root / task).resolve()),
            teacher_source=teacher_source,
            task=task,
            proxy=params.search.proxy.model_dump(),
            seed=params.seed,
            inherit_weights=params.search.inherit_weights,
            scratch_dir=str(state_dir / "scratch"),
            threads=threads,
        )

    if workers == 1:
        return in_process(lambda i, p: evaluate_candidate(make_job(i, p)))
    import multiprocessing

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads or 1,),
    )
    stack.append(pool)
    return process_pool(pool, make_job, evaluate_candidate)


def _frame_teacher(params: Params) -> str:
    from effbert.models.teacher import resolve_source

    return resolve_source(params.finetune_teacher.model, tracking.project_root())


def _log_candidate(stage: tracking.StageRun, stage_name: str) -> Callable[[dict[str, Any]], None]:
    def log_record(record: dict[str, Any]) -> None:
        metrics: dict[str, float] = {
            k: float(record[k])
            for k in ("fitness", "params", "latency_ms", "wall_seconds")
            if isinstance(record.get(k), int | float) and math.isfinite(record[k])
        }
        record["run_id"] = stage.child_run(
            f"{stage_name}-candidate-{record['index']:04d}",
            {"architecture": record["architecture"], "origin": record["origin"], "status": record["status"]},
            metrics,
            {"effbert.candidate.index": str(record["index"]), "effbert.candidate.fingerprint": record["fingerprint"]},
        )

    return log_record


def run_stage(
    number: int, params: Params, inputs: StageInputs, out_dir: Path, stage: tracking.StageRun
) -> dict[str, Any]:
    """Run search stage ``number`` (1, 2 or 3) and write its outputs into ``out_dir``."""
    from effbert.search.space import stage1_space, stage2_space, stage3_space
    from effbert.stages.common import seed_everything

    stage_name = f"search_stage{number}"
    seed_everything(params.seed)
    budget: StageBudget = getattr(params.search, f"stage{number}")
    state_dir = search_state_dir(params, number, inputs)
    state_dir.mkdir(parents=True, exist_ok=True)
    frame = _Frame(params, inputs, state_dir)
    previous = _previous_winner(inputs, frame.hidden) if number > 1 else None
    try:
        if number == 1:
            space = stage1_space(frame.hidden, frame.num_layers, frame.fixed_params, frame.window, accept=frame.accept)
        elif number == 2:
            assert previous is not None
            space = stage2_space(previous, frame.fixed_params, accept=frame.accept)
        else:
            assert previous is not None
            space = stage3_space(previous, frame.fixed_params, frame.window, accept=frame.accept)
        seeds = space.seeds()
    except ValueError as err:
        raise EffbertError(f"{stage_name}: {err} (search.param_window / search.max_latency_ms)") from None
    if budget.candidates < len(seeds):
        raise EffbertError(
            f"search.stage{number}.candidates={budget.candidates}: at least the {len(seeds)} seed(s) must be evaluated"
        )
    log.info(
        "%s: strategy %s, %d candidates, window %s params, proxy task %s, state %s",
        stage_name,
        params.search.strategy,
        budget.candidates,
        frame.window,
        params.search.proxy_task,
        state_dir,
    )
    label = _checkpoint_label(inputs.supernet_dir)
    stage.set_tags({"effbert.search.inherited_checkpoint": label})
    pools: list[Any] = []
    settings = LoopSettings(stage_name, budget, params.search.workers if number < 3 else 1, params.seed)
    try:
        if number < 3:
            evaluate = _proxy_evaluate(params, inputs, state_dir, pools)
            reference_of = None
            extra: dict[str, float] = {}
        else:
            evaluate, reference_of, extra = _weight_sharing_evaluate(params, inputs, frame, space, state_dir, stage)
        started = time.perf_counter()
        records = search_loop(
            space,
            _sampler(params, space),
            settings,
            state_dir / RECORDS_FILE,
            evaluate,
            frame.describe(space),
            _log_candidate(stage, stage_name),
        )
        wall = time.perf_counter() - started
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)
    metrics = write_outputs(number, params, space, records, out_dir, stage, wall, reference_of, frame, label, extra)
    shutil.rmtree(state_dir / "scratch", ignore_errors=True)
    return metrics


def vanilla_at(arch: Architecture) -> Architecture:
    """Plain GELU MLPs with the size ids of ``arch``: the reference a searched architecture is compared with."""
    from effbert.expr import vanilla

    exprs = [str(vanilla()) for _ in arch.layers]
    return Architecture.from_size_ids(exprs, arch.size_ids, arch.hidden_size, name=f"vanilla-{arch.name}")


def _checkpoint_label(supernet_dir: Path) -> str:
    lineage = tracking.read_lineage(supernet_dir) or {}
    digest = str(lineage.get("digest") or tracking.path_digest(supernet_dir))[:16]
    return f"{supernet_dir} sha256 {digest} run {lineage.get('run_id', '?')}"


def _previous_winner(inputs: StageInputs, hidden: int) -> Architecture:
    from effbert.models.architecture import load_architecture

    assert inputs.previous_dir is not None
    path = inputs.previous_dir / ARCHITECTURE_FILE
    try:
        winner = load_architecture(path)
    except ValueError as err:
        raise EffbertError(str(err)) from None
    if winner.hidden_size != hidden:
        raise EffbertError(f"{path}: hidden size {winner.hidden_size} differs from the supernet's {hidden}")
    return winner


def write_outputs(
    number: int,
    params: Params,
    space: SearchSpace,
    records: Sequence[dict[str, Any]],
    out_dir: Path,
    stage: tracking.StageRun,
    wall: float,
    reference_of: Callable[[Architecture], float] | None,
    frame: _Frame,
    checkpoint_label: str,
    extra: dict[str, float],
) -> dict[str, Any]:
    """Hall of fame, winner, metrics and plots of a finished search stage (``extra``: more metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from effbert.search.hall_of_fame import best_so_far, hall_of_fame
    from effbert.search.plots import search_figure

    stage_name = f"search_stage{number}"
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        raise EffbertError(f"{stage_name}: no candidate could be evaluated (see the hall of fame in the log)")
    table = hall_of_fame(records)
    table.to_csv(out_dir / "hall_of_fame.csv", index=False)
    best = table.iloc[0].to_dict()
    winner = parse_architecture_string(str(best["architecture"]), frame.hidden, name=f"{stage_name}-winner")
    winner.save(out_dir / ARCHITECTURE_FILE)
    vanilla = space.vanilla_reference() if number == 1 else vanilla_at(winner)
    vanilla_fp = space.fingerprint(vanilla)
    vanilla_record = next((r for r in records if r["fingerprint"] == vanilla_fp), None)
    if vanilla_record is not None:
        vanilla_fitness = float(vanilla_record["fitness"])
    elif reference_of is not None:
        vanilla_fitness = reference_of(vanilla)
    else:
        vanilla_fitness = math.nan
    (out_dir / "plots").mkdir(exist_ok=True)
    best_so_far(table).to_csv(out_dir / "plots" / "best_so_far.csv", index=False)
    figure = search_figure(table, f"{stage_name} ({params.search.strategy})", reference_fitness=vanilla_fitness)
    figure.savefig(out_dir / "search.png", dpi=100)
    plt.close(figure)
    spent = max((float(r.get("elapsed_seconds", 0.0)) for r in records), default=0.0)
    metrics = {
        "stage": number,
        "strategy": params.search.strategy,
        "candidates": len(records),
        "failed": len(records) - len(ok),
        "best_fitness": float(best["fitness"]),
        "vanilla_fitness": vanilla_fitness,
        "gain_over_vanilla": float(best["fitness"]) - vanilla_fitness,
        "winner_params": int(best["params"]),
        "winner_latency_ms": float(best["latency_ms"]),
        "vanilla_params": space.params(vanilla),
        "param_window": [frame.window.low, frame.window.high],
        "search_seconds": spent,
        "search_seconds_this_run": wall,
        "candidates_per_minute": len(records) / (spent / 60) if spent > 0 else 0.0,
        "max_latency_ms": params.search.max_latency_ms,
        "latency_protocol": {
            **params.search.latency.model_dump(),
            "statistic": "median",
            "machine": frame.latency.machine,
        },
        **extra,
    }
    winner_info: dict[str, Any] = {
        "stage": stage_name,
        "index": int(best["index"]),
        "fitness": float(best["fitness"]),
        "architecture": str(best["architecture"]),
        "fingerprint": str(best["fingerprint"]),
        "candidate_run_id": str(best["run_id"]),
        "inherited_checkpoint": checkpoint_label,
    }
    (out_dir / "winner.json").write_text(json.dumps(winner_info, indent=2) + "\n", encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    stage.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)})
    stage.set_tags(
        {
            "effbert.search.winner_run_id": winner_info["candidate_run_id"],
            "effbert.search.winner_index": str(winner_info["index"]),
            "effbert.search.winner_architecture": winner_info["architecture"][:4000],
        }
    )
    stage.log_artifact(out_dir / "search.png", "plots")
    log.info(
        "%s: best fitness %.4f (candidate %d) vs vanilla GELU %.4f; %d candidates, %.2f per minute",
        stage_name,
        metrics["best_fitness"],
        winner_info["index"],
        vanilla_fitness,
        len(records),
        metrics["candidates_per_minute"],
    )
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# stage 3: weight sharing


WEIGHT_SHARING_FILE = "weight_sharing.safetensors"


def _ws_arguments(hp: Any, output_dir: Path, seed: int, batch_size: int) -> Any:
    from effbert.training import training_arguments

    return training_arguments(
        output_dir=output_dir,
        seed=seed,
        learning_rate=hp.learning_rate,
        epochs=hp.epochs,
        batch_size=batch_size,
        warmup_ratio=hp.warmup_ratio,
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        save_steps=hp.save_steps,
        save_total_limit=1,
        bf16=False,
        select_on_heldout=False,
    )


def _train(trainer: Any, checkpoints: Path) -> float:
    """Train (resuming from the last checkpoint of a killed run); returns the last logged loss."""
    from transformers.trainer_utils import get_last_checkpoint

    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return float(losses[-1]) if losses else math.nan


def train_weight_sharing(
    params: Params, inputs: StageInputs, space: SearchSpace, state_dir: Path, tokenizer: Any
) -> tuple[Any, dict[str, float]]:
    """Stage 3a + 3b: weight-sharing general KD on the corpus, then multi-task task KD, a random sub-architecture
    (of the stage-3 space) per step. Returns the trained :class:`MultiTaskDistillation` and its final losses.

    The trained weights are kept in the search state, so a restarted stage goes straight to scoring.
    """
    import datasets
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    from effbert.distill.trainer import DistillationModule, DistillationTrainerMixin
    from effbert.models.modeling_effbert import EffBertForSequenceClassification, EffBertModel
    from effbert.models.teacher import load_task_model
    from effbert.search.weight_sharing import (
        MultiTaskCollator,
        MultiTaskDistillation,
        random_subnet_callback,
        single_task_batches,
    )
    from effbert.stages import distillation
    from effbert.stages.proxy import _Weights
    from effbert.training import build_trainer

    hp = params.search.stage3
    seed = params.seed
    tasks = [t for t in params.tasks if get_task(t).kind != "span"]
    body = EffBertModel.from_pretrained(str(inputs.supernet_dir))
    teacher = AutoModel.from_pretrained(_frame_teacher(params))
    weights = _Weights(params.search.proxy.model_dump())
    loss = distillation.criterion(body.config.hidden_size, teacher.config, "agnostic", weights)
    distillation.load_projection(loss, inputs.supernet_dir)
    heads: dict[str, Any] = {}
    for offset, task in enumerate(tasks):
        spec = get_task(task)
        values = body.config.to_dict()
        values.update(num_labels=spec.num_labels if spec.kind != "regression" else 1)
        values["problem_type"] = "regression" if spec.kind == "regression" else "single_label_classification"
        import torch

        torch.manual_seed(seed + offset)
        head = EffBertForSequenceClassification(type(body.config).from_dict(values))
        head.effbert = body
        heads[task] = head
    teachers = {t: load_task_model(str(inputs.teacher_root / t), get_task(t)) for t in tasks}
    kinds = {t: get_task(t).kind for t in tasks}
    module = MultiTaskDistillation(body, heads, teachers, kinds, loss)
    finished = state_dir / WEIGHT_SHARING_FILE
    losses: dict[str, float] = {}
    started = time.perf_counter()
    if finished.is_file():
        log.info("weight-sharing supernet already trained: %s", finished)
        module.load_state_dict(load_file(str(finished)))
        return module, json.loads((state_dir / "weight_sharing_losses.json").read_text(encoding="utf-8"))

    def draw(rng: random.Random) -> Architecture:
        return space.sample(rng)

    corpus: Any = datasets.load_from_disk(str(inputs.corpus_dir / "corpus"))
    corpus = corpus.select(range(max(1, math.floor(len(corpus) * hp.general.data_fraction))))
    general = DistillationModule(body, teacher, loss)
    trainer = build_trainer(
        None,
        general,
        tokenizer,
        _ws_arguments(hp.general, state_dir / "general", seed, hp.general.batch_size),
        corpus,
        callbacks=[random_subnet_callback(body, draw, seed, "general")],
        mixin=DistillationTrainerMixin,
    )
    log.info("stage 3a: weight-sharing general KD on %d corpus rows", len(corpus))
    losses["general_loss"] = _train(trainer, state_dir / "general")

    train_sets = []
    for task in tasks:
        data: Any = datasets.load_from_disk(str(inputs.data_root / task / "train"))
        train_sets.append(data.select(range(max(1, math.floor(len(data) * hp.multitask.data_fraction)))))
    batches = single_task_batches(
        {t: len(d) for t, d in zip(tasks, train_sets, strict=True)}, hp.multitask.batch_size, seed
    )
    rows = datasets.Dataset.from_dict({"task_index": [b[0] for b in batches], "rows": [b[1] for b in batches]})
    args = _ws_arguments(hp.multitask, state_dir / "multitask", seed, 1)
    args.remove_unused_columns = False
    args.label_names = ["labels"]
    trainer = build_trainer(
        None,
        module,
        tokenizer,
        args,
        rows,
        callbacks=[random_subnet_callback(body, draw, seed, "multitask")],
        mixin=DistillationTrainerMixin,
    )
    trainer.data_collator = MultiTaskCollator(train_sets, tokenizer)
    log.info("stage 3b: weight-sharing multi-task KD over %s (%d single-task batches)", ", ".join(tasks), len(batches))
    losses["multitask_loss"] = _train(trainer, state_dir / "multitask")
    losses["seconds"] = time.perf_counter() - started  # this run's training time (a resumed run: its remainder)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(finished.with_suffix(".tmp")))
    finished.with_suffix(".tmp").replace(finished)
    (state_dir / "weight_sharing_losses.json").write_text(json.dumps(losses), encoding="utf-8")
    for folder in ("general", "multitask"):
        shutil.rmtree(state_dir / folder, ignore_errors=True)
    return module, losses


def _weight_sharing_evaluate(
    params: Params, inputs: StageInputs, frame: _Frame, space: SearchSpace, state_dir: Path, stage: tracking.StageRun
) -> tuple[Evaluate, Callable[[Architecture], float], dict[str, float]]:
    """Stage 3c: train the weight-sharing supernet (or reload it), then score candidates with no training."""
    import datasets

    from effbert.models.supernet import set_active
    from effbert.models.teacher import load_tokenizer
    from effbert.stages.proxy import heldout_score

    task = params.search.proxy_task
    spec = get_task(task)
    tokenizer = load_tokenizer(str(inputs.supernet_dir))
    module, losses = train_weight_sharing(params, inputs, space, state_dir, tokenizer)
    stage.log_metrics({f"weight_sharing_{k}": v for k, v in losses.items() if math.isfinite(v)})
    module.eval()
    head = module.head(task)
    heldout: Any = datasets.load_from_disk(str(inputs.data_root / task / "heldout"))
    limit = params.search.stage3.heldout_examples
    if limit is not None and limit < len(heldout):
        heldout = heldout.select(range(limit))
    worker = f"{os.uname().nodename}:{os.getpid()}"

    def score(arch: Architecture) -> float:
        set_active(module.body, arch)
        return heldout_score(head, heldout, tokenizer, spec, params.search.proxy.eval_batch_size)

    def evaluate_one(index: int, proposal: Proposal) -> dict[str, Any]:
        started = time.perf_counter()
        record: dict[str, Any] = {"status": "ok", "error": "", "fitness": 0.0}
        try:
            record["fitness"] = score(proposal.arch)
        except (RuntimeError, ValueError) as err:
            record.update(status="error", error=f"{type(err).__name__}: {str(err).splitlines()[0][:500]}")
        record.update(wall_seconds=time.perf_counter() - started, worker=worker)
        return record

    return in_process(evaluate_one), score, {f"weight_sharing_{k}": v for k, v in losses.items()}
