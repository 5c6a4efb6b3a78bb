"""TinyBERT (Jiao et al., Findings of EMNLP 2020): a small BERT distilled in two steps, general and task.

General distillation on the corpus from the pre-trained teacher and task distillation (intermediate layers, then
the prediction layer) use effbert's shared KD losses (`effbert.distill.losses`: embedding and hidden-state MSE
through one projection, attention-score MSE, soft cross-entropy; uniform layer map). This package adds what is
TinyBERT's own: the student's shape fitted into the parameter window (`student`), the distillations as functions of
params sections and models (`distillation`), its data augmentation (`augment`) and the augmented training split
(`augmented_split`); the DAG stages are `effbert.stages.tinybert`.
"""
