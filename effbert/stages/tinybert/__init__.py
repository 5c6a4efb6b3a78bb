"""TinyBERT's stage recipes: ``tinybert_general@corpus``, ``tinybert_augment@<task>`` and ``tinybert@<task>``. The
method's library is `effbert.methods.tinybert`."""
