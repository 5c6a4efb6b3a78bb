"""Section "Lineage and reproduction": the commit, code digest and params digest of the report, the data digests per
task, the MLflow run behind each input and the commands that reproduce the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from effbert.report.sections.blocks import code, section, table, text


def _reproduce(lineage: Mapping[str, Any]) -> str:
    """The shell commands that reproduce the report (a note when it was made from uncommitted changes)."""
    commit = str(lineage["git_commit"])
    dirty = (
        f"# the report was made from uncommitted changes (-dirty); their code digest is {lineage['code_digest']}\n"
        if commit.endswith("-dirty")
        else ""
    )
    return (
        f"git checkout {commit.removesuffix('-dirty')}\n{dirty}make venv\n"
        f"# params: the file with sha256 {lineage['params_sha256'][:16]}..., also in report.json (params_yaml)\n"
        ".venv/bin/effbert run --params params.yaml       # the demo profile: make demo\n"
        ".venv/bin/effbert lineage results/report/report.json   # the runs behind every number\n"
    )


def _bf16_fact(bf16: Mapping[str, Any] | None) -> str:
    """The ``bf16`` setting and the report machine's native-bf16 CPU flags."""
    if not bf16:
        return "not recorded"
    flags = ", ".join(bf16.get("cpu_bf16_flags") or []) or "none"
    return f"{bf16['setting']} (native-bf16 CPU flags here: {flags})"


def lineage_section(lineage: Mapping[str, Any]) -> dict[str, Any]:
    """Commit, digests, MLflow runs and how to reproduce.

    Args:
        lineage: from `effbert.report.inputs.collect_lineage`.
    """
    facts = [
        {"item": "git commit", "value": str(lineage["git_commit"])},
        {"item": "code digest (effbert sources)", "value": lineage["code_digest"]},
        {"item": "effbert version", "value": lineage["effbert_version"]},
        {"item": f"params file ({lineage['params_file']}) sha256", "value": lineage["params_sha256"]},
        {"item": "MLflow experiment", "value": lineage["experiment"]},
        {"item": "bf16 autocast (params bf16; per stage below)", "value": _bf16_fact(lineage.get("bf16"))},
        {"item": "generated at (UTC)", "value": lineage["generated_at"]},
    ]
    blocks = [
        table("Code and params of this report", [("item", "item", "text"), ("value", "value", "text")], facts),
        table(
            "Data: sha256 of the source files each task was prepared from (prepare_data meta.json)",
            [
                ("task", "task", "text"),
                ("split", "split", "text"),
                ("sha256", "sha256", "text"),
                ("tokenizer", "tokenizer", "text"),
            ],
            list(lineage["data"]),
        ),
        table(
            "MLflow runs behind each input of this report (lineage.json of each output directory)",
            [
                ("output", "output", "text"),
                ("stage", "stage", "text"),
                ("run_id", "MLflow run id", "text"),
                ("git_commit", "git commit", "text"),
                ("digest", "output digest", "text"),
                ("bf16", "bf16", "text"),
            ],
            [dict(r, digest=r["digest"][:16] if r.get("digest") else None) for r in lineage["runs"]],
        ),
        text("How to reproduce this report:"),
        code(_reproduce(lineage)),
    ]
    return section("lineage", "Lineage and reproduction", blocks)
