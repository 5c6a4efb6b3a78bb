"""Student I/O: Auto registration on `import effbert`, `effbert init-student`, resizing architectures, PCA init."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from effbert.cli import main
from effbert.methods.efficientbert.architecture import load_architecture
from effbert.methods.efficientbert.student_init import pca_token_table
from effbert.methods.efficientbert.supernet import param_count

AUTO_SCRIPT = """
import sys
{first}
assert "torch" not in sys.modules or "{first}".startswith("from transformers"), "import effbert pulled in torch"
{second}
from transformers import AutoConfig, AutoModel, AutoModelForQuestionAnswering, AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], num_labels=3)
qa = AutoModelForQuestionAnswering.from_pretrained(sys.argv[1])
body = AutoModel.from_pretrained(sys.argv[1])
print(type(model).__name__, type(qa).__name__, type(body).__name__, AutoConfig.for_model("effbert").model_type)
"""


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("init") / "student"
    result = CliRunner().invoke(
        main, ["init-student", "--arch", "efficientbert", "--hidden", "48", "--layers", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_init_student_writes_a_compact_random_model(student_dir: Path) -> None:
    config = json.loads((student_dir / "config.json").read_text())
    assert config["model_type"] == "effbert" and config["hidden_size"] == 48 and config["num_hidden_layers"] == 3
    assert config["ffn_units"] == [2, 2, 2] and config["ffn_widths"] == [48, 24, 16]  # paper layers 2, 4, 6
    assert config["max_ffn_units"] is None
    architecture = load_architecture(student_dir / "architecture.json")
    assert "max(x,tanh(x))" in architecture.exprs[1]  # the paper's layer 4


@pytest.mark.parametrize(
    ("first", "second"),
    [("import effbert", ""), ("from transformers import AutoConfig", "import effbert")],
    ids=["effbert-first", "transformers-first"],
)
def test_import_effbert_registers_the_auto_classes(student_dir: Path, first: str, second: str) -> None:
    script = AUTO_SCRIPT.format(first=first, second=second)
    result = subprocess.run(
        [sys.executable, "-c", script, str(student_dir)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        "EffBertForSequenceClassification",
        "EffBertForQuestionAnswering",
        "EffBertModel",
        "effbert",
    ]


def test_init_student_rejects_a_bad_frame(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    result = CliRunner().invoke(main, ["init-student", "--arch", "efficientbert", "--hidden", "100", "--out", str(out)])
    assert result.exit_code == 2
    assert "--arch efficientbert" in result.output and "num_attention_heads" in result.output
    assert not out.exists()


def test_resized_keeps_size_ids_and_maps_layers_uniformly() -> None:
    paper = load_architecture("efficientbert")
    half = paper.resized(264, 3)
    assert half.size_ids == [paper.size_ids[1], paper.size_ids[3], paper.size_ids[5]]
    assert half.widths == [264, 132, 88]
    double = paper.resized(360, 12)
    assert double.size_ids == [size for size in paper.size_ids for _ in range(2)]
    assert paper.resized(540) == paper
    with pytest.raises(ValueError, match="num_layers"):
        paper.resized(540, 0)


def test_paper_architecture_param_count() -> None:
    from effbert.methods.efficientbert.configuration_effbert import EffBertConfig

    config = EffBertConfig.from_architecture(load_architecture("efficientbert"))
    assert param_count(config) == 15_322_236
    assert param_count(config, fit_dense_size=768) == 15_737_724  # the paper's 15.74M


def test_pca_token_table_keeps_the_main_directions() -> None:
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(32, 32, generator=generator))[0]
    scales = torch.cat([torch.full((4,), 10.0), torch.full((28,), 0.1)])
    table = (torch.randn(500, 32, generator=generator) * scales) @ basis.T
    reduced = pca_token_table(table, 4, std=0.02)
    assert reduced.shape == (500, 4) and reduced.dtype == torch.float32
    assert abs(float(reduced.std()) - 0.02) < 1e-4
    # the 4 components explain the table: similarities between rows are kept
    centred = table - table.mean(dim=0)
    original = torch.nn.functional.cosine_similarity(centred[:50, None], centred[None, :50], dim=-1)
    kept = torch.nn.functional.cosine_similarity(reduced[:50, None].double(), reduced[None, :50].double(), dim=-1)
    assert torch.allclose(original.double(), kept, atol=0.05)
    assert torch.equal(reduced, pca_token_table(table, 4, std=0.02))  # deterministic
    with pytest.raises(ValueError):
        pca_token_table(table, 64, std=0.02)
