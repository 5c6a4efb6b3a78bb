"""Exporting a final student: ONNX export with a parity check (`onnx`), the ``onnx.json`` record of an export with
its latency beside PyTorch (`onnx_report`), the model card's facts gathered from files (`card_facts`) and its text
(`model_card`, pure), and the MLflow ``python_function`` model that the registry holds (`pyfunc`, it needs MLflow).

Import the modules themselves: this package imports none of them, so that using one (`card_facts` in
``final_distill``) does not make the others (torch, ONNX, MLflow code) code dependencies of a stage.
"""
