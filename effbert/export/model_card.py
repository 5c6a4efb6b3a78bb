"""The model card (``README.md``) of a final student: facts in, Markdown out (no file or tracking I/O).

A stage gathers :class:`ModelCardFacts` (architecture, parameter counts, teacher, data files and digests, labelled
metrics, lineage, optionally the ONNX export and the registry entry) and :func:`render_model_card` writes the card:
a YAML front matter block (Hugging Face model-card metadata, with a ``model-index`` of the metrics) followed by the
sections of :data:`SECTIONS`. Every metric row says what it is (whose number, which split, which data), so a demo
number is never mistaken for a paper result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from effbert.data.tasks import TaskSpec, get_task
from effbert.methods.efficientbert.architecture import Architecture
from effbert.methods.efficientbert.search.hall_of_fame import describe_layer
from effbert.methods.efficientbert.variants import VARIANT_LABELS, VARIANT_SUMMARIES

__all__ = [
    "SECTIONS",
    "TAGS",
    "DataFacts",
    "LatencyRow",
    "LineageFacts",
    "MetricRow",
    "ModelCardFacts",
    "OnnxFacts",
    "RegistryFacts",
    "TeacherFacts",
    "dataset_name",
    "describe_teacher",
    "render_model_card",
]

TAGS = ("effbert", "efficientbert", "knowledge-distillation")
"""Tags of every card's front matter."""

SECTIONS = (
    "What it is",
    "Architecture",
    "Parameters",
    "Teacher",
    "Data",
    "Metrics",
    "ONNX export",
    "Lineage",
    "Limitations",
    "How to load",
)
"""The card's second-level sections, in order (``ONNX export`` only when the facts have one)."""

NOT_COMPARABLE = 'data/sample/README.md, "Not comparable to the paper"'
"""Where the demo data's caveat is spelled out."""


@dataclass(frozen=True)
class MetricRow:
    """One measured number and what it is.

    Attributes:
        metric: metric id (``accuracy``, ``f1``, ``exact_match``, ``selection``).
        value: the value as computed (GLUE metrics in [0, 1], SQuAD EM/F1 in [0, 100]).
        split: ``dev`` (the task's dev set) or ``heldout`` (the held-out slice of train used for selection).
        label: whose number on what data, e.g. ``ours, GLUE SST-2 dev, full dev set (872 rows), demo data``.
    """

    metric: str
    value: float
    split: Literal["dev", "heldout"]
    label: str


@dataclass(frozen=True)
class TeacherFacts:
    """The teacher the student was distilled from.

    Attributes:
        pretrained_source: what the task teacher was fine-tuned from (``finetune_teacher.model``); also the teacher
            of the task-agnostic distillation.
        finetuned_dir: the fine-tuned task teacher's directory (``results/models/teacher/sst2``), None when unknown.
        description: its shape in words (:func:`describe_teacher`), None when unknown.
    """

    pretrained_source: str
    finetuned_dir: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class DataFacts:
    """The task data the student was trained, selected and evaluated on.

    Attributes:
        prepared_dir: the ``prepare_data`` output (``results/prepare_data/sst2``).
        prepared_digest: that directory's digest (its ``lineage.json``), or None.
        source: where the official files were read from (``data/sample/glue``) or the hub dataset.
        demo: True when the source is the bundled demo sample (``data/sample``).
        tokenizer: the tokenizer source used to prepare the data.
        files: ``(split, file, sha256)`` of every source file read.
        rows: rows (features) per prepared split.
        train_limit: cap on training examples (``data.max_train_examples``), None = all.
        max_seq_length: tokens per input; longer inputs are truncated (SQuAD: split into windows).
    """

    prepared_dir: str
    prepared_digest: str | None
    source: str
    demo: bool
    tokenizer: str
    files: tuple[tuple[str, str, str], ...]
    rows: dict[str, int]
    train_limit: int | None
    max_seq_length: int


@dataclass(frozen=True)
class LineageFacts:
    """Where the model came from.

    Attributes:
        git_commit: commit of the code that wrote the card (``-dirty`` when the tree differed).
        code_digest: digest of the effbert sources.
        runs: ``(what, MLflow run id)`` pairs, e.g. ``("final_distill@sst2 (trained this model)", "7af5...")``.
        upstream_run_ids: runs of the inputs of the training stage.
        model_digest: digest of the trained model directory (its ``lineage.json``), or None before it exists.
    """

    git_commit: str
    code_digest: str
    runs: tuple[tuple[str, str], ...]
    upstream_run_ids: tuple[str, ...] = ()
    model_digest: str | None = None


