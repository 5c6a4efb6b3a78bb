"""`effbert bench` and the latency protocol of effbert.measure.latency, on tiny models (no timed assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import BertConfig, BertModel

from effbert.cli import main
from effbert.measure import benchmark, latency, precision, size
from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
from effbert.methods.efficientbert.modeling_effbert import EffBertModel
from effbert.methods.efficientbert.supernet import param_count

VOCAB = 200


pytestmark = pytest.mark.usefixtures("single_torch_thread")  # tiny models: one thread (tests/conftest.py)


def tiny_student(heads: int = 4) -> EffBertModel:
    torch.manual_seed(0)
    config = EffBertConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=heads,
        vocab_size=VOCAB,
        embedding_size=16,
        max_position_embeddings=64,
    )
    return EffBertModel(config, add_pooling_layer=False)


def tiny_teacher() -> BertModel:
    torch.manual_seed(1)
    config = BertConfig(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=VOCAB + 50,
        max_position_embeddings=64,
    )
    return BertModel(config)


def test_make_inputs_fixed_and_within_vocab() -> None:
    first, second = latency.make_inputs(3, 16, VOCAB, "cpu"), latency.make_inputs(3, 16, VOCAB, "cpu")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert first[key].shape == (3, 16)
        assert torch.equal(first[key], second[key])
    assert int(first["input_ids"].min()) >= 0 and int(first["input_ids"].max()) < VOCAB
    assert bool((first["attention_mask"] == 1).all()) and bool((first["token_type_ids"] == 0).all())


def test_measure_latency_protocol_and_restores_state() -> None:
    model = tiny_student()
    model.train()
    torch.set_num_threads(2)
    result = latency.measure_latency(model, 2, 16, warmup=1, runs=20, threads=1, device="cpu")
    assert torch.get_num_threads() == 2  # restored
    assert model.training  # restored
    assert result.threads == 1 and result.device == "cpu"
    assert result.runs >= 20 and len(result.times_ms) == result.runs
    assert result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms <= result.max_ms
    assert (result.batch_size, result.seq_len, result.warmup) == (2, 16, 1)
    assert result.sequences_per_s > 0
    data = result.to_dict()
    assert data["median_ms"] == result.median_ms and len(data["times_ms"]) == result.runs
    assert data["machine"]["torch_threads"] == 1 and data["machine"]["cpu"]  # the machine next to the figure
    json.dumps(data)


def test_measure_latency_refuses_fewer_than_20_runs() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        latency.measure_latency(tiny_student(), 1, 8, runs=19, device="cpu")


def test_measure_latency_rejects_sequences_beyond_positions() -> None:
    with pytest.raises(ValueError, match="max_position_embeddings"):
        latency.measure_latency(tiny_student(), 1, 65, warmup=0, device="cpu")


def test_compare_latency_interleaves_every_model() -> None:
    results = latency.compare_latency(
        {"student": tiny_student(), "teacher": tiny_teacher()}, 1, 16, warmup=1, runs=20, rounds=3, device="cpu"
    )
    assert list(results) == ["student", "teacher"]
    for result in results.values():
        assert result.runs == 21  # ceil(20 / 3) per round, 3 rounds
        assert result.min_ms <= result.median_ms <= result.max_ms


def test_count_macs_matches_the_closed_form_for_bert() -> None:
    """Matmul MACs of BERT: per layer 4 T H^2 (Q, K, V, output) + 2 T^2 H (scores, weighted sum) + 2 T H I (MLP);
    the CPU attention kernel is counted too (torch's counter leaves it out by itself)."""
    model = tiny_teacher()
    model.pooler = None
    seq, hidden, inter, layers = 16, 64, 128, 4
    expected = layers * (4 * seq * hidden**2 + 2 * seq**2 * hidden + 2 * seq * hidden * inter)
    assert size.count_macs(model, seq) == expected
    assert size.count_macs(model, seq, batch_size=3) == 3 * expected
    model.train()
    size.count_macs(model, seq)
    assert model.training  # restored


def test_count_macs_of_the_student_counts_its_expression_mlp() -> None:
    """The compact EffBert: attention as in BERT plus its MLP units; the trigram embedding projection counts too."""
    student = tiny_student()
    config = student.config
    seq, hidden = 16, config.hidden_size
    attention = config.num_hidden_layers * (4 * seq * hidden**2 + 2 * seq**2 * hidden)
    macs = size.count_macs(student, seq)
    assert macs > attention + seq * 3 * config.embedding_size * hidden


def test_kd_throughput_positive_and_leaves_student_untouched() -> None:
    student, teacher = tiny_student(), tiny_teacher()
    teacher.train()
    before = {key: value.clone() for key, value in student.state_dict().items()}
    result = benchmark.measure_kd_throughput(student, teacher, 2, 16, warmup=1, steps=2, threads=1, device="cpu")
    assert min(result.teacher_forward_ms, result.student_step_ms, result.kd_step_ms) > 0
    assert result.kd_sequences_per_s > 0 and result.separate_sequences_per_s > 0 and result.overhead_ratio > 0
    assert (result.batch_size, result.seq_len, result.steps, result.threads) == (2, 16, 2, 1)
    assert all(torch.equal(before[key], value) for key, value in student.state_dict().items())
    assert teacher.training  # restored (it ran in eval mode)
    json.dumps(result.to_dict())


def test_precision_compares_each_operation_and_leaves_models_untouched() -> None:
    student, teacher = tiny_student(), tiny_teacher()
    teacher.train()
    before = {key: value.clone() for key, value in teacher.state_dict().items()}
    rows = precision.measure_precision(student, teacher, train_batch=2, forward_batch=3, seq_len=16, steps=2)
    assert [row.operation for row in rows] == list(precision.OPERATIONS)
    assert [row.batch_size for row in rows] == [2, 2, 3] and {row.seq_len for row in rows} == {16}
    for row in rows:
        assert row.fp32_ms > 0 and row.bf16_ms > 0 and row.speedup == pytest.approx(row.fp32_ms / row.bf16_ms)
    assert all(torch.equal(before[key], value) for key, value in teacher.state_dict().items())
    assert teacher.training and all(p.dtype == torch.float32 for p in teacher.parameters())
    json.dumps([row.to_dict() for row in rows])
    with pytest.raises(ValueError, match="head count"):
        precision.measure_precision(tiny_student(heads=6), teacher, steps=1)


def test_kd_pair_needs_equal_heads() -> None:
    with pytest.raises(ValueError, match="head count"):
        benchmark.check_kd_pair(tiny_student(heads=6), tiny_teacher())


def test_model_params_conventions() -> None:
    student, teacher = tiny_student(), tiny_teacher()
    assert size.model_params(student) == param_count(student)
    without_pooler = sum(p.numel() for p in teacher.parameters()) - sum(p.numel() for p in teacher.pooler.parameters())
    assert size.model_params(teacher) == without_pooler


def test_machine_description_cpu() -> None:
    info = latency.machine_description("cpu")
    assert info["device"] == "cpu" and info["cpu"] and info["logical_cores"] >= 1
    assert info["torch_threads"] == torch.get_num_threads() and info["torch"] == torch.__version__
    assert "gpu" not in info


def test_write_report_is_atomic(tmp_path: Path) -> None:
    path = benchmark.write_report({"a": 1}, tmp_path / "sub" / "bench.json")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bench_models")
    tiny_student().save_pretrained(root / "student")
    tiny_teacher().save_pretrained(root / "teacher")
    return root / "student", root / "teacher"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "19"], "at least 20 timed runs"),
        (["--student", "x"], "--student and --teacher go together"),
        (["--teacher", "x"], "--student and --teacher go together"),
        (["--skip-reference"], "nothing to measure"),
        (["--batch-sizes", "1,x"], "comma-separated integers"),
        (["--threads", "0"], "--threads 0"),
        (["--precision-steps", "0"], "--precision-steps 0: must be >= 1"),
    ],
)
def test_cli_option_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_missing_directory(tmp_path: Path, model_dirs: tuple[Path, Path]) -> None:
    student, _ = model_dirs
    result = CliRunner().invoke(main, ["bench", "--student", str(student), "--teacher", str(tmp_path / "nope")])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output


