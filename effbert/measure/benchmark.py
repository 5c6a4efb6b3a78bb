"""What ``effbert bench`` measures: latency of model pairs under the protocol of `effbert.measure.latency`, the
throughput of one knowledge-distillation step against its parts measured alone, and fp32 against bf16 autocast
(`effbert.measure.precision`).

:func:`run_benchmark` is the command's measurement set (a JSON-ready report), :func:`format_report` its tables.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effbert.errors import EffbertError
from effbert.measure.latency import (
    INPUT_SEED,
    MIN_RUNS,
    Device,
    compare_latency,
    config_int,
    default_device,
    machine_description,
    model_mode,
    rotated_times,
    shared_inputs,
    torch_threads,
)
from effbert.measure.size import model_params
from effbert.models.auto import load_encoder

TARGET_SPEEDUP = 6.5
"""Target: the compact efficientbert student is at least this much faster than BERT-base at batch 1 on CPU, judged on
`TARGET_PAIR`: BERT-base with the student's oneDNN linear kernel, so that the ratio measures the architecture, not
the kernel (on an AMD CPU, stock BERT-base's MKL multiplies are a third slower than oneDNN's)."""

TARGET_PAIR = "reference, same kernels"
"""The pair the batch-1 target is judged on (the ``reference`` pair, stock BERT-base, is printed beside it)."""


@dataclass(frozen=True)
class KDThroughputResult:
    """Throughput of one task-agnostic distillation step against its two parts measured alone (medians).

    Attributes:
        batch_size: sequences per step.
        seq_len: T.
        steps: timed repetitions of each of the three operations.
        warmup: untimed repetitions of each before them.
        threads: torch intra-op threads.
        device: where it ran.
        teacher_forward_ms: teacher forward with signal capture (``capture``), no grad.
        student_step_ms: student forward with signals + loss against cached teacher signals + backward + AdamW step.
        kd_step_ms: the whole online step: teacher ``capture`` then the student step on its fresh signals.
    """

    batch_size: int
    seq_len: int
    steps: int
    warmup: int
    threads: int
    device: str
    teacher_forward_ms: float
    student_step_ms: float
    kd_step_ms: float

    @property
    def kd_sequences_per_s(self) -> float:
        """Sequences per second of the distillation step."""
        return self.batch_size * 1e3 / self.kd_step_ms

    @property
    def separate_sequences_per_s(self) -> float:
        """Sequences per second if the teacher forward and the student step cost exactly their separate times."""
        return self.batch_size * 1e3 / (self.teacher_forward_ms + self.student_step_ms)

    @property
    def overhead_ratio(self) -> float:
        """``(teacher forward + student step) / KD step``: 1 means no overhead, < 1 means the KD step costs more."""
        return (self.teacher_forward_ms + self.student_step_ms) / self.kd_step_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus the derived throughputs and ratio."""
        return {
            **asdict(self),
            "kd_sequences_per_s": self.kd_sequences_per_s,
            "separate_sequences_per_s": self.separate_sequences_per_s,
            "overhead_ratio": self.overhead_ratio,
        }


def check_kd_pair(student: nn.Module, teacher: nn.Module) -> None:
    """Raise ValueError when EfficientBERT's distillation cannot pair the two (layer multiple, equal head counts)."""
    from effbert.distill import check_pair

    s_layers, t_layers = config_int(student, "num_hidden_layers"), config_int(teacher, "num_hidden_layers")
    s_heads, t_heads = config_int(student, "num_attention_heads"), config_int(teacher, "num_attention_heads")
    if s_layers is None or t_layers is None or s_heads is None or t_heads is None:
        raise ValueError("student and teacher need Hugging Face configs with num_hidden_layers / num_attention_heads")
    check_pair(s_layers, s_heads, t_layers, t_heads)


