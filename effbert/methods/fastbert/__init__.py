"""FastBERT (Liu et al., ACL 2020): early exit by self-distilled classifiers on a fine-tuned BERT.

A small classifier (a branch) follows every layer of the fine-tuned teacher but the last, whose own head stays the
final classifier. The branches learn by self-distillation from that head (KL divergence, backbone and head frozen,
no labels). At inference a sample leaves after the first layer whose branch is sure enough: its prediction's
normalised entropy is at most the ``speed`` threshold (`early_exit`). Classification tasks only: the paper defines
no exit rule for regression or span QA.
"""
