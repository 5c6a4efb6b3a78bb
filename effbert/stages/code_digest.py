"""Stage ``code_digest``: what code each pipeline command runs, hashed (`effbert.code_deps`).

Reruns whenever a file under ``effbert/`` changes (its dep is the whole package folder) and writes, for every
``effbert`` command a stage of ``dvc.yaml`` or ``workflow/optional/dvc.yaml`` runs, ``results/code/<command>.json``:
the sha256 of each file of the command's import closure. Every stage depends on its command's file, so DVC reruns a
stage exactly when code it runs changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from effbert import code_deps, tracking
from effbert.runtime import load_params, params_option, stage_context, write_json

log = logging.getLogger(__name__)

PARAMS: tuple[str, ...] = ()
"""The params this stage reads: none (dvc.yaml lists none; tests/test_code_deps.py checks it)."""


@click.command("code-digest")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@params_option
def command(out: str, params_file: str) -> None:
    """Hash the import closure of every command the pipeline runs: one results/code/<command>.json each."""
    params = load_params(params_file)
    with stage_context("code_digest", "code_digest", params, PARAMS, [Path(out)]) as (run, (tmp,)):
        root = tracking.project_root()
        commands = code_deps.pipeline_commands(root)
        for name in commands:
            digest = code_deps.code_digest(name, root)
            write_json(tmp / f"{name}.json", digest)
            run.log_metrics({f"files/{name}": len(digest["files"])})
        log.info("code digests of %d commands in %s", len(commands), out)
