"""The final report: published reference numbers (`paper`), HTML/Markdown rendering and figures (`render`).

Both modules are pure apart from `paper.load_paper_results` reading the package data ``paper_results.json``; the
stage ``effbert/stages/report.py`` collects the pipeline's outputs, measures size and speed, and writes the files.
"""
