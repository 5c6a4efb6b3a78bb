"""The ``effbert`` command: one subcommand per DAG stage (their recipes in `effbert.stages`), plus the tools.

Each command lives in the module named by :data:`COMMANDS` and is imported only when it runs (or when ``--help``
lists it), so a stage's process imports exactly its own recipe and what that recipe uses: its code dependency
(``results/code/<command>.json``, written by the ``code_digest`` stage) hashes that import closure
(`effbert.code_deps`). User errors become one line on stderr and exit code 2; a stage or a run stopped by SIGTERM
or SIGINT (`effbert.interrupt`) one line and the shell's code for the signal (143, 130).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

import effbert
from effbert.errors import EffbertError, StageInterrupted

COMMANDS: dict[str, str] = {
    # DAG stages (dvc.yaml runs them; their recipes read params, call the library, write their outputs)
    "code-digest": "effbert.stages.code_digest:command",
    "prepare-data": "effbert.stages.prepare_data:command",
    "prepare-corpus": "effbert.stages.prepare_corpus:command",
    "finetune-teacher": "effbert.stages.finetune_teacher:command",
    "warmup-kd": "effbert.stages.efficientbert.warmup_kd:command",
    "search-stage1": "effbert.stages.efficientbert.search:stage1",
    "search-stage2": "effbert.stages.efficientbert.search:stage2",
    "search-stage3": "effbert.stages.efficientbert.search:stage3",
    "search-quality": "effbert.stages.efficientbert.search_quality:command",
    "final-distill-general": "effbert.stages.efficientbert.final_distill:general_command",
    "final-distill": "effbert.stages.efficientbert.final_distill:task_command",
    "tinybert-general": "effbert.stages.tinybert.tinybert:general_command",
    "tinybert-augment": "effbert.stages.tinybert.tinybert:augment_command",
    "tinybert": "effbert.stages.tinybert.tinybert:task_command",
    "theseus": "effbert.stages.theseus.theseus:command",
    "dynabert": "effbert.stages.dynabert.dynabert:command",
    "fastbert": "effbert.stages.fastbert.fastbert:command",
    "evaluate": "effbert.stages.evaluate:command",
    "eval-summary": "effbert.stages.eval_summary:command",
    "predict-test": "effbert.stages.predict_test:command",
    "export": "effbert.stages.export:command",
    "report": "effbert.stages.report:command",
    # tools
    "run": "effbert.commands:run_command",
    "chaos": "effbert.commands:chaos_command",
    "check-params": "effbert.commands:check_params_command",
    "fetch-data": "effbert.commands:fetch_data_command",
    "lineage": "effbert.commands:lineage_command",
    "predict": "effbert.stages.predict_test:predict_command",
    "bench": "effbert.commands:bench_command",
    "corpus-memory": "effbert.commands:corpus_memory_command",
    "estimate": "effbert.commands:estimate_command",
    "init-student": "effbert.commands:init_student_command",
    "code-deps": "effbert.commands:code_deps_command",
    "dynabert-extract": "effbert.stages.dynabert.extract:command",
}
"""Subcommand -> ``module:attribute`` of its click command."""


def command_module(name: str) -> str:
    """The module that defines subcommand ``name``."""
    return COMMANDS[name].split(":", 1)[0]


class _Group(click.Group):
    """Loads each subcommand from its module on demand; turns user errors (bad params, bad data, missing files)
    into one line and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name].split(":", 1)
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from effbert import launch

        try:
            torchrun = launch.relaunch(sys.argv[1:])
            if torchrun is not None:  # launch.train_gpus > 1: this training stage runs on that many processes
                argv, env = torchrun
                os.environ.update(env)
                sys.stdout.flush()
                os.execv(argv[0], argv)
            launch.set_local_device()
            return super().invoke(ctx)
        except EffbertError as err:
            click.echo(f"effbert: error: {err}", err=True)
            sys.exit(err.exit_code)
        except StageInterrupted as err:  # SIGTERM or SIGINT: the shell's exit code for the signal (143, 130)
            click.echo(f"effbert: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="effbert")
def main() -> None:
    """EfficientBERT as a reproducible pipeline: `effbert run` runs the whole DAG."""
    # a stage registers the students with the Auto classes only when its own code loads one (effbert.models.auto)
    effbert.remove_registration_hook()


if __name__ == "__main__":
    main()
