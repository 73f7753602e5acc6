"""`wmnet sweep SWEEP.yaml --out DIR`, `wmnet sweep status DIR`, `wmnet sweep plot DIR`.

Imports nothing heavy at import time (no torch, numba, pandas): `wmnet --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click


class SweepGroup(click.Group):
    """A group whose default command is `run`: `wmnet sweep FILE ...` = `wmnet sweep run FILE ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=SweepGroup, name="sweep")
def sweep_group() -> None:
    """Parameter sweeps: `wmnet sweep SWEEP.yaml --out DIR` runs every point of SWEEP.yaml as a run
    folder under DIR/points/ and collects DIR/results.parquet (docs/sweeps.md)."""


@sweep_group.command("run")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--out", required=True, help="Sweep folder (created; rerun to continue it).")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: a pool of worker processes; ray: one Ray task per point.",
)
@click.option("--workers", type=int, help="Points at once (default: the cores, or one per GPU × --per-gpu).")
@click.option("--address", help="Ray cluster to join (default: start a local Ray instance).")
@click.option("--per-gpu", type=int, default=1, show_default=True, help="Points packed on one GPU.")
@click.option("--extend", is_flag=True, help="Accept a sweep file that adds points to the sweep in --out.")
@click.option("--plots", is_flag=True, help="Draw every point's figures (as `wmnet run` does).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_cmd(
    sweep_file: str,
    out: str,
    executor: str,
    workers: int | None,
    address: str | None,
    per_gpu: int,
    extend: bool,
    plots: bool,
    quiet: bool,
) -> None:
    """Run (or continue) the sweep SWEEP_FILE in --out."""
    from wmnet.sweep.runner import run_sweep

    try:
        df = run_sweep(
            sweep_file,
            out,
            executor=executor,
            workers=workers,
            address=address,
            per_gpu=per_gpu,
            extend=extend,
            progress=not quiet,
            plots=plots,
        )
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: rerun the same command to continue (done points are kept, the points in "
            f"flight resume from their checkpoints); see `wmnet sweep status {out}`",
            err=True,
        )
        sys.exit(130)
    _print_counts(df)
    click.echo(f"results: {out}/results.parquet")
    if (df["status"] != "complete").any():
        sys.exit(1)


def _print_counts(df: Any, failures: int = 5) -> None:
    counts = df["status"].value_counts()
    click.echo(
        f"{len(df)} points: "
        + ", ".join(
            f"{int(counts[s])} {s}" for s in ("complete", "failed", "interrupted", "running", "pending") if s in counts
        )
    )
    failed = df[df["status"] == "failed"]
    for _, r in failed.head(failures).iterrows():
        click.echo(f"failed {r['point']}: {r['error']}")
    if len(failed) > failures:
        click.echo(f"... and {len(failed) - failures} more failed (wmnet sweep status DIR --all)")


@sweep_group.command("status")
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--all", "show_all", is_flag=True, help="List every failure.")
def status_cmd(sweep_dir: str, show_all: bool) -> None:
    """Counts of the points by status, and the failures with their reasons."""
    from wmnet.sweep.results import read_table

    df = read_table(sweep_dir)
    _print_counts(df, len(df) if show_all else 5)


@sweep_group.command("plot")
@click.argument("sweep_dir", type=click.Path(file_okay=False))
@click.option("--x", "x", required=True, help="Swept key on the x axis.")
@click.option("--y", "y", help="Second swept key: a heatmap.")
@click.option("--metric", required=True, help="Results column, e.g. summary.populations.E.rate_hz.")
@click.option("--to", "dest", type=click.Path(dir_okay=False), help="PNG to write (default DIR/figures/...).")
def plot_cmd(sweep_dir: str, x: str, y: str | None, metric: str, dest: str | None) -> None:
    """Plot METRIC against --x (mean ± std over seeds), or a heatmap over --x and --y."""
    from wmnet.sweep.plot import plot_sweep

    click.echo(f"figure: {plot_sweep(sweep_dir, x, metric, y, dest)}")