def test_cli_runs_directory_pair(tmp_path: Path, model_dirs: tuple[Path, Path]) -> None:
    student, teacher = model_dirs
    out = tmp_path / "bench.json"
    args = ["bench", "--student", str(student), "--teacher", str(teacher), "--skip-reference", "--threads", "1"]
    args += ["--batch-sizes", "1,2", "--seq-len", "16", "--warmup", "1", "--kd-batch", "2", "--kd-steps", "2"]
    args += ["--precision-steps", "1"]
    result = CliRunner().invoke(main, [*args, "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "demo" in result.output and "EffBert" not in result.output
    assert "KD throughput" in result.output and f"wrote {out}" in result.output
    report = json.loads(out.read_text())
    assert [row["batch_size"] for row in report["latency"]] == [1, 2]
    for row in report["latency"]:
        assert row["pair"] == "demo"
        medians = row["teacher_latency"]["median_ms"], row["student_latency"]["median_ms"]
        assert row["speedup"] == pytest.approx(medians[0] / medians[1])
        assert row["student_latency"]["runs"] >= 20 and row["teacher_latency"]["runs"] >= 20
        assert row["student"]["class"] == "EffBertModel" and row["teacher"]["class"] == "BertModel"
    assert report["protocol"]["threads"] == 1 and report["machine"]["device"] == "cpu"
    assert report["kd_throughput"]["overhead_ratio"] > 0
    assert "target_met_batch1" not in report  # no reference pair measured
    assert "fp32 vs bf16 autocast" in result.output
    rows = report["precision"]["rows"]
    assert [row["operation"] for row in rows] == ["finetune_step", "kd_step", "forward"]
    assert [row["batch_size"] for row in rows] == [16, 16, 32] and report["precision"]["native"]


def test_same_kernels_pair_gives_bert_the_students_linear_kernel() -> None:
    from effbert.methods.efficientbert.kernels import FusedLinear

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    student, teacher = torch.nn.Linear(2, 2), BertModel(config, add_pooling_layer=False)
    entry = {"name": "bert", "params": 1}
    name, _, s_model, t_entry, t_model = benchmark.same_kernels_pair(("reference", {}, student, entry, teacher))
    assert name == benchmark.TARGET_PAIR and s_model is student and t_model is not teacher
    assert t_entry["linear_kernel"] == "onednn" and entry["name"] == "bert"  # the stock entry is left alone
    assert any(type(m) is FusedLinear for m in t_model.modules())
    assert not any(type(m) is FusedLinear for m in teacher.modules())
