"""Stages ``search_stage1``, ``search_stage2`` and ``search_stage3``: the progressive coarse-to-fine MLP search.

* Stage 1 (coarse): expression and size id per layer, inside the parameter window; candidates trained briefly from
  the warm-up supernet's slices and scored on the proxy task (`effbert.methods.efficientbert.search.proxy`).
* Stage 2 (fine): expressions only, sizes frozen to the stage-1 winner; same evaluation.
* Stage 3 (sizes only): expressions fixed to the stage-2 winner; the supernet is trained with weight sharing (a random
  sub-architecture per step: general KD on the corpus, then multi-task KD over the profile's sentence tasks) and
  candidates are scored on the proxy task's held-out slice with no further training
  (`effbert.methods.efficientbert.search.weight_sharing`).

The loop (`effbert.methods.efficientbert.search.loop`) is the same for all three and resumes from the search state
under ``.effbert/checkpoints`` (keyed without the budget, so a larger budget continues a finished search). Each
candidate becomes a nested MLflow run of the stage's run.

Outputs per stage: ``hall_of_fame.csv``, ``architecture.json`` (the winner; the next stage's, and finally
``final_distill``'s, input), ``winner.json``, ``metrics.json``, ``search.png`` and ``plots/best_so_far.csv``; stage 3
also ``weight_sharing.safetensors`` (the multi-task weight-sharing supernet EfficientBERT+ starts from).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.compute import device, seed_everything
from effbert.data.tasks import get_task
from effbert.errors import EffbertError
from effbert.models.teacher import teacher_source
from effbert.params import Params
from effbert.runtime import (
    checkpoint_dir,
    input_digest,
    load_params,
    params_option,
    read_json,
    resolve_bf16,
    stage_context,
    write_json,
)

log = logging.getLogger(__name__)

COMMON_PARAMS = (
    "seed",
    "bf16",
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
"""The params every search stage reads."""

PARAMS = {
    "search-stage1": (*COMMON_PARAMS, "search.stage1", "search.noise_seeds"),
    "search-stage2": (*COMMON_PARAMS, "search.stage2"),
    "search-stage3": (*COMMON_PARAMS, "search.stage3", "tasks"),
}
"""The params each search stage's command reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""

STATE_PARAMS = {
    1: COMMON_PARAMS,
    2: COMMON_PARAMS,
    3: (
        *COMMON_PARAMS,
        "tasks",
        "search.stage3.general",
        "search.stage3.multitask",
        "search.stage3.heldout_examples",
        "search.stage3.score_rows",
    ),
}
"""What a stage's resumable state is keyed by: its params without the budget (``candidates``, ``max_minutes``)."""


@dataclass(frozen=True)
class StageInputs:
    """The paths a search stage reads (all given on the command line by dvc.yaml)."""

    supernet_dir: Path
    corpus_dir: Path
    data_root: Path  # results/prepare_data
    teacher_root: Path  # results/models/teacher
    previous_dir: Path | None = None  # the previous search stage's output


def stage_tasks(params: Params, number: int) -> list[str]:
    """The tasks whose data and fine-tuned teacher a stage reads: the proxy task; stage 3 every sentence task but
    those the paper leaves out of its multi-task KD (`weight_sharing.MULTITASK_EXCLUDED`: WNLI)."""
    from effbert.methods.efficientbert.search.weight_sharing import MULTITASK_EXCLUDED

    if number < 3:
        return [params.proxy_task]
    return [t for t in params.tasks if get_task(t).kind != "span" and t not in MULTITASK_EXCLUDED]


