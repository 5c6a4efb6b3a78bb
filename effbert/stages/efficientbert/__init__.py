"""EfficientBERT's stage recipes: ``warmup_kd``, ``search_stage1..3`` (and the optional ``search_quality``),
``final_distill_general`` and ``final_distill@<task>``. The method's library is `effbert.methods.efficientbert`."""
