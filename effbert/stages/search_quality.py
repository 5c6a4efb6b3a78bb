"""Optional stage ``search_quality``: does warm-up KD make the proxy faithful? (the paper's central claim)

Takes ``search.quality_candidates`` candidates from a search stage's hall of fame (spread evenly over its ranks, so
the ranking is tested across the whole fitness range, not only among near-ties at the top), and for each:

1. its proxy fitness WITH weight inheritance (recomputed with :func:`effbert.stages.proxy.evaluate_candidate`, so
   the comparison does not depend on what ``search.inherit_weights`` was during the search);
2. its proxy fitness WITHOUT weight inheritance (random init, fresh ``fit_dense``);
3. its final dev score: the full final distillation of the DAG (``final_distill.general`` on the corpus from the
   supernet's slice, then ``final_distill.task`` on the proxy task, best held-out checkpoint) and the dev metric.

Reports Kendall's tau-b between each proxy column and the final dev score (``quality.csv``, ``metrics.json``,
``quality.png``). Each candidate is recorded as soon as it is finished (``records.jsonl`` in the stage's checkpoint
folder), so a killed run continues with the next unfinished candidate.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from effbert import tracking
from effbert.errors import EffbertError
from effbert.params import Params
from effbert.stages.common import checkpoint_dir, seed_everything
from effbert.stages.search import StageInputs, append_record, load_records

log = logging.getLogger(__name__)

PROXY_COLUMNS = ("proxy_fitness_inherit", "proxy_fitness_scratch")
FINAL_COLUMN = "final_dev_score"


def pick_candidates(hall_of_fame: Any, count: int) -> Any:
    """``count`` ok candidates at evenly spaced ranks of a hall of fame (best and worst included)."""
    ok = hall_of_fame[hall_of_fame["status"] == "ok"].sort_values("rank").reset_index(drop=True)
    if len(ok) < 3:
        raise EffbertError(f"search_quality needs at least 3 evaluated candidates, the hall of fame has {len(ok)}")
    count = min(count, len(ok))
    positions = sorted({round(i * (len(ok) - 1) / (count - 1)) for i in range(count)})
    return ok.iloc[positions].reset_index(drop=True)


def kendall_tau(x: list[float], y: list[float]) -> tuple[float, float]:
    """Kendall's tau-b and its two-sided p-value (NaN when undefined, e.g. constant scores)."""
    from scipy.stats import kendalltau

    result = kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def _final_score(
    params: Params, arch_file: Path, inputs: StageInputs, work: Path, stage: tracking.StageRun
) -> tuple[float, dict[str, Any]]:
    """Final distillation of one architecture (general, then task KD on the proxy task) and its dev score."""
    from effbert.stages import evaluate, final_distill

    task = params.search.proxy_task
    general_dir, task_dir = work / "general", work / "task"
    for folder in (general_dir, task_dir, work / "eval", work / "reports"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    final_distill.run_general(
        params, inputs.supernet_dir, str(arch_file), inputs.corpus_dir, general_dir, work / "reports", stage
    )
    shutil.rmtree(work / "reports")
    (work / "reports").mkdir()
    figures = final_distill.run_task(
        params,
        task,
        general_dir,
        inputs.teacher_root / task,
        inputs.data_root / task,
        task_dir,
        work / "reports",
        stage,
    )
    record = evaluate.run(params, task, "student", task_dir, inputs.data_root / task, work / "eval")
    return float(record["score"]), {"best_heldout_score": figures["best_heldout_score"], "dev": record["metrics"]}


def run(params: Params, search_dir: Path, inputs: StageInputs, out_dir: Path, stage: tracking.StageRun) -> dict:
    """Score the picked candidates three ways and write the rank correlations."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from effbert.models.teacher import resolve_source
    from effbert.params import section_digest
    from effbert.search.plots import quality_figure
    from effbert.search.space import parse_architecture_string
    from effbert.stages.proxy import ProxyJob, evaluate_candidate

    seed_everything(params.seed)
    table = pd.read_csv(search_dir / "hall_of_fame.csv", keep_default_na=False, na_values=[""])
    picked = pick_candidates(table, params.search.quality_candidates)
    digest = tracking.path_digest(search_dir / "hall_of_fame.csv")[:12]
    keys = ("seed", "student", "search.proxy", "search.proxy_task", "search.quality_candidates", "final_distill")
    state = checkpoint_dir("search_quality", "candidates", f"{section_digest(params, *keys)}-{digest}")
    state.mkdir(parents=True, exist_ok=True)
    done = load_records(state / "records.jsonl")
    task = params.search.proxy_task
    teacher_source = resolve_source(params.finetune_teacher.model, tracking.project_root())
    base = ProxyJob(
        index=0,
        architecture="",
        fingerprint="",
        supernet_dir=str(inputs.supernet_dir.resolve()),
        corpus_dir=str(inputs.corpus_dir.resolve()),
        data_dir=str((inputs.data_root / task).resolve()),
        task_teacher_dir=str((inputs.teacher_root / task).resolve()),
        teacher_source=teacher_source,
        task=task,
        proxy=params.search.proxy.model_dump(),
        seed=params.seed,
        scratch_dir=str(state / "scratch"),
    )
    for position, row in picked.iterrows():
        index = int(position)
        if index in done:
            continue
        job = dataclasses.replace(base, index=int(row["index"]), architecture=str(row["architecture"]))
        job = dataclasses.replace(job, fingerprint=str(row["fingerprint"]))
        inherit = evaluate_candidate(dataclasses.replace(job, inherit_weights=True))
        scratch = evaluate_candidate(dataclasses.replace(job, inherit_weights=False))
        hidden = params.student.hidden_size
        arch = parse_architecture_string(str(row["architecture"]), hidden, name=f"candidate-{int(row['index'])}")
        work = state / f"candidate-{index}"
        work.mkdir(exist_ok=True)
        arch_file = arch.save(work / "architecture.json")
        final, details = _final_score(params, arch_file, inputs, work, stage)
        record = {
            "index": index,
            "candidate": int(row["index"]),
            "rank": int(row["rank"]),
            "architecture": str(row["architecture"]),
            "search_fitness": float(row["fitness"]),
            "proxy_fitness_inherit": inherit["fitness"],
            "proxy_fitness_scratch": scratch["fitness"],
            FINAL_COLUMN: final,
            "final_heldout_score": details["best_heldout_score"],
        }
        record["run_id"] = stage.child_run(
            f"search_quality-candidate-{int(row['index']):04d}",
            {"architecture": record["architecture"]},
            {k: v for k, v in record.items() if isinstance(v, float) and math.isfinite(v)},
        )
        append_record(state / "records.jsonl", record)
        done[index] = record
        shutil.rmtree(work, ignore_errors=True)
        log.info("search_quality %d/%d: %s", len(done), len(picked), json.dumps(record))
    frame = pd.DataFrame([done[i] for i in sorted(done)])
    taus = {column: kendall_tau(frame[column].tolist(), frame[FINAL_COLUMN].tolist()) for column in PROXY_COLUMNS}
    frame.to_csv(out_dir / "quality.csv", index=False)
    figure = quality_figure(frame, PROXY_COLUMNS, FINAL_COLUMN, {k: v[0] for k, v in taus.items()})
    figure.savefig(out_dir / "quality.png", dpi=100)
    plt.close(figure)
    metrics = {
        "candidates": len(frame),
        "proxy_task": task,
        "kendall_tau_inherit": taus["proxy_fitness_inherit"][0],
        "kendall_p_inherit": taus["proxy_fitness_inherit"][1],
        "kendall_tau_scratch": taus["proxy_fitness_scratch"][0],
        "kendall_p_scratch": taus["proxy_fitness_scratch"][1],
        "search_stage": search_dir.name,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    stage.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)})
    stage.log_artifact(out_dir / "quality.png", "plots")
    log.info(
        "Kendall tau (proxy vs final dev %s): with weight inheritance %.3f, without %.3f (%d candidates)",
        task,
        metrics["kendall_tau_inherit"],
        metrics["kendall_tau_scratch"],
        len(frame),
    )
    shutil.rmtree(state, ignore_errors=True)
    return metrics


def check_inputs(search_dir: Path) -> None:
    """Fail clearly when the search stage's output is missing."""
    if not (search_dir / "hall_of_fame.csv").is_file():
        raise EffbertError(f"{search_dir}/hall_of_fame.csv: missing; run the search stages first")