@dataclass(frozen=True)
class LatencyRow:
    """Median latency of PyTorch and ONNX Runtime at one shape (`effbert.measure.latency` protocol).

    Attributes:
        batch_size: B.
        seq_len: T.
        pytorch_ms: PyTorch median.
        onnxruntime_ms: ONNX Runtime median.
    """

    batch_size: int
    seq_len: int
    pytorch_ms: float
    onnxruntime_ms: float


@dataclass(frozen=True)
class OnnxFacts:
    """The ONNX export and its checks.

    Attributes:
        file: where the graph is, relative to the model directory (``../model.onnx``).
        opset: ONNX opset.
        exporter: how it was exported.
        max_abs_diff: largest |ONNX - PyTorch| over every output on the compared rows.
        tolerance: the largest difference accepted.
        rows: real dev rows compared.
        latency: one row per batch size.
        runs: timed runs per model and shape.
        threads: intra-op threads of both runtimes.
        device: where both ran (``cpu``).
        machine: the CPU model.
    """

    file: str
    opset: int
    exporter: str
    max_abs_diff: float
    tolerance: float
    rows: int
    latency: tuple[LatencyRow, ...]
    runs: int
    threads: int
    device: str
    machine: str


@dataclass(frozen=True)
class RegistryFacts:
    """The model's entry in the MLflow model registry.

    Attributes:
        name: registered model name.
        alias: alias of this version.
    """

    name: str
    alias: str

    @property
    def uri(self) -> str:
        """``models:/<name>@<alias>``."""
        return f"models:/{self.name}@{self.alias}"


@dataclass(frozen=True)
class ModelCardFacts:
    """Everything a card states.

    Attributes:
        name: the model's name (title of the card), e.g. ``effbert-sst2``.
        task: task id.
        model_class: the transformers class (``EffBertForSequenceClassification``).
        architecture: the architecture the model runs.
        num_heads: attention heads.
        embedding_size: width of the token table (before the trigram projection).
        vocab_size: tokens in the vocabulary.
        max_position_embeddings: positions.
        type_vocab_size: segments.
        labels: class labels by id (empty for regression and span QA).
        params_with_embeddings: paper convention, embeddings included (no pooler, task head or fit_dense).
        params_without_embeddings: the same without the embedding block.
        params_total: every parameter of the saved task model (pooler and head included).
        teacher: the teacher.
        data: the data.
        metrics: labelled metric rows.
        lineage: run ids and digests.
        onnx: the ONNX export, None before there is one.
        registry: the registry entry, None before there is one.
        notes: extra sentences for the metrics section (e.g. where the dev metrics are).
        method: the compression method that made the model (``efficientbert``, ``tinybert``, ...).
        num_layers: transformer layers.
        hidden_size: hidden size H.
        intermediate_size: feed-forward width of a BERT-family model (None for an EffBert student).
        variant: the EfficientBERT variant (``plus``, ``tiny``, ``plusplus``) the student is, None for the main one.
    """

    name: str
    task: str
    model_class: str
    architecture: Architecture | None
    num_heads: int
    embedding_size: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    labels: tuple[str, ...]
    params_with_embeddings: int
    params_without_embeddings: int
    params_total: int
    teacher: TeacherFacts
    data: DataFacts
    metrics: tuple[MetricRow, ...]
    lineage: LineageFacts
    onnx: OnnxFacts | None = None
    registry: RegistryFacts | None = None
    notes: tuple[str, ...] = field(default=())
    method: str = "efficientbert"
    num_layers: int = 0
    hidden_size: int = 0
    intermediate_size: int | None = None
    variant: str | None = None


def dataset_name(spec: TaskSpec) -> str:
    """Display name of a task's benchmark: ``GLUE SST-2``, ``SQuAD v1.1``."""
    if spec.folder is not None:
        return f"GLUE {spec.folder}"
    return f"SQuAD {Path(spec.train_file).stem.removeprefix('train-')}"


