"""The sections of the report as document blocks (the format `effbert.report.render` renders): the introduction
(`intro`), quality per task (`quality`), size and speed (`size_speed`), search (`search`), export and submission
(`exports`), lineage and reproduction (`lineage`), from the shared block builders (`blocks`).

Every builder is a pure function of the run's params and the collected inputs (`effbert.report.inputs`); none reads a
file, measures or imports torch.
"""
