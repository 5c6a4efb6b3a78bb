"""effbert: EfficientBERT as a reproducible, workflow-orchestrated pipeline."""

__version__ = "0.1.0"
