"""Evaluation shared by every method: official metrics (`metrics`), scores of model outputs (`scoring`), batched
forward passes (`inference`), dev evaluation (`evaluation`), the run's summary table (`summary`), submission
formats (`submission`) and test-set prediction files (`prediction_files`)."""
