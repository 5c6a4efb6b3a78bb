"""Model construction: the teacher (an unmodified Hugging Face BERT) and, later, the EfficientBERT student."""
