"""Exporting a final student: ONNX export with a parity check (`onnx`), the model card (`model_card`) and the MLflow
``python_function`` model that the registry holds (`pyfunc`, imported on demand: it needs MLflow).

No module here reads or writes files or talks to a tracking store; `effbert.stages.export` does.
"""

from effbert.export.model_card import ModelCardFacts, render_model_card
from effbert.export.onnx import OnnxRuntimeModel, onnx_bytes, parity

__all__ = ["ModelCardFacts", "OnnxRuntimeModel", "onnx_bytes", "parity", "render_model_card"]
