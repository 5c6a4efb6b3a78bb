"""The models: the teacher (an unmodified Hugging Face BERT) and the EfficientBERT student family.

Importing this package registers the student with transformers' Auto classes (see `registration`).
"""

from effbert.models.registration import register

register()
