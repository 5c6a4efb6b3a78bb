"""BERT-of-Theseus's stage recipe: ``theseus@<task>``. The method's library is `effbert.methods.theseus`."""
