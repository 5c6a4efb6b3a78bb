"""Measurements of models: the latency protocol, size (parameters, MACs) and the ``effbert bench`` measurement set."""
