"""Stage ``warmup_kd``: warm up the weight-sharing supernet by distilling the pre-trained teacher on the corpus.

The supernet is the student frame of the ``student`` section with every layer holding ``max_ffn_units`` GELU MLP
units of full width H (paper: 6 layers x 4 units x 540). The teacher is ``finetune_teacher.model`` as pre-trained,
not fine-tuned; the objective is task-agnostic (attention scores + hidden states, section 4 of the reference). The
search stages and final distillation slice their students out of this supernet, so its checkpoint is what makes
their short proxy trainings informative (the paper's "warm-up knowledge distillation").

Outputs: the supernet (``save_pretrained``, with the trained ``fit_dense`` projection and the tokenizer) and a
report (metrics, loss history CSV + PNG). Checkpoints every ``warmup_kd.save_steps`` under ``.effbert/checkpoints``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import click

from effbert import tracking
from effbert.compute import seed_everything, set_threads
from effbert.models.teacher import teacher_source
from effbert.params import Params
from effbert.runtime import checkpoint_dir, load_params, params_option, resolve_bf16, stage_context

log = logging.getLogger(__name__)

PARAMS = ("seed", "bf16", "student", "warmup_kd", "finetune_teacher.model")
"""The params this stage reads (dvc.yaml lists the same keys; tests/test_code_deps.py checks it)."""


@click.command("warmup-kd")
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--model-out", required=True, type=click.Path(file_okay=False), help="Supernet directory to write.")
@click.option("--report-out", required=True, type=click.Path(file_okay=False), help="Metrics/history directory.")
@params_option
def command(corpus_dir: str, model_out: str, report_out: str, params_file: str) -> None:
    """Warm up the supernet: distil the pre-trained teacher into it on the corpus (attention + hidden)."""
    params = load_params(params_file)
    outs = [Path(model_out), Path(report_out)]
    with stage_context("warmup_kd", "warmup_kd", params, PARAMS, outs) as (run, (model_tmp, report_tmp)):
        run.consume(Path(corpus_dir), "corpus/prepared")
        warm_up(params, Path(corpus_dir), model_tmp, report_tmp, run)
        run.log_artifact(report_tmp)


def warm_up(
    params: Params, corpus_dir: Path, model_out: Path, report_dir: Path, run: tracking.StageRun
) -> dict[str, Any]:
    """Distil the supernet on the prepared corpus; write it to ``model_out`` and the report to ``report_dir``."""
    from transformers import AutoModel

    from effbert.data.prepared import load_split
    from effbert.distill.projection import save_projection
    from effbert.methods.efficientbert.distillation import (
        build_supernet,
        check_frame,
        distill_on_corpus,
        project_student,
    )
    from effbert.methods.efficientbert.supernet import param_count
    from effbert.models.teacher import load_tokenizer
    from effbert.training import metrics_callback
    from effbert.training.history import write_training_report

    hp = params.warmup_kd
    seed_everything(params.seed)
    set_threads(hp.threads)
    source = teacher_source(params)
    if Path(source).is_dir():
        run.log_dataset(f"teacher/{params.finetune_teacher.model}", Path(source), "pretrained_model")
    teacher, tokenizer = AutoModel.from_pretrained(source), load_tokenizer(source)
    check_frame(params.student, teacher.config)
    supernet = build_supernet(params.student, teacher, hp.init_embeddings)
    corpus = load_split(corpus_dir, "corpus")
    basis = None
    if hp.init_encoder == "teacher_projection":
        basis = project_student(supernet, teacher, tokenizer, corpus)
    checkpoints = checkpoint_dir("warmup_kd", "supernet", params, PARAMS, [corpus_dir])
    config = supernet.config
    log.info(
        "warm-up KD of a %d-layer H=%d supernet (%d units x %d per layer, %.2fM params) from %s",
        config.num_hidden_layers,
        config.hidden_size,
        params.student.max_ffn_units,
        config.hidden_size,
        param_count(supernet) / 1e6,
        params.finetune_teacher.model,
    )
    outcome, loss = distill_on_corpus(
        supernet,
        teacher,
        tokenizer,
        corpus,
        hp,
        seed=params.seed,
        checkpoints=checkpoints,
        callbacks=[metrics_callback(run.log_metrics)],
        bf16=resolve_bf16(params, run),
        projection_init=basis,
    )
    supernet.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    save_projection(loss, model_out)
    extra = {"supernet_params": param_count(supernet), "final_loss": outcome.last_logged("loss")}
    metrics = write_training_report(outcome, len(corpus), report_dir, extra)
    run.log_summary(metrics, report_dir / "history.png")
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
