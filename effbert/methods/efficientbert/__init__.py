"""EfficientBERT (Dong et al., Findings of EMNLP 2021): the MLP expression language (`expr`), the student model
family with its supernet (`configuration_effbert`, `modeling_effbert`, `supernet`, `architecture`, shipped
`architectures/`), the progressive search (`search`) and the distillations (`distillation`).

Importing this package registers the student (``model_type`` "effbert") with transformers' Auto classes: every
module of the method is imported through here, so the student is registered whatever module is imported first.
"""

from effbert.methods.efficientbert import modeling_effbert as _modeling  # noqa: F401  (registers on import)