def _command(number: int, title: str) -> click.Command:
    """``effbert search-stage<number>`` (the three stages share options and code)."""

    @click.command(f"search-stage{number}", help=title)
    @click.option("--supernet", "supernet_dir", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--teachers", "teacher_root", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--previous", "previous_dir", type=click.Path(exists=True, file_okay=False), default=None)
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
    @params_option
    def command(
        supernet_dir: str,
        corpus_dir: str,
        data_root: str,
        teacher_root: str,
        previous_dir: str | None,
        out: str,
        params_file: str,
    ) -> None:
        if (number > 1) != (previous_dir is not None):
            raise click.UsageError("--previous is required by stages 2 and 3 and not accepted by stage 1")
        params = load_params(params_file)
        previous = Path(previous_dir) if previous_dir else None
        inputs = StageInputs(Path(supernet_dir), Path(corpus_dir), Path(data_root), Path(teacher_root), previous)
        name = f"search_stage{number}"
        tags = {"effbert.search.stage": str(number)}
        with stage_context(name, name, params, PARAMS[f"search-stage{number}"], [Path(out)], tags) as (run, (tmp,)):
            run.consume(inputs.supernet_dir, "supernet", context="model")
            run.consume(inputs.corpus_dir, "corpus/prepared")
            for task in stage_tasks(params, number):
                run.consume(inputs.data_root / task, f"{task}/prepared")
                run.consume(inputs.teacher_root / task, f"{task}/teacher", context="teacher")
            if inputs.previous_dir is not None:
                run.consume(inputs.previous_dir, f"search_stage{number - 1}", context="architecture")
            search(number, params, inputs, tmp, run)
            run.log_artifact(tmp / "hall_of_fame.csv")

    return command


stage1 = _command(1, "Search stage 1 (coarse): MLP expression and size per layer, inside the parameter window.")
stage2 = _command(2, "Search stage 2 (fine): MLP expressions only, sizes frozen to the stage-1 winner.")
stage3 = _command(3, "Search stage 3: sizes only, weight-sharing supernet, candidates scored without training.")


def _state_dir(params: Params, number: int, inputs: StageInputs) -> Path:
    """The stage's resumable search state, keyed by what decides its results and by its inputs' digests."""
    paths = [inputs.supernet_dir, inputs.corpus_dir] + ([inputs.previous_dir] if inputs.previous_dir else [])
    paths += [inputs.data_root / t for t in stage_tasks(params, number)]
    paths += [inputs.teacher_root / t for t in stage_tasks(params, number)]
    state = checkpoint_dir(f"search_stage{number}", "search", params, STATE_PARAMS[number], paths)
    state.mkdir(parents=True, exist_ok=True)
    return state


def _space(number: int, params: Params, frame: Any, inputs: StageInputs) -> Any:
    """The stage's search space (stages 2 and 3 start from the previous stage's winner)."""
    from effbert.methods.efficientbert.architecture import ARCHITECTURE_FILE, load_architecture
    from effbert.methods.efficientbert.search.space import stage1_space, stage2_space, stage3_space

    previous: Any = None
    if inputs.previous_dir is not None:
        path = inputs.previous_dir / ARCHITECTURE_FILE
        try:
            previous = load_architecture(path)
        except ValueError as err:
            raise EffbertError(str(err)) from None
        if previous.hidden_size != frame.hidden:
            raise EffbertError(f"{path}: hidden size {previous.hidden_size} differs from the supernet's {frame.hidden}")
    try:
        if number == 1:
            space = stage1_space(frame.hidden, frame.num_layers, frame.fixed_params, frame.window, accept=frame.accept)
        elif number == 2:
            space = stage2_space(previous, frame.fixed_params, accept=frame.accept)
        else:
            space = stage3_space(previous, frame.fixed_params, frame.window, accept=frame.accept)
        seeds = space.seeds()
    except ValueError as err:
        raise EffbertError(f"search_stage{number}: {err} (search.param_window / search.max_latency_ms)") from None
    budget = params.search.budget(number).candidates
    if budget < len(seeds):
        raise EffbertError(
            f"search.stage{number}.candidates={budget}: at least the {len(seeds)} seed(s) must be evaluated"
        )
    return space


