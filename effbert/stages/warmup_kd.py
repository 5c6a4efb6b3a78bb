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

from effbert import tracking
from effbert.distill.trainer import DistillationModule
from effbert.models.modeling_effbert import EffBertModel
from effbert.models.student_init import pca_token_table
from effbert.models.supernet import param_count
from effbert.params import Params
from effbert.stages import distillation
from effbert.stages.common import seed_everything, set_threads

log = logging.getLogger(__name__)


def run(params: Params, corpus_dir: Path, model_out: Path, report_dir: Path, stage: tracking.StageRun) -> dict:
    """Distil the supernet on the prepared corpus; write it to ``model_out`` and the report to ``report_dir``."""
    import datasets
    import torch

    hp = params.warmup_kd
    seed_everything(params.seed)
    set_threads(hp.threads)
    teacher, tokenizer = distillation.pretrained_teacher(params, stage)
    distillation.check_frame(params.student, teacher.config)
    config = distillation.student_supernet_config(params.student, vocab_size=teacher.config.vocab_size)
    supernet = EffBertModel(config)
    if hp.init_embeddings == "teacher_pca":
        teacher_table: Any = teacher.get_input_embeddings().weight
        table = pca_token_table(teacher_table, config.embedding_size, config.initializer_range)
        student_table: Any = supernet.get_input_embeddings().weight
        with torch.no_grad():
            student_table.copy_(table)
            student_table[config.pad_token_id] = 0.0  # the padding row stays zero, as at random init
    loss = distillation.criterion(config.hidden_size, teacher.config, "agnostic", hp)
    corpus: Any = datasets.load_from_disk(str(corpus_dir / "corpus"))
    checkpoints = distillation.kd_checkpoints(
        "warmup_kd", "supernet", params, ("seed", "student", "warmup_kd", "finetune_teacher.model"), corpus_dir
    )
    log.info(
        "warm-up KD of a %d-layer H=%d supernet (%d units x %d per layer, %.2fM params) from %s",
        config.num_hidden_layers,
        config.hidden_size,
        params.student.max_ffn_units,
        config.hidden_size,
        param_count(supernet) / 1e6,
        params.finetune_teacher.model,
    )
    module = DistillationModule(supernet, teacher, loss)
    figures = distillation.distill(
        module, tokenizer, corpus, stage=stage, hp=hp, seed=params.seed, checkpoints=checkpoints
    )
    supernet.save_pretrained(str(model_out))
    tokenizer.save_pretrained(str(model_out))
    distillation.save_projection(loss, model_out)
    metrics = distillation.write_report(
        figures,
        report_dir,
        stage,
        {"supernet_params": param_count(supernet), "final_loss": distillation.last_logged(figures["history"], "loss")},
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics
