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


def test_stage_three_scores_on_the_heldout_slice_or_the_train_rows_multitask_kd_left_out() -> None:
    import datasets
    import pytest

    from effbert.errors import EffbertError
    from effbert.methods.efficientbert.search.weight_sharing import scoring_rows
    from effbert.params import Stage3Params, WeightSharingKD

    train = datasets.Dataset.from_dict({"row": list(range(100))})
    heldout = datasets.Dataset.from_dict({"row": list(range(1000, 1020))})
    assert scoring_rows(train, heldout, Stage3Params())["row"] == heldout["row"]
    assert scoring_rows(train, heldout, Stage3Params(heldout_examples=5))["row"] == list(range(1000, 1005))
    tail = Stage3Params(score_rows="train_tail")  # multitask KD trains on the first 90 %: the official last 10 %
    assert scoring_rows(train, heldout, tail)["row"] == list(range(90, 100))
    whole = Stage3Params(score_rows="train_tail", multitask=WeightSharingKD(data_fraction=1.0))
    with pytest.raises(EffbertError, match="data_fraction < 1"):
        scoring_rows(train, heldout, whole)