def search(number: int, params: Params, inputs: StageInputs, out_dir: Path, run: tracking.StageRun) -> dict[str, Any]:
    """Run search stage ``number`` (1, 2 or 3) and write its outputs into ``out_dir``."""
    from transformers import AutoConfig

    from effbert.methods.efficientbert.modeling_effbert import EffBertModel
    from effbert.methods.efficientbert.search.frame import SearchFrame
    from effbert.methods.efficientbert.search.loop import RECORDS_FILE, LoopSettings, search_loop
    from effbert.methods.efficientbert.search.samplers import make_sampler
    from effbert.methods.efficientbert.search.summary import summarize

    stage_name = f"search_stage{number}"
    seed_everything(params.seed)
    budget = params.search.budget(number)
    state_dir = _state_dir(params, number, inputs)
    teacher_hidden = int(AutoConfig.from_pretrained(teacher_source(params)).hidden_size)
    supernet = EffBertModel.from_pretrained(str(inputs.supernet_dir)).eval()
    try:
        frame = SearchFrame(supernet, teacher_hidden, params.student, params.search, state_dir)
    except ValueError as err:
        raise EffbertError(f"{inputs.supernet_dir}: {err}") from None
    space = _space(number, params, frame, inputs)
    s = params.search
    log.info(
        "%s: strategy %s, %d candidates, window %s params, proxy task %s, state %s",
        stage_name,
        s.strategy,
        budget.candidates,
        frame.window,
        params.proxy_task,
        state_dir,
    )
    label = _checkpoint_label(inputs.supernet_dir)
    run.set_tags({"effbert.search.inherited_checkpoint": label})
    sampler = make_sampler(s.strategy, space, seed=params.seed, **_sampler_options(s))
    settings = LoopSettings(stage_name, budget, s.workers if number < 3 else 1, params.seed)
    bf16 = resolve_bf16(params, run)
    pools: list[Any] = []
    extra: dict[str, float] = {}
    try:
        if number < 3:
            evaluate, reference_of = _proxy_evaluate(params, inputs, state_dir, pools, bf16), None
        else:
            evaluate, reference_of, extra = _weight_sharing_evaluate(params, inputs, space, state_dir, run, bf16)
        started = time.perf_counter()
        records = search_loop(
            space,
            sampler,
            settings,
            state_dir / RECORDS_FILE,
            evaluate,
            frame.describe(space),
            _child_run(run, stage_name),
        )
        wall = time.perf_counter() - started
    finally:
        for pool in pools:
            pool.shutdown(cancel_futures=True)
    noise = _proxy_noise(number, params, inputs, space, records, state_dir, bf16)
    summary = summarize(
        number,
        records,
        space,
        frame,
        s,
        wall=wall,
        checkpoint_label=label,
        reference_of=reference_of,
        extra=extra,
        noise=noise,
    )
    _write_outputs(summary, out_dir, run)
    if number == 3:  # EfficientBERT+ starts its task KD from these multi-task weights (variants)
        from effbert.methods.efficientbert.search.weight_sharing import WEIGHT_SHARING_FILE

        shutil.copyfile(state_dir / WEIGHT_SHARING_FILE, out_dir / WEIGHT_SHARING_FILE)
    shutil.rmtree(state_dir / "scratch", ignore_errors=True)
    return summary.metrics


def _sampler_options(s: Any) -> dict[str, Any]:
    """The ``search`` params of the samplers (LaNAS and evolution; random sampling takes none)."""
    return {
        "n_init": s.lanas.n_init,
        "refit_every": s.lanas.refit_every,
        "tree_height": s.lanas.tree_height,
        "population_size": s.evolution.population_size,
        "tournament_size": s.evolution.tournament_size,
    }


def _proxy_noise(
    number: int, params: Params, inputs: StageInputs, space: Any, records: list[dict[str, Any]], state: Path, bf16: bool
) -> dict[str, Any] | None:
    """Stage 1: the vanilla candidate scored under ``search.noise_seeds`` seeds (the search's own score reused; each
    new score kept in the state, sealed, so a restart loses at most one); stages 2 and 3 carry the previous stage's."""
    import dataclasses

    from effbert.integrity import read_sealed_json, write_sealed_json
    from effbert.methods.efficientbert.search.noise import measure_noise, noise_seeds
    from effbert.methods.efficientbert.search.proxy import evaluate_candidate
    from effbert.methods.efficientbert.search.space import architecture_string

    if number > 1:
        previous = read_json(Path(str(inputs.previous_dir)) / "metrics.json", "the previous search stage's metrics")
        return previous.get("proxy_noise")
    if params.search.noise_seeds == 0:
        return None
    vanilla = space.vanilla_reference()
    fingerprint = space.fingerprint(vanilla)
    cache = state / "noise.json"
    kept = read_sealed_json(cache, "proxy-noise cache", "scoring again") or {}
    known = {int(k): float(v) for k, v in kept.get("fitness", {}).items()}
    searched = [float(r["fitness"]) for r in records if r["fingerprint"] == fingerprint]
    if searched:  # the search's own score of the vanilla candidate, under its seed
        known[params.seed] = searched[0]
    job = _proxy_job(params, inputs, state, bf16).candidate(len(records), architecture_string(vanilla), fingerprint)

    def score(seed: int) -> float:
        fitness = float(evaluate_candidate(dataclasses.replace(job, seed=seed))["fitness"])
        known[seed] = fitness
        write_sealed_json(cache, {"fitness": {str(k): v for k, v in known.items()}})
        log.info("proxy noise: vanilla candidate, seed %d: fitness %.4f", seed, fitness)
        return fitness

    return measure_noise(noise_seeds(params.seed, params.search.noise_seeds), known, score)


