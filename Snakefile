# The Snakemake entry point. The rules are generated from dvc.yaml (workflow/rules/dvc_stages.smk), so the DAG
# is defined once; this file only holds the default target, as Snakemake requires of the top-level Snakefile.
# Optional stages (workflow/optional/dvc.yaml) have rules but are not in the default target.
include: "workflow/rules/dvc_stages.smk"


rule all:
    default_target: True
    input:
        [out for stage in STAGES if not stage.optional for out in stage.outs],
