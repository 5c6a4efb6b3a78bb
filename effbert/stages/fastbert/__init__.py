"""FastBERT's stage recipe: ``fastbert@<task>`` (classification tasks), self-distilled early-exit branches on the
task's fine-tuned teacher. The method's library is `effbert.methods.fastbert`."""