def _checkpoint_label(supernet_dir: Path) -> str:
    """The inherited checkpoint in words: path, digest and the MLflow run that wrote it."""
    lineage = tracking.read_lineage(supernet_dir) or {}
    return f"{supernet_dir} sha256 {input_digest(supernet_dir)[:16]} run {lineage.get('run_id', '?')}"


def _proxy_evaluate(params: Params, inputs: StageInputs, state_dir: Path, pools: list[Any], bf16: bool) -> Any:
    """Stages 1 and 2: `evaluate_candidate` in this process, or in a pool of ``search.workers`` processes."""
    from effbert.methods.efficientbert.search.loop import in_process, process_pool, worker_pool
    from effbert.methods.efficientbert.search.proxy import ProxyJob, evaluate_candidate
    from effbert.methods.efficientbert.search.samplers import Proposal
    from effbert.methods.efficientbert.search.space import architecture_string

    workers = params.search.workers
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    base = _proxy_job(params, inputs, state_dir, bf16, threads)

    def make_job(index: int, proposal: Proposal) -> ProxyJob:
        return base.candidate(index, architecture_string(proposal.arch), proposal.fingerprint)

    if workers == 1:
        return in_process(lambda i, p: evaluate_candidate(make_job(i, p)))
    pools.append(worker_pool(workers, threads or 1))
    return process_pool(pools[-1], make_job, evaluate_candidate)


def _proxy_job(params: Params, inputs: StageInputs, state_dir: Path, bf16: bool, threads: int | None = None) -> Any:
    """The stage's `ProxyJob`, the candidate still blank."""
    from effbert.methods.efficientbert.search.proxy import ProxyJob

    return ProxyJob.for_stage(
        params,
        teacher_source(params),
        inputs.supernet_dir,
        inputs.corpus_dir,
        inputs.data_root,
        inputs.teacher_root,
        state_dir / "scratch",
        bf16=bf16,
        threads=threads,
    )


def _weight_sharing_evaluate(
    params: Params, inputs: StageInputs, space: Any, state_dir: Path, run: tracking.StageRun, bf16: bool
) -> tuple[Any, Callable[[Any], float], dict[str, float]]:
    """Stage 3: train the weight-sharing supernet (or reload it from the search state), then score candidates on the
    proxy task's scoring rows (`weight_sharing.scoring_rows`) with no training."""
    from effbert.data.prepared import load_split
    from effbert.methods.efficientbert.search.loop import scored
    from effbert.methods.efficientbert.search.weight_sharing import heldout_scorer, scoring_rows
    from effbert.models.teacher import load_tokenizer

    task = params.proxy_task
    tokenizer = load_tokenizer(str(inputs.supernet_dir))
    module, losses = _weight_sharing_supernet(params, inputs, space, state_dir, tokenizer, bf16)
    run.log_metrics({f"weight_sharing_{k}": v for k, v in losses.items() if math.isfinite(v)})
    module.eval()
    hp = params.search.stage3
    rows = scoring_rows(
        load_split(inputs.data_root / task, "train"), load_split(inputs.data_root / task, "heldout"), hp
    )
    log.info("stage 3 scores candidates on %d %s rows of %s", len(rows), hp.score_rows, task)
    batch = params.search.proxy.eval_batch_size
    score = heldout_scorer(module, task, get_task(task), rows, tokenizer, batch, device(), bf16=bf16)
    return scored(score), score, {f"weight_sharing_{k}": v for k, v in losses.items()}


