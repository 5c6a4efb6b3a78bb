"""FastBERT (Liu et al., ACL 2020): early exit by self-distilled classifiers on a fine-tuned BERT.

A small classifier (a branch) follows every layer of the fine-tuned teacher but the last, whose own head stays the
final classifier. The branches learn by self-distillation from that head (KL divergence, backbone and head frozen,
no labels). At inference a sample leaves after the first layer whose branch is sure enough: its prediction's
normalised entropy is at most the ``speed`` threshold (`early_exit`). Classification tasks only: the paper defines
no exit rule for regression or span QA.

Importing this package registers the saved model (``model_type`` "effbert-fastbert", `modeling_fastbert`) with
transformers' Auto classes, whatever module of the method is imported first, and the other students too: when this
package's import is what pulls in transformers, ``import effbert``'s hook leaves the registration to it.
"""

from effbert.methods.fastbert import modeling_fastbert as _modeling  # noqa: F401  (registers on import)
from effbert.models.auto import register_students

register_students()
