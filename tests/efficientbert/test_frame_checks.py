"""The student frame against a teacher: head count, layer map and GELU flavour, each error naming its params key."""

from __future__ import annotations

import pytest
from transformers import BertConfig

from effbert.errors import EffbertError
from effbert.methods.efficientbert.distillation import check_frame
from effbert.params import StudentParams


def teacher_config(**overrides: object) -> BertConfig:
    return BertConfig(**{"num_hidden_layers": 12, "num_attention_heads": 12, **overrides})


def test_a_matching_frame_passes() -> None:
    check_frame(StudentParams(), teacher_config())  # HF BERT: exact erf GELU, the student default
    check_frame(StudentParams(gelu_approximate="tanh"), teacher_config(hidden_act="gelu_pytorch_tanh"))
    check_frame(StudentParams(gelu_approximate="tanh"), teacher_config(hidden_act="relu"))  # no GELU to match


@pytest.mark.parametrize(
    ("student", "teacher", "message"),
    [
        ({"num_attention_heads": 6, "hidden_size": 540}, {}, "student.num_attention_heads=6: the attention-score"),
        ({"num_layers": 5}, {}, "student.num_layers=5:"),
        ({"gelu_approximate": "tanh"}, {}, "student.gelu_approximate=tanh: the teacher's hidden_act is 'gelu'; set "),
        ({}, {"hidden_act": "gelu_new"}, "set student.gelu_approximate: tanh so teacher and student compute the"),
    ],
)
def test_a_mismatch_names_the_key(student: dict, teacher: dict, message: str) -> None:
    with pytest.raises(EffbertError) as err:
        check_frame(StudentParams(**student), teacher_config(**teacher))
    assert message in str(err.value) and "\n" not in str(err.value)
