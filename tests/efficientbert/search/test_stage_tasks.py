"""Which tasks each search stage reads: the proxy task in stages 1 and 2; stage 3's multi-task KD over the paper's
8 GLUE tasks (WNLI left out) on the paper profile."""

from __future__ import annotations

from effbert import params as params_module
from effbert.stages.efficientbert.search import stage_tasks
from tests.conftest import ROOT


def test_the_paper_profile_multitask_kd_runs_the_papers_eight_glue_tasks() -> None:
    paper = params_module.load(ROOT / "params" / "paper.yaml")
    assert stage_tasks(paper, 1) == stage_tasks(paper, 2) == ["mnli"]
    assert sorted(stage_tasks(paper, 3)) == sorted(["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"])