def _weight_sharing_supernet(
    params: Params, inputs: StageInputs, space: Any, state_dir: Path, tokenizer: Any, bf16: bool
) -> tuple[Any, dict[str, float]]:
    """The trained weight-sharing module: trained now (general then multi-task KD), or reloaded from the state
    (`weight_sharing.load_trained_state`: only while it matches its digest)."""
    from transformers import AutoModel

    from effbert.data.prepared import load_split
    from effbert.distill import DistillationLoss
    from effbert.distill.projection import load_projection
    from effbert.methods.efficientbert.modeling_effbert import EffBertModel
    from effbert.methods.efficientbert.search.weight_sharing import (
        WEIGHT_SHARING_FILE,
        MultiTaskDistillation,
        load_trained_state,
        save_trained_state,
        task_heads,
        train_weight_sharing,
    )
    from effbert.models.auto import load_task_model

    tasks = stage_tasks(params, 3)
    body = EffBertModel.from_pretrained(str(inputs.supernet_dir))
    teacher = AutoModel.from_pretrained(teacher_source(params))
    proxy = params.search.proxy
    loss = DistillationLoss(
        body.config.hidden_size, teacher.config.hidden_size, task="agnostic", prediction_weight=proxy.prediction_weight
    )
    load_projection(loss, inputs.supernet_dir)
    specs = {t: get_task(t) for t in tasks}
    heads = task_heads(body, specs, params.seed)
    teachers = {t: load_task_model(str(inputs.teacher_root / t), specs[t]) for t in tasks}
    module = MultiTaskDistillation(body, heads, teachers, {t: specs[t].kind for t in tasks}, loss)
    kept = load_trained_state(state_dir)
    if kept is not None:
        log.info("weight-sharing supernet already trained: %s", state_dir / WEIGHT_SHARING_FILE)
        module.load_state_dict(kept[0])
        return module, kept[1]
    started = time.perf_counter()
    losses = train_weight_sharing(
        module,
        teacher,
        tokenizer,
        load_split(inputs.corpus_dir, "corpus"),
        [load_split(inputs.data_root / t, "train") for t in tasks],
        params.search.stage3,
        seed=params.seed,
        draw=space.sample,
        checkpoints=state_dir,
        bf16=bf16,
    )
    losses["seconds"] = time.perf_counter() - started  # this run's training time (a resumed run: its remainder)
    save_trained_state(state_dir, module, losses)
    for folder in ("general", "multitask"):
        shutil.rmtree(state_dir / folder, ignore_errors=True)
    return module, losses


def _child_run(run: tracking.StageRun, stage_name: str) -> Callable[[dict[str, Any]], None]:
    """Records each evaluated candidate as a nested MLflow run of the stage's run (sets its ``run_id``)."""

    def log_record(record: dict[str, Any]) -> None:
        metrics: dict[str, float] = {
            k: float(record[k])
            for k in ("fitness", "params", "latency_ms", "wall_seconds")
            if isinstance(record.get(k), int | float) and math.isfinite(record[k])
        }
        record["run_id"] = run.child_run(
            f"{stage_name}-candidate-{record['index']:04d}",
            {"architecture": record["architecture"], "origin": record["origin"], "status": record["status"]},
            metrics,
            {"effbert.candidate.index": str(record["index"]), "effbert.candidate.fingerprint": record["fingerprint"]},
        )

    return log_record


def _write_outputs(summary: Any, out_dir: Path, run: tracking.StageRun) -> None:
    """Hall of fame, winner, metrics, figure and progress CSV of a finished stage; the winner's tags in MLflow."""
    from effbert.methods.efficientbert.architecture import ARCHITECTURE_FILE

    summary.table.to_csv(out_dir / "hall_of_fame.csv", index=False)
    summary.winner.save(out_dir / ARCHITECTURE_FILE)
    (out_dir / "plots").mkdir(exist_ok=True)
    summary.best_so_far.to_csv(out_dir / "plots" / "best_so_far.csv", index=False)
    summary.figure.savefig(out_dir / "search.png", dpi=100)
    info, metrics = summary.winner_info, summary.metrics
    write_json(out_dir / "winner.json", info)
    write_json(out_dir / "metrics.json", metrics)
    run.log_summary(metrics, out_dir / "search.png")
    run.set_tags(
        {
            "effbert.search.winner_run_id": info["candidate_run_id"],
            "effbert.search.winner_index": str(info["index"]),
            "effbert.search.winner_architecture": info["architecture"][:4000],
        }
    )
    log.info(
        "%s: best fitness %.4f (candidate %d) vs vanilla GELU %.4f; %d candidates, %.2f per minute",
        info["stage"],
        metrics["best_fitness"],
        info["index"],
        metrics["vanilla_fitness"],
        metrics["candidates"],
        metrics["candidates_per_minute"],
    )
