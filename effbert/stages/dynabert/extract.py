"""``effbert dynabert-extract`` (a tool, not a DAG stage): one (width, depth) sub-network of a trained DynaBERT model
as its own compact model directory (``model_type`` "effbert-dynabert", Auto-loadable after ``import effbert``) with
the tokenizer. The work is `effbert.methods.dynabert.evaluation.export_subnetwork`."""

from __future__ import annotations

import click


@click.command("dynabert-extract")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--width", required=True, type=float, help="Width multiplier in (0, 1], e.g. 0.5.")
@click.option("--depth", required=True, type=float, help="Depth multiplier in (0, 1], e.g. 0.5.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write.")
def command(model_dir: str, width: float, depth: float, out_dir: str) -> None:
    """Write the sub-network at (WIDTH, DEPTH) of a DynaBERT model as a standalone model directory."""
    from effbert.methods.dynabert.evaluation import export_subnetwork, load_grid

    grid = load_grid(model_dir)
    if (width, depth) not in grid:
        click.echo(f"note: ({width:g}, {depth:g}) is not on the trained grid {grid}", err=True)
    out = export_subnetwork(model_dir, width, depth, out_dir)
    click.echo(f"wrote {out}")
