"""The report's introduction: what was run (tasks, teacher, student frame, search) and how to read the row labels,
with a warning when the run used the bundled demo sample."""

from __future__ import annotations

from typing import Any

from effbert.params import Params
from effbert.report.sections.blocks import bullets, text
from effbert.report.sections.quality import on_sample_data


def intro_blocks(params: Params) -> list[dict[str, Any]]:
    """What the report is and how to read its row labels.

    Args:
        params: the run's params (``tasks``, ``finetune_teacher.model``, ``student``, ``search``, ``data``).
    """
    student = params.student
    blocks = [
        text(
            f"Tasks {', '.join(params.tasks)}; teacher {params.finetune_teacher.model}; student frame "
            f"{student.num_layers} layers, hidden {student.hidden_size}, {student.num_attention_heads} heads, "
            f"embedding {student.embedding_size}; search strategy {params.search.strategy} on {params.proxy_task}."
        ),
        bullets(
            [
                "ours, <split>, <data>: measured by this pipeline on the data named (our dev sets).",
                "paper, <split> (<source>): published numbers, each with the paper and table it comes from (see "
                "'Sources of the published rows'); other data, other splits (GLUE test server, SQuAD dev), other "
                "teachers and budgets.",
                "random init: a model built from its configuration only, used for size and speed, never for quality.",
            ]
        ),
    ]
    if any(on_sample_data(d) for d in (params.data.glue_dir, params.data.squad_dir)):
        blocks.append(
            text(
                "This run used the bundled demo sample (data/sample): its numbers show that the pipeline works; they "
                "are not comparable to the paper's (see data/sample/README.md, 'Not comparable to the paper').",
                style="warning",
            )
        )
    return blocks