def measure_kd_throughput(
    student: nn.Module,
    teacher: nn.Module,
    batch_size: int = 8,
    seq_len: int = 128,
    *,
    warmup: int = 2,
    steps: int = 10,
    threads: int | None = None,
    device: Device = None,
    lr: float = 1e-4,
) -> KDThroughputResult:
    """Time one task-agnostic KD step against a teacher forward plus a student training step measured alone.

    The three operations run interleaved (rotating order per repetition) on the fixed inputs of :func:`make_inputs`:

    - teacher forward: ``capture(teacher, ...)`` (no grad; the teacher in eval mode);
    - student step: ``forward_with_signals(student, ...)``, ``DistillationLoss(task="agnostic")`` against teacher
      signals captured once beforehand, backward, ``AdamW.step()`` (the student in train mode);
    - KD step: a fresh teacher ``capture`` followed by the student step on its signals.

    The student is trained on a deep copy, so the caller's weights are untouched; the teacher is moved to ``device``
    in place and its training flag restored.

    Args:
        student: BERT-family student (its attention dispatches through transformers' AttentionInterface).
        teacher: BERT-family teacher; ``L_t`` a multiple of ``L_s`` and the same head count.
        batch_size: sequences per step.
        seq_len: T.
        warmup: untimed repetitions of each operation.
        steps: timed repetitions of each operation (medians are reported).
        threads: torch intra-op threads (None: torch's current setting).
        device: where to run (default: see :func:`default_device`).
        lr: AdamW learning rate.

    Returns:
        the :class:`KDThroughputResult`.

    Raises:
        ValueError: ``steps`` < 1, negative ``warmup``, or a pair the distillation loss cannot handle.
    """
    from effbert.distill import DistillationLoss, TeacherSignals, capture, forward_with_signals

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    check_kd_pair(student, teacher)
    target = default_device(device)
    trainee = copy.deepcopy(student).to(target)
    teacher.to(target)
    inputs = shared_inputs([trainee, teacher], batch_size, seq_len, target)
    s_hidden, t_hidden = config_int(trainee, "hidden_size"), config_int(teacher, "hidden_size")
    loss_fn = DistillationLoss(s_hidden or 0, t_hidden or 0, task="agnostic").to(target)
    optimizer = torch.optim.AdamW([*trainee.parameters(), *loss_fn.parameters()], lr=lr)

    def student_step(signals: TeacherSignals) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward_with_signals(trainee, **inputs), signals, inputs["attention_mask"])["loss"]
        loss.backward()
        optimizer.step()

    with torch_threads(threads) as used_threads, model_mode(teacher, False), model_mode(trainee, True):
        cached = capture(teacher, **inputs)
        operations: dict[str, Callable[[], object]] = {
            "teacher": lambda: capture(teacher, **inputs),
            "student": lambda: student_step(cached),
            "kd": lambda: student_step(capture(teacher, **inputs)),
        }
        times = rotated_times(operations, warmup, steps, target)
    return KDThroughputResult(
        batch_size=batch_size,
        seq_len=seq_len,
        steps=steps,
        warmup=warmup,
        threads=used_threads,
        device=str(target),
        teacher_forward_ms=statistics.median(times["teacher"]),
        student_step_ms=statistics.median(times["student"]),
        kd_step_ms=statistics.median(times["kd"]),
    )


