"""``effbert estimate``'s arithmetic against the paper's (reference sections 1.1 and 5), on the paper profile with
the official data sizes; and the command on the smoke profile with its step times measured."""

from __future__ import annotations

import math

import pytest

from effbert import params as params_module
from effbert.measure import cost
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def paper() -> tuple[params_module.Params, dict[str, cost.StageCost]]:
    params = params_module.load(ROOT / "params" / "paper.yaml")
    sizes = cost.data_sizes(params, {}, None)
    return params, {stage.stage: stage for stage in cost.plan(params, sizes)}


def test_task_stages_take_the_papers_steps_on_the_train_split_less_the_heldout_slice(paper) -> None:
    _, stages = paper
    mnli = cost.OFFICIAL_TRAIN_ROWS["mnli"] - 5_000  # the held-out slice: 5 % capped at 5,000 rows
    assert stages["finetune_teacher@mnli"].steps == 3 * math.ceil(mnli / 32)  # 3 epochs, global batch 4 x 8
    assert stages["final_distill@mnli"].steps == 10 * math.ceil(mnli / 32)
    assert stages["final_distill@cola"].steps == 50 * math.ceil((8_551 - 428) / 32)  # CoLA: 50 epochs
    official = 10 * cost.OFFICIAL_TRAIN_ROWS["mnli"] / 32
    assert stages["final_distill@mnli"].steps == pytest.approx(official, rel=0.02)


def test_corpus_stages_take_the_papers_optimisation_steps(paper) -> None:
    params, stages = paper
    official = 10 * cost.OFFICIAL_INSTANCES / 256  # 10 epochs of one instance per document, global batch 256
    for name in ("warmup_kd", "final_distill_general", "variant_general@tiny", "variant_general@plusplus"):
        assert stages[name].batch * stages[name].processes == 256
        assert stages[name].steps == pytest.approx(official, rel=0.02), name
    assert stages["search_stage3"].steps == pytest.approx(10 * cost.OFFICIAL_INSTANCES / 128, rel=0.02)
    packed = cost.corpus_sequences_estimate(0.0, 128)
    assert cost.paper_equivalent_epochs(10.0, packed) == pytest.approx(params.warmup_kd.epochs, rel=0.02)


def test_a_candidates_proxy_is_the_papers_two_short_trainings(paper) -> None:
    params, stages = paper
    stage1 = stages["search_stage1"]
    general = 0.02 * 6_000_000 / 128  # 1 epoch over 2 % of Wikipedia epoch 0, batch 128
    task = 3 * math.ceil(0.1 * (cost.OFFICIAL_TRAIN_ROWS["mnli"] - 5_000) / 128)  # 3 epochs over 10 % of MNLI
    assert stage1.steps == pytest.approx(general + task, rel=0.05)
    assert stage1.repeats == params.search.stage1.candidates and stage1.processes == 1


def test_multitask_kd_runs_the_eight_glue_tasks_and_methods_follow_their_recipes(paper) -> None:
    params, stages = paper
    eight = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
    rows = sum(
        math.ceil((cost.OFFICIAL_TRAIN_ROWS[t] - min(5_000, round(0.05 * cost.OFFICIAL_TRAIN_ROWS[t]))) * 0.9)
        for t in eight
    )
    assert stages["search_stage3 (multi-task)"].steps == 10 * math.ceil(rows / 128)
    assert "dynabert@squad_v1 (width)" not in stages and "fastbert@stsb" not in stages  # tasks they do not define
    assert stages["dynabert@mnli (depth)"].repeats == len(params.dynabert.widths) * len(params.dynabert.depths)


def test_the_variants_repeat_the_final_distillation_plus_without_general_kd(paper) -> None:
    _, stages = paper
    assert "variant_general@plus" not in stages  # EfficientBERT+ starts from stage 3's multi-task weights
    for model in ("student_plus", "student_tiny", "student_plusplus"):
        assert stages[f"variant_distill@{model}-mnli"].steps == stages["final_distill@mnli"].steps
    assert "variant_distill@student_plus-squad_v1" not in stages and "variant_distill@student_tiny-squad_v1" in stages


def test_estimate_prints_every_training_stage_with_measured_hours(tmp_path) -> None:
    result = run_cli(["effbert", "estimate", "--params", "params/smoke.yaml", "--steps", "1"], ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for stage in ("finetune_teacher@sst2", "warmup_kd", "search_stage3", "final_distill@squad_v1", "fastbert@mrpc"):
        assert stage in out, stage
    assert "device-hours" in out and "step kd:" in out and "prepared data: at most" in out
