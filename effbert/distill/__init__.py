"""Knowledge distillation shared by the methods: teacher signal capture (`teacher_signals`), the losses
(`losses`), the student + objective as one trainable module (`trainer`), what wrappers around a frozen model
share (`frozen`) and the ``fit_dense`` file (`projection`)."""

from effbert.distill.losses import (
    DistillationLoss,
    HiddenStateLoss,
    attention_score_loss,
    check_pair,
    layer_map,
    regression_loss,
    soft_cross_entropy,
    span_soft_cross_entropy,
)
from effbert.distill.teacher_signals import (
    TeacherSignals,
    capture,
    forward_with_signals,
    recording_scores,
    zero_masked,
)

__all__ = [
    "DistillationLoss",
    "HiddenStateLoss",
    "TeacherSignals",
    "attention_score_loss",
    "capture",
    "check_pair",
    "forward_with_signals",
    "layer_map",
    "recording_scores",
    "regression_loss",
    "soft_cross_entropy",
    "span_soft_cross_entropy",
    "zero_masked",
]