def _pipeline_tag(spec: TaskSpec) -> str:
    return "question-answering" if spec.is_squad else "text-classification"


def _millions(count: int) -> str:
    return f"{count:,} ({count / 1e6:.2f}M)"


def _front_matter(facts: ModelCardFacts, spec: TaskSpec) -> str:
    hub_dataset, hub_config = spec.hub
    results = [
        {
            "task": {"type": _pipeline_tag(spec)},
            "dataset": {
                "name": f"{dataset_name(spec)} ({'dev' if row.split == 'dev' else 'held-out slice of train'})",
                "type": hub_dataset,
                **({"config": hub_config} if hub_config else {}),
                "split": "validation" if row.split == "dev" else "train (held-out slice)",
            },
            "metrics": [{"type": row.metric, "value": float(row.value), "name": row.label}],
        }
        for row in facts.metrics
    ]
    meta = {
        "library_name": "transformers",
        "pipeline_tag": _pipeline_tag(spec),
        "language": ["en"],
        "tags": list(TAGS) if facts.method == "efficientbert" else ["effbert", facts.method, "compression-baseline"],
        "datasets": [hub_dataset],
        "metrics": list(spec.metrics),
        "teacher": facts.teacher.pretrained_source,
        "model-index": [{"name": facts.name, "results": results}],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


METHOD_SUMMARIES = {
    "tinybert": "TinyBERT (Jiao et al., 2020): a narrow BERT distilled task-agnostically from the pre-trained "
    "teacher (embeddings, attention scores, hidden states), then on the task in two steps (intermediate layers, then "
    "predictions with soft cross-entropy)",
    "theseus": "BERT-of-Theseus (Xu et al., 2020): successor layers, each replacing a group of consecutive layers of "
    "the fine-tuned teacher, trained by progressive module replacement on the task loss, then fine-tuned alone",
    "dynabert": "DynaBERT (Hou et al., 2020): the fine-tuned teacher rewired by head and neuron importance and "
    "distilled into one model whose width and depth sub-networks all work; this directory holds the full-size model "
    "(`dynabert.json` lists the sub-network grid; `effbert dynabert-extract` writes one as its own model)",
    "fastbert": "FastBERT (Liu et al., 2020): the fine-tuned teacher with a classifier after every layer, trained by "
    "self-distillation from the final classifier; inference exits at the first layer whose prediction's normalised "
    "entropy is under the `speed` threshold",
}
"""A compared method's model in one sentence (the card's "What it is")."""


def _what_it_is(facts: ModelCardFacts, spec: TaskSpec) -> list[str]:
    kind = {"span": "extractive question answering", "regression": "sentence-pair regression"}.get(
        spec.kind, "sequence classification"
    )
    if facts.method != "efficientbert":
        return [
            f"A {kind} model for {dataset_name(spec)} made by {METHOD_SUMMARIES.get(facts.method, facts.method)}; "
            "re-implemented by effbert and trained from the same fine-tuned teacher and prepared data as the "
            "EfficientBERT student it is compared with.",
            "",
            f"Class: `{facts.model_class}`; it loads through transformers' Auto classes once `effbert` is imported.",
        ]
    return [
        f"A compact EfficientBERT student (Dong et al., 2021, re-implemented by effbert) for {kind} on "
        f"{dataset_name(spec)}: the transformer layers' feed-forward networks were found by EfficientBERT's "
        "search over MLP expressions and sizes, and the weights were learned by knowledge distillation, first "
        "task-agnostic from the pre-trained teacher, then on the task from its fine-tuned teacher (attention, "
        "hidden states and predictions).",
        *(["", f"This is {VARIANT_SUMMARIES[facts.variant]} (the paper's section 3.6)."] if facts.variant else []),
        "",
        f"Class: `{facts.model_class}` (`model_type: effbert`); it loads through transformers' Auto classes once "
        "`effbert` is imported.",
    ]


def _bert_architecture(facts: ModelCardFacts) -> list[str]:
    return [
        f"- {facts.num_layers} transformer layers, hidden size H = {facts.hidden_size}, {facts.num_heads} attention "
        f"heads, feed-forward width {facts.intermediate_size} (BERT layers, post-LayerNorm).",
        f"- Embedding: a {facts.vocab_size:,} x {facts.embedding_size} token table, learned position "
        f"({facts.max_position_embeddings}) and segment ({facts.type_vocab_size}) embeddings and a LayerNorm.",
    ]


def _architecture(facts: ModelCardFacts, spec: TaskSpec) -> list[str]:
    arch = facts.architecture
    if arch is None:
        return _bert_architecture(facts)
    hidden = arch.hidden_size
    head_size = f" of size {hidden // facts.num_heads}" if hidden % facts.num_heads == 0 else ""
    if spec.is_squad:
        head = "a linear span head: a start and an end logit per token"
    elif spec.kind == "regression":
        head = "a pooler (dense + tanh on [CLS]), dropout and a linear regressor (one score)"
    else:
        labels = ", ".join(f"`{label}`" for label in facts.labels)
        head = f"a pooler (dense + tanh on [CLS]), dropout and a linear classifier over the labels {labels} (by id)"
    lines = [
        f"- {arch.num_layers} transformer layers, hidden size H = {hidden}, {facts.num_heads} attention "
        f"heads{head_size} (BERT self-attention, post-LayerNorm). Architecture `{arch.name}`.",
        f"- Embedding: MobileBERT-style trigram token embedding: the {facts.embedding_size}-d embeddings of tokens "
        f"i-1, i and i+1 are concatenated ({3 * facts.embedding_size}) and projected to H; plus learned position "
        f"({facts.max_position_embeddings}) and segment ({facts.type_vocab_size}) embeddings and a LayerNorm. "
        f"Vocabulary: {facts.vocab_size:,} tokens.",
        "- Feed-forward part of each layer: a stack of searched MLP units, each computing "
        "h <- LayerNorm(h + dropout(f(h))) with the layer's formula f (W1 maps H to the unit width, W2 back; "
        "`s×(H/r)` means s units of width H/r, and ⊙ is the element-wise product):",
        "",
        "| layer | units × width | f(x) | expression |",
        "|---|---|---|---|",
    ]
    for index, layer in enumerate(arch.layers, start=1):
        lines.append(f"| {index} | {layer.units} × {layer.width} | `{describe_layer(layer.expr)}` | `{layer.expr}` |")
    return [*lines, "", f"- Task head: {head}."]


def _parameters(facts: ModelCardFacts) -> list[str]:
    return [
        "| count | parameters | convention |",
        "|---|---|---|",
        f"| encoder with embeddings | {_millions(facts.params_with_embeddings)} | the paper's convention: "
        "embeddings, attention and MLP units; no pooler, no task head, no fit_dense |",
        f"| encoder without embeddings | {_millions(facts.params_without_embeddings)} | attention and MLP units only |",
        f"| saved task model | {_millions(facts.params_total)} | every parameter in `model.safetensors` (pooler and "
        "task head included) |",
        "",
        "The distillation projection `fit_dense` (H to the teacher's hidden size) is used only while distilling; it "
        "is not part of this task model and is counted in none of the rows above.",
    ]


def describe_teacher(config: Mapping[str, Any]) -> str:
    """A teacher's shape in words from its ``config.json`` mapping: ``bert, 6 layers, hidden size 384, 12 heads``."""
    parts = [str(config.get("model_type", "unknown model type"))]
    if "num_hidden_layers" in config:
        parts.append(f"{config['num_hidden_layers']} layers")
    if "hidden_size" in config:
        parts.append(f"hidden size {config['hidden_size']}")
    if "num_attention_heads" in config:
        parts.append(f"{config['num_attention_heads']} heads")
    return ", ".join(parts)


def _teacher(facts: ModelCardFacts) -> list[str]:
    t = facts.teacher
    where = f"`{t.finetuned_dir}`" if t.finetuned_dir else "the task's fine-tuned teacher (directory not recorded)"
    return [
        f"- Task distillation: from {where}" + (f" ({t.description})" if t.description else "") + ".",
        f"- That teacher was fine-tuned on this task's training data from `{t.pretrained_source}`, which is also "
        "the teacher of the task-agnostic distillation.",
    ]


def _data(facts: ModelCardFacts, spec: TaskSpec) -> list[str]:
    d = facts.data
    hub_dataset, hub_config = spec.hub
    origin = "the bundled demo sample (see Limitations)" if d.demo else "the official files"
    limit = f"; training examples capped at {d.train_limit:,}" if d.train_limit is not None else ""
    lines = [
        f"- Task: {dataset_name(spec)} (datasets hub: `{hub_dataset}`"
        + (f", `{hub_config}`" if hub_config else "")
        + f"), read from `{d.source}`: {origin}{limit}.",
        f"- Prepared data: `{d.prepared_dir}`"
        + (f" (digest `{d.prepared_digest}`)" if d.prepared_digest else "")
        + f", tokenised with `{d.tokenizer}`, at most {d.max_seq_length} tokens per input. The held-out slice is "
        "cut from train (checkpoint selection); dev is used for evaluation only.",
        "- Rows per prepared split: " + ", ".join(f"{split} {count:,}" for split, count in d.rows.items()) + ".",
        "",
        "| split | source file | sha256 |",
        "|---|---|---|",
    ]
    lines += [f"| {split} | `{path}` | `{digest}` |" for split, path, digest in d.files]
    return lines


def _metrics(facts: ModelCardFacts) -> list[str]:
    lines = ["| metric | value | what it is |", "|---|---|---|"]
    lines += [f"| {row.metric} | {row.value:.4f} | {row.label} |" for row in facts.metrics]
    if not facts.metrics:
        lines = ["No metrics recorded."]
    return [*lines, *(["", *facts.notes] if facts.notes else [])]


def _onnx(onnx: OnnxFacts) -> list[str]:
    verdict = "passed" if onnx.max_abs_diff <= onnx.tolerance else "FAILED"
    lines = [
        f"- File: `{onnx.file}` (opset {onnx.opset}, {onnx.exporter}); inputs `input_ids`, `attention_mask`, "
        "`token_type_ids` (int64, dynamic batch and sequence axes).",
        f"- Parity: max |ONNX Runtime - PyTorch| = {onnx.max_abs_diff:.2e} over {onnx.rows} real dev rows "
        f"(tolerance {onnx.tolerance:.0e}: {verdict}).",
        f"- Latency (effbert.measure.latency protocol: median of {onnx.runs} runs, interleaved; {onnx.device}, "
        f"{onnx.threads} intra-op threads, {onnx.machine}):",
        "",
        "| batch | sequence | PyTorch ms | ONNX Runtime ms | PyTorch / ONNX Runtime |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.batch_size} | {row.seq_len} | {row.pytorch_ms:.2f} | {row.onnxruntime_ms:.2f} | "
        f"{row.pytorch_ms / row.onnxruntime_ms:.2f} |"
        for row in onnx.latency
    ]
    return lines


def _lineage(facts: ModelCardFacts) -> list[str]:
    lin = facts.lineage
    lines = [f"- {what}: MLflow run `{run_id}`" for what, run_id in lin.runs]
    if lin.upstream_run_ids:
        lines.append("- Upstream runs (inputs of training): " + ", ".join(f"`{r}`" for r in lin.upstream_run_ids))
    if lin.model_digest:
        lines.append(f"- Trained model directory digest: `{lin.model_digest}`")
    lines += [
        f"- Code: git commit `{lin.git_commit}`, effbert source digest `{lin.code_digest}`",
        f"- `effbert lineage {lin.runs[0][1]}` walks the chain of runs back to the data."
        if lin.runs
        else "- No MLflow run recorded.",
    ]
    return lines


def _limitations(facts: ModelCardFacts) -> list[str]:
    lines = []
    if facts.data.demo:
        lines.append(
            f"- **Not comparable to the paper.** Trained and evaluated on the bundled demo sample (`data/sample`): "
            f"see {NOT_COMPARABLE}. These numbers check that the pipeline works; they are not results."
        )
    if facts.data.train_limit is not None:
        lines.append(f"- Trained on at most {facts.data.train_limit:,} training examples of the task.")
    lines += [
        f"- English only; inputs longer than {facts.data.max_seq_length} tokens are truncated"
        + (" (contexts are split into overlapping windows)." if get_task(facts.task).is_squad else "."),
        "- Distilled from one teacher: it inherits that teacher's errors and biases and is usually less accurate.",
        "- Checkpoints were selected on a held-out slice of train, never on dev; dev numbers are single runs "
        "(one seed), without confidence intervals.",
        "- Not evaluated for robustness, fairness or out-of-domain text; do not use it for decisions about people.",
    ]
    return lines


def _how_to_load(facts: ModelCardFacts, spec: TaskSpec) -> list[str]:
    if spec.is_squad:
        auto, call = (
            "AutoModelForQuestionAnswering",
            'inputs = tokenizer("Who wrote it?", "It was written by Ada.", return_tensors="pt")\n'
            "out = model(**inputs)\n"
            "start, end = out.start_logits.argmax(-1), out.end_logits.argmax(-1)",
        )
        onnx_inputs = 'tokenizer(["Who wrote it?"], ["It was written by Ada."], return_tensors="np")'
        frame = 'pd.DataFrame({"question": ["Who wrote it?"], "context": ["It was written by Ada."]})'
    else:
        auto, call = (
            "AutoModelForSequenceClassification",
            'inputs = tokenizer(["first text"], return_tensors="pt")\nlabel_id = model(**inputs).logits.argmax(-1)',
        )
        onnx_inputs = 'tokenizer(["first text", "a second, longer text"], padding=True, return_tensors="np")'
        frame = 'pd.DataFrame({"text_a": ["first text", "a second, longer text"]})'
    outputs = ", ".join(f'"{name}"' for name in (("start_logits", "end_logits") if spec.is_squad else ("logits",)))
    lines = [
        "PyTorch (`model_dir` is the directory holding this card):",
        "",
        "```python",
        "import effbert  # registers the EffBert classes with transformers' Auto classes",
        f"from transformers import {auto}, AutoTokenizer",
        "",
        f"model = {auto}.from_pretrained(model_dir).eval()",
        "tokenizer = AutoTokenizer.from_pretrained(model_dir)",
        call,
        "```",
    ]
    if facts.onnx is not None:
        lines += [
            "",
            f"ONNX Runtime (no PyTorch needed; the graph is `{facts.onnx.file}` relative to this directory):",
            "",
            "```python",
            "import onnxruntime as ort",
            "from transformers import AutoTokenizer",
            "",
            f'session = ort.InferenceSession(f"{{model_dir}}/{facts.onnx.file}", providers=["CPUExecutionProvider"])',
            "tokenizer = AutoTokenizer.from_pretrained(model_dir)",
            f"enc = {onnx_inputs}",
            'feed = {name: enc[name].astype("int64") for name in ("input_ids", "attention_mask", "token_type_ids")}',
            f"outputs = session.run([{outputs}], feed)",
            "```",
        ]
    if facts.registry is not None:
        lines += [
            "",
            f"MLflow model registry (`{facts.registry.name}`, alias `{facts.registry.alias}`; text in, "
            + ("answers" if spec.is_squad else "labels")
            + " out):",
            "",
            "```python",
            "import mlflow, pandas as pd",
            "",
            f'model = mlflow.pyfunc.load_model("{facts.registry.uri}")',
            f"model.predict({frame})",
            "```",
        ]
    return lines


def render_model_card(facts: ModelCardFacts) -> str:
    """The Markdown model card of ``facts``: YAML front matter, a title, then :data:`SECTIONS`.

    Args:
        facts: what the card states.

    Returns:
        The card's text (ends with a newline).

    Raises:
        ParamsError: ``facts.task`` is not a known task.
    """
    spec = get_task(facts.task)
    body: list[tuple[str, list[str]]] = [
        ("What it is", _what_it_is(facts, spec)),
        ("Architecture", _architecture(facts, spec)),
        ("Parameters", _parameters(facts)),
        ("Teacher", _teacher(facts)),
        ("Data", _data(facts, spec)),
        ("Metrics", _metrics(facts)),
    ]
    if facts.onnx is not None:
        body.append(("ONNX export", _onnx(facts.onnx)))
    body += [
        ("Lineage", _lineage(facts)),
        ("Limitations", _limitations(facts)),
        ("How to load", _how_to_load(facts, spec)),
    ]
    made_by = "EfficientBERT student" if facts.method == "efficientbert" else f"{facts.method} model"
    if facts.variant is not None:
        made_by = f"{VARIANT_LABELS[facts.variant]} student"
    parts = [_front_matter(facts, spec), f"# {facts.name}: {made_by} for {dataset_name(spec)}", ""]
    for title, lines in body:
        parts += [f"## {title}", "", *lines, ""]
    return "\n".join(parts)
