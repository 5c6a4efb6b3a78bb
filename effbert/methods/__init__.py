"""The compression methods: one library package each (its models, search and training recipes as functions of params
sections, models and data), sharing data preparation, the teacher, evaluation, export and the report. Each method's
stage recipes live in `effbert.stages.<method>`."""
