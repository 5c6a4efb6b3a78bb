"""Optional stage ``search_quality``: does warm-up KD make the proxy faithful? (the paper's central claim)

Takes ``search.quality_candidates`` candidates from a search stage's hall of fame (spread evenly over its ranks, so
the ranking is tested across the whole fitness range, not only among near-ties at the top), and for each:

1. its proxy fitness WITH weight inheritance (recomputed with the search's own
   `effbert.methods.efficientbert.search.proxy.evaluate_candidate`, so the comparison does not depend on what
   ``search.inherit_weights`` was during the search);
2. its proxy fitness WITHOUT weight inheritance (random init, fresh ``fit_dense``);
3. its final dev score: the full final distillation of the DAG (``final_distill.general`` on the corpus from the
   supernet's slice, then ``final_distill.task`` on the proxy task, best held-out checkpoint) and the dev metric.

Reports Kendall's tau-b between each proxy column and the final dev score (``quality.csv``, ``metrics.json``,
``quality.png``). Each candidate is recorded as soon as it is finished (``records.jsonl`` in the stage's checkpoint
folder), so a killed run continues with the next unfinished candidate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.compute import device, seed_everything, set_threads
from effbert.errors import EffbertError
from effbert.models.teacher import teacher_source
from effbert.params import Params
from effbert.runtime import checkpoint_dir, load_params, params_option, resolve_bf16, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS = (
    "seed",
    "bf16",
    "student",
    "finetune_teacher.model",
    "search.proxy",
    "search.proxy_task",
    "search.quality_candidates",
    "final_distill",
    "evaluate",
)
"""The params this stage reads (workflow/optional/dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("search-quality")
@click.option(
    "--search",
    "search_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A search stage's output (its hall_of_fame.csv).",
)
@click.option("--supernet", "supernet_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--teachers", "teacher_root", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@params_option
def command(
    search_dir: str, supernet_dir: str, corpus_dir: str, data_root: str, teacher_root: str, out: str, params_file: str
) -> None:
    """Kendall's tau between proxy fitness (with and without weight inheritance) and final dev score."""
    if not (Path(search_dir) / "hall_of_fame.csv").is_file():
        raise EffbertError(f"{search_dir}/hall_of_fame.csv: missing; run the search stages first")
    params = load_params(params_file)
    inputs = QualityInputs(Path(search_dir), Path(supernet_dir), Path(corpus_dir), Path(data_root), Path(teacher_root))
    with stage_context("search_quality", "search_quality", params, PARAMS, [Path(out)]) as (run, (tmp,)):
        task = params.proxy_task
        run.consume(inputs.search_dir, "search/hall_of_fame", context="search")
        run.consume(inputs.supernet_dir, "supernet", context="model")
        run.consume(inputs.data_root / task, f"{task}/prepared")
        run.consume(inputs.teacher_root / task, f"{task}/teacher", context="teacher")
        measure_quality(params, inputs, tmp, run)
        run.log_artifact(tmp)


@dataclasses.dataclass(frozen=True)
class QualityInputs:
    """The paths the stage reads (given on the command line by workflow/optional/dvc.yaml)."""

    search_dir: Path
    supernet_dir: Path
    corpus_dir: Path
    data_root: Path
    teacher_root: Path


def _final_score(params: Params, arch_file: Path, inputs: QualityInputs, work: Path, bf16: bool) -> tuple[float, float]:
    """Final distillation of one architecture (general, then task KD on the proxy task): (dev score, best
    held-out score)."""
    from effbert.data.prepared import eval_splits, load_split
    from effbert.data.tasks import get_task
    from effbert.eval.evaluation import evaluate_dev
    from effbert.methods.efficientbert.distillation import general_student, student_architecture, task_student
    from effbert.models.teacher import load_tokenizer

    task = params.proxy_task
    general_dir, task_dir = work / "general", work / "task"
    for folder in (general_dir, task_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    seed_everything(params.seed)
    set_threads(params.final_distill.general.threads)
    architecture = student_architecture(str(arch_file), params.student)
    corpus = load_split(inputs.corpus_dir, "corpus")
    general_student(
        params,
        teacher_source(params),
        inputs.supernet_dir,
        architecture,
        corpus,
        general_dir,
        checkpoints=work / "checkpoints-general",
        callbacks=[],
        bf16=bf16,
    )
    seed_everything(params.seed)
    set_threads(params.final_distill.task.for_task(task).threads)
    data_dir = inputs.data_root / task
    result = task_student(
        params,
        task,
        general_dir,
        inputs.teacher_root / task,
        data_dir,
        task_dir,
        checkpoints=work / "checkpoints-task",
        callbacks=[],
        bf16=bf16,
    )
    spec = get_task(task)
    seed_everything(params.seed)
    model, tokenizer = result.student, load_tokenizer(str(task_dir))
    splits = eval_splits(spec, data_dir)
    evaluation = evaluate_dev(model, tokenizer, spec, splits, params.evaluate, device(), bf16=bf16)
    score = float(evaluation.record(task, "student")["score"])
    return score, float(result.outcome.best_score or 0.0)


def measure_quality(params: Params, inputs: QualityInputs, out_dir: Path, run: tracking.StageRun) -> dict[str, Any]:
    """Score the picked candidates three ways and write the rank correlations."""
    import pandas as pd

    from effbert.methods.efficientbert.search.loop import append_record, recover_records
    from effbert.methods.efficientbert.search.proxy import ProxyJob
    from effbert.methods.efficientbert.search.quality import pick_candidates

    seed_everything(params.seed)
    hall_of_fame = inputs.search_dir / "hall_of_fame.csv"
    table = pd.read_csv(hall_of_fame, keep_default_na=False, na_values=[""])
    picked = pick_candidates(table, params.search.quality_candidates)
    state = checkpoint_dir("search_quality", "candidates", params, PARAMS, [hall_of_fame])
    state.mkdir(parents=True, exist_ok=True)
    done = recover_records(state / "records.jsonl")
    base = ProxyJob.for_stage(
        params,
        teacher_source(params),
        inputs.supernet_dir,
        inputs.corpus_dir,
        inputs.data_root,
        inputs.teacher_root,
        state / "scratch",
        bf16=resolve_bf16(params, run),
    )
    for position, row in picked.iterrows():
        index = int(position)
        if index in done:
            continue
        record = _candidate_record(params, inputs, base, index, row, state)
        record["run_id"] = run.child_run(
            f"search_quality-candidate-{int(row['index']):04d}",
            {"architecture": record["architecture"]},
            {k: v for k, v in record.items() if isinstance(v, float) and math.isfinite(v)},
        )
        append_record(state / "records.jsonl", record)
        done[index] = record
        log.info("search_quality %d/%d: %s", len(done), len(picked), json.dumps(record))
    metrics = _write_quality(params, pd.DataFrame([done[i] for i in sorted(done)]), inputs.search_dir.name, out_dir)
    run.log_summary(metrics, out_dir / "quality.png")
    shutil.rmtree(state, ignore_errors=True)
    return metrics


def _candidate_record(
    params: Params, inputs: QualityInputs, base: Any, index: int, row: Any, state: Path
) -> dict[str, Any]:
    """One picked candidate's proxy fitness with and without inheritance, and its final dev score."""
    from effbert.methods.efficientbert.search.proxy import evaluate_candidate
    from effbert.methods.efficientbert.search.quality import FINAL_COLUMN
    from effbert.methods.efficientbert.search.space import parse_architecture_string

    job = base.candidate(int(row["index"]), str(row["architecture"]), str(row["fingerprint"]))
    inherit = evaluate_candidate(dataclasses.replace(job, inherit_weights=True))
    scratch = evaluate_candidate(dataclasses.replace(job, inherit_weights=False))
    hidden = params.student.hidden_size
    arch = parse_architecture_string(str(row["architecture"]), hidden, name=f"candidate-{int(row['index'])}")
    work = state / f"candidate-{index}"
    work.mkdir(exist_ok=True)
    final, heldout = _final_score(params, arch.save(work / "architecture.json"), inputs, work, base.bf16)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "index": index,
        "candidate": int(row["index"]),
        "rank": int(row["rank"]),
        "architecture": str(row["architecture"]),
        "search_fitness": float(row["fitness"]),
        "proxy_fitness_inherit": inherit["fitness"],
        "proxy_fitness_scratch": scratch["fitness"],
        FINAL_COLUMN: final,
        "final_heldout_score": heldout,
    }


def _write_quality(params: Params, frame: Any, search_stage: str, out_dir: Path) -> dict[str, Any]:
    """``quality.csv``, ``quality.png`` and ``metrics.json`` (Kendall's tau of each proxy against the final score)."""
    from effbert.methods.efficientbert.search.plots import quality_figure
    from effbert.methods.efficientbert.search.quality import FINAL_COLUMN, PROXY_COLUMNS, kendall_tau

    taus = {column: kendall_tau(frame[column].tolist(), frame[FINAL_COLUMN].tolist()) for column in PROXY_COLUMNS}
    frame.to_csv(out_dir / "quality.csv", index=False)
    figure = quality_figure(frame, PROXY_COLUMNS, FINAL_COLUMN, {k: v[0] for k, v in taus.items()})
    figure.savefig(out_dir / "quality.png", dpi=100)
    metrics = {
        "candidates": len(frame),
        "proxy_task": params.proxy_task,
        "kendall_tau_inherit": taus["proxy_fitness_inherit"][0],
        "kendall_p_inherit": taus["proxy_fitness_inherit"][1],
        "kendall_tau_scratch": taus["proxy_fitness_scratch"][0],
        "kendall_p_scratch": taus["proxy_fitness_scratch"][1],
        "search_stage": search_stage,
    }
    write_json(out_dir / "metrics.json", metrics)
    log.info(
        "Kendall tau (proxy vs final dev %s): with weight inheritance %.3f, without %.3f (%d candidates)",
        params.proxy_task,
        metrics["kendall_tau_inherit"],
        metrics["kendall_tau_scratch"],
        len(frame),
    )
    return metrics