def reference_models(architecture: str = "efficientbert", seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """The randomly initialised reference pair: the compact ``architecture`` student (12 heads) and BERT-base.

    BERT-base is Hugging Face ``BertModel(BertConfig())`` (bert-base-uncased: 12 layers, 768, 12 heads, 3072),
    built from the config without any download. Neither has a pooler. Initialisation is seeded without touching the
    global RNG state.
    """
    from transformers import BertConfig, BertModel

    from effbert.methods.efficientbert.architecture import load_architecture
    from effbert.methods.efficientbert.configuration_effbert import EffBertConfig
    from effbert.methods.efficientbert.modeling_effbert import EffBertModel

    config = EffBertConfig.from_architecture(load_architecture(architecture), num_attention_heads=12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = EffBertModel(config, add_pooling_layer=False)
        teacher = BertModel(BertConfig(), add_pooling_layer=False)
    return student, teacher


def _model_entry(name: str, model: nn.Module, source: str) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return {
        "name": name,
        "source": source,
        "class": type(model).__name__,
        "params": model_params(model),
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "heads": getattr(config, "num_attention_heads", None),
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }


def _validate(
    runs: int,
    warmup: int,
    batch_sizes: Sequence[int],
    seq_len: int,
    threads: int | None,
    student_dir: str | None,
    teacher_dir: str | None,
    skip_reference: bool,
    kd_batch: int,
    kd_steps: int,
) -> None:
    """Check the benchmark options; raise EffbertError naming the first bad one."""
    if runs < MIN_RUNS:
        raise EffbertError(f"--runs {runs}: the latency protocol needs at least {MIN_RUNS} timed runs")
    if warmup < 0:
        raise EffbertError(f"--warmup {warmup}: must be >= 0")
    if not batch_sizes or min(batch_sizes) < 1:
        raise EffbertError(f"--batch-sizes {list(batch_sizes)}: need one or more sizes >= 1")
    if seq_len < 1:
        raise EffbertError(f"--seq-len {seq_len}: must be >= 1")
    if threads is not None and threads < 1:
        raise EffbertError(f"--threads {threads}: must be >= 1")
    if kd_batch < 1 or kd_steps < 1:
        raise EffbertError(f"--kd-batch {kd_batch} / --kd-steps {kd_steps}: must be >= 1")
    if (student_dir is None) != (teacher_dir is None):
        raise EffbertError("--student and --teacher go together: give both model directories or neither")
    if skip_reference and student_dir is None:
        raise EffbertError("--skip-reference leaves nothing to measure without --student/--teacher")


Pair = tuple[str, dict[str, Any], nn.Module, dict[str, Any], nn.Module]
"""A measured pair: its name, the student's entry and model, the teacher's entry and model."""


def _pairs(student_dir: str | None, teacher_dir: str | None, skip_reference: bool) -> list[Pair]:
    """The reference pair (random efficientbert vs random BERT-base) unless skipped, then the directory pair."""
    pairs: list[Pair] = []
    if not skip_reference:
        student, teacher = reference_models()
        pairs.append(
            (
                "reference",
                _model_entry("efficientbert (random)", student, "architecture:efficientbert"),
                student,
                _model_entry("bert-base (random)", teacher, "transformers:BertConfig()"),
                teacher,
            )
        )
        pairs.append(same_kernels_pair(pairs[0]))
    if student_dir is not None and teacher_dir is not None:
        student, teacher = load_encoder(student_dir), load_encoder(teacher_dir)
        pairs.append(
            (
                "demo",
                _model_entry(Path(student_dir).name or student_dir, student, student_dir),
                student,
                _model_entry(Path(teacher_dir).name or teacher_dir, teacher, teacher_dir),
                teacher,
            )
        )
    return pairs


def same_kernels_pair(reference: Pair) -> Pair:
    """The reference pair with BERT-base's linear layers on the student's oneDNN kernel (a copy): how much of the
    speed-up is the kernel rather than the architecture."""
    from effbert.methods.efficientbert.kernels import use_fused_linears

    _, s_entry, student, t_entry, teacher = reference
    fused = use_fused_linears(copy.deepcopy(teacher))
    entry = {**t_entry, "name": "bert-base (random, oneDNN linears)", "linear_kernel": "onednn"}
    return (TARGET_PAIR, s_entry, student, entry, fused)


def _kd_pair(pairs: list[Pair]) -> Pair:
    """The pair the KD and precision measurements train: the directory pair when given, else the stock reference."""
    return [pair for pair in pairs if pair[0] != TARGET_PAIR][-1]


def _check_pairs(pairs: list[Pair], seq_len: int, kd: bool) -> None:
    """Fail before measuring anything: a KD pair the loss cannot handle, a sequence beyond a model's positions."""
    if kd:
        try:
            check_kd_pair(_kd_pair(pairs)[2], _kd_pair(pairs)[4])
        except ValueError as err:
            raise EffbertError(
                f"KD throughput and precision ({_kd_pair(pairs)[0]} pair): {err}; use --skip-kd --skip-precision"
            ) from None
    for _, _, s_model, _, t_model in pairs:
        positions = [p for p in (config_int(m, "max_position_embeddings") for m in (s_model, t_model)) if p]
        if positions and seq_len > min(positions):
            raise EffbertError(f"--seq-len {seq_len} exceeds the models' max_position_embeddings ({min(positions)})")


def _latency_rows(
    pairs: list[Pair], batch_sizes: Sequence[int], seq_len: int, timing: Mapping[str, Any], say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Every pair side by side at every batch size (``timing``: warmup, runs, rounds, device)."""
    rows = []
    for pair, s_entry, s_model, t_entry, t_model in pairs:
        for batch in batch_sizes:
            say(f"latency: {s_entry['name']} vs {t_entry['name']}, batch {batch}, seq {seq_len} ...")
            results = compare_latency({"student": s_model, "teacher": t_model}, batch, seq_len, **timing)
            student_result, teacher_result = results["student"], results["teacher"]
            rows.append(
                {
                    "pair": pair,
                    "batch_size": batch,
                    "student": s_entry,
                    "teacher": t_entry,
                    "student_latency": student_result.to_dict(),
                    "teacher_latency": teacher_result.to_dict(),
                    "speedup": teacher_result.median_ms / student_result.median_ms,
                }
            )
    return rows


def run_benchmark(
    *,
    runs: int = MIN_RUNS,
    warmup: int = 5,
    batch_sizes: Sequence[int] = (1, 8),
    seq_len: int = 128,
    threads: int | None = None,
    device: Device = None,
    student_dir: str | None = None,
    teacher_dir: str | None = None,
    skip_reference: bool = False,
    kd: bool = True,
    kd_batch: int = 8,
    kd_steps: int = 10,
    precision: bool = True,
    precision_batch: int = 16,
    precision_steps: int = 5,
    rounds: int = 4,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything ``effbert bench`` measures, as a JSON-ready report.

    Pairs: the reference pair (random compact efficientbert vs random BERT-base) unless ``skip_reference``, and the
    directory pair when ``student_dir`` and ``teacher_dir`` are given. Each pair is measured with
    :func:`compare_latency` at every batch size; speed-up = teacher median / student median. KD throughput
    (:func:`measure_kd_throughput`) and fp32 against bf16 autocast (`effbert.measure.precision.measure_precision`:
    fine-tuning and KD steps at ``precision_batch``, a forward at twice that) use the directory pair when given,
    else the reference pair.

    Raises:
        EffbertError: a bad option, a missing/unloadable model directory, a ``seq_len`` beyond a model's positions,
            or a KD pair the distillation loss cannot handle.
    """
    _validate(runs, warmup, batch_sizes, seq_len, threads, student_dir, teacher_dir, skip_reference, kd_batch, kd_steps)
    if precision and (precision_batch < 1 or precision_steps < 1):
        raise EffbertError(f"--precision-batch {precision_batch} / --precision-steps {precision_steps}: must be >= 1")
    say = progress or (lambda _message: None)
    try:
        target = default_device(device)
    except RuntimeError as err:
        raise EffbertError(f"--device {device!r}: {err}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise EffbertError(f"--device {device!r}: torch sees no CUDA device")
    pairs = _pairs(student_dir, teacher_dir, skip_reference)
    _check_pairs(pairs, seq_len, kd or precision)
    with torch_threads(threads) as used_threads:
        report: dict[str, Any] = {
            "protocol": {
                "statistic": "median",
                "runs": runs,
                "warmup": warmup,
                "rounds": rounds,
                "seq_len": seq_len,
                "batch_sizes": list(batch_sizes),
                "threads": used_threads,
                "device": str(target),
                "inputs": f"input_ids seeded ({INPUT_SEED}) within vocab, attention_mask ones, token_type_ids zeros",
            },
            "machine": machine_description(target),
            "target_speedup_batch1": TARGET_SPEEDUP,
            "latency": [],
            "kd_throughput": None,
            "precision": None,
        }
        timing = {"warmup": warmup, "runs": runs, "rounds": rounds, "device": target}
        report["latency"] = _latency_rows(pairs, batch_sizes, seq_len, timing, say)
        trained = _kd_pair(pairs)
        if kd:  # the directory pair when given
            report["kd_throughput"] = _kd_row(trained, kd_batch, seq_len, kd_steps, min(warmup, 2), target, say)
        if precision:
            report["precision"] = _precision_rows(trained, precision_batch, seq_len, precision_steps, target, say)
    reference = [r for r in report["latency"] if r["pair"] == TARGET_PAIR and r["batch_size"] == 1]
    if reference:
        report["target_met_batch1"] = reference[0]["speedup"] >= TARGET_SPEEDUP
    return report


def _kd_row(
    pair: Pair, batch: int, seq_len: int, steps: int, warmup: int, target: torch.device, say: Callable[[str], None]
) -> dict[str, Any]:
    """KD throughput of ``pair`` (see :func:`run_benchmark`)."""
    name, s_entry, s_model, t_entry, t_model = pair
    say(f"KD throughput: {s_entry['name']} from {t_entry['name']}, batch {batch}, seq {seq_len} ...")
    try:
        result = measure_kd_throughput(s_model, t_model, batch, seq_len, steps=steps, warmup=warmup, device=target)
    except ValueError as err:
        raise EffbertError(f"KD throughput ({name} pair): {err}") from None
    return {"pair": name, "student": s_entry, "teacher": t_entry, **result.to_dict()}


def _precision_rows(
    pair: Pair, batch: int, seq_len: int, steps: int, target: torch.device, say: Callable[[str], None]
) -> dict[str, Any]:
    """fp32 against bf16 autocast on ``pair`` (see :func:`run_benchmark`)."""
    from effbert.measure.precision import measure_precision, native_bf16_note

    name, s_entry, s_model, t_entry, t_model = pair
    say(f"precision: fp32 vs bf16 autocast, {t_entry['name']} (KD: {s_entry['name']}), batch {batch}, seq {seq_len}")
    try:
        rows = measure_precision(
            s_model, t_model, train_batch=batch, forward_batch=2 * batch, seq_len=seq_len, steps=steps, device=target
        )
    except ValueError as err:
        raise EffbertError(f"precision ({name} pair): {err}") from None
    return {
        "pair": name,
        "student": s_entry,
        "teacher": t_entry,
        "steps": steps,
        "native": native_bf16_note(target),
        "rows": [row.to_dict() for row in rows],
    }


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def format_report(report: Mapping[str, Any]) -> str:
    """The human-readable tables of a :func:`run_benchmark` report."""
    protocol, machine = report["protocol"], report["machine"]
    lines = [
        f"machine: {machine['cpu']} ({machine['usable_cores']} usable of {machine['logical_cores']} logical cores)"
        + (f", GPU {machine['gpu']}" if "gpu" in machine else ""),
        f"torch {machine['torch']}, transformers {machine['transformers']}, device {protocol['device']}, "
        f"threads {protocol['threads']}",
        f"protocol: median of {protocol['runs']} runs after {protocol['warmup']} warm-up, seq {protocol['seq_len']}, "
        f"interleaved in {protocol['rounds']} rounds; spread = p10-p90 ms",
        "",
    ]
    header = f"{'batch':>5}  {'student ms (p10-p90)':>24}  {'teacher ms (p10-p90)':>24}  {'speed-up':>8}"
    shown: str | None = None
    for row in report["latency"]:
        if row["pair"] != shown:  # one block per model pair
            shown = row["pair"]
            student, teacher = row["student"], row["teacher"]
            lines += [
                f"{shown} pair: student {student['name']} ({_millions(student['params'])} params), "
                f"teacher {teacher['name']} ({_millions(teacher['params'])} params)",
                header,
                "-" * len(header),
            ]
        s, t = row["student_latency"], row["teacher_latency"]
        s_ms = f"{s['median_ms']:.1f} ({s['p10_ms']:.1f}-{s['p90_ms']:.1f})"
        t_ms = f"{t['median_ms']:.1f} ({t['p10_ms']:.1f}-{t['p90_ms']:.1f})"
        lines.append(f"{row['batch_size']:>5}  {s_ms:>24}  {t_ms:>24}  {row['speedup']:>7.2f}x")
    if "target_met_batch1" in report:
        speedup = next(r["speedup"] for r in report["latency"] if r["pair"] == TARGET_PAIR and r["batch_size"] == 1)
        verdict = "met" if report["target_met_batch1"] else "NOT met"
        lines.append(
            f"target: efficientbert >= {report['target_speedup_batch1']:.1f}x faster than BERT-base at batch 1, "
            f"both on the same linear kernels: {speedup:.2f}x ({verdict})"
        )
    kd = report.get("kd_throughput")
    if kd:
        lines += [
            "",
            f"KD throughput ({kd['pair']} pair: {kd['student']['name']} from {kd['teacher']['name']}, "
            f"batch {kd['batch_size']}, seq {kd['seq_len']}, median of {kd['steps']} steps):",
            f"  teacher forward (capture)        {kd['teacher_forward_ms']:9.1f} ms",
            f"  student step (fwd+loss+bwd+opt)  {kd['student_step_ms']:9.1f} ms",
            f"  KD step                          {kd['kd_step_ms']:9.1f} ms  = {kd['kd_sequences_per_s']:.1f} seq/s "
            f"(separately: {kd['separate_sequences_per_s']:.1f} seq/s)",
            f"  ratio (teacher + student) / KD   {kd['overhead_ratio']:9.2f}  (1 = no overhead)",
        ]
    precision = report.get("precision")
    if precision:
        lines += [
            "",
            f"fp32 vs bf16 autocast ({precision['pair']} pair, teacher {precision['teacher']['name']}; "
            f"{precision['native']}; median of {precision['steps']} interleaved steps):",
            f"  {'operation':<14} {'batch':>5} {'seq':>4} {'fp32 ms':>9} {'bf16 ms':>9} {'fp32/bf16':>9}",
        ]
        lines += [
            f"  {row['operation']:<14} {row['batch_size']:>5} {row['seq_len']:>4} {row['fp32_ms']:>9.1f} "
            f"{row['bf16_ms']:>9.1f} {row['speedup']:>8.2f}x"
            for row in precision["rows"]
        ]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``report`` as JSON through a temporary sibling file and a rename; create parent directories."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
