"""The final report: the run's results beside the published ones, as self-contained HTML and Markdown.

- `paper`: the published reference numbers (package data ``paper_results.json``), each citing its paper and table;
- `inputs`: where the pipeline's outputs are (`inputs.ReportPaths`) and reading them (`inputs.collect`);
- `measurements`: size and speed of the student, the teacher and a random-init BERT-base;
- `sections`: the document's sections as blocks (pure functions of the params and the collected inputs);
- `document`: the whole report dict, its figures and its headline metrics;
- `render`: HTML and Markdown rendering and the report's own figures (pure).

The stage ``effbert/stages/report.py`` calls them in that order and writes the files.
"""
