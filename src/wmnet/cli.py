"""Command line: `wmnet run | resume | config show | plot | info`.

Bad input ends with one line on stderr naming the field or file, exit status 2, and no output
folder that looks complete.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wmnet.config import Config, load_config
from wmnet.errors import WmnetError
from wmnet.sweep.cli import sweep_group

if TYPE_CHECKING:
    from wmnet.result import RunResult


def _config(config: str | None, sets: tuple[str, ...], flags: dict[str, Any]) -> Config:
    overrides = list(sets) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    return load_config(config, overrides)


def _plan(cfg: Config) -> tuple[Any, str | None]:
    """launch.plan (the device; a network too big for it refused before anything is built),
    saying on stderr why `engine: auto` chose the dense engine. Returns the device and that
    reason (for run.json), or None."""
    from wmnet.launch import plan

    device, reason = plan(cfg)
    if reason:
        click.echo(f"note: {reason}", err=True)
    return device, reason


def _plot_run(path: str | Path) -> list[Path]:
    """plotting.save_run_figures with the non-interactive Agg backend: chosen here, for the CLI only, so
    that importing wmnet.plotting in a notebook keeps its inline backend."""
    import matplotlib

    matplotlib.use("Agg")
    from wmnet.plotting import save_run_figures

    return save_run_figures(path)


def _summary_lines(info: dict[str, Any]) -> list[str]:
    s = info["summary"]
    pops = s["populations"]
    pot = s["ee_potentiated_fraction"]
    sw = s["ee_switches"]
    rate = info["wall_s_per_sim_s"]
    return [
        f"simulated {info['simulated_ms']:g} ms of {info['n_neurons']} neurons, "
        f"{info['n_synapses']:,} synapses ({info['engine']} engine, {info['device']}, {info['dtype']})",
        f"wall: build {info['wall_seconds']['build']:.2f} s, compile {info['wall_seconds'].get('compile', 0.0):.2f} s, "
        f"simulate {info['wall_seconds']['simulate']:.2f} s "
        + (f"({rate:.3g} s per simulated s)" if math.isfinite(rate) else "(nothing left to simulate)"),
        "rates: "
        + ", ".join(f"{p} {v['rate_hz']:.1f} Hz" for p, v in pops.items())
        + f"; σ=1 in {100 * s['sigma_fraction']:.1f}% of neuron-steps; mean x at end: "
        + ", ".join(f"{p} {v['mean_x_end']:.3f}" for p, v in pops.items()),
        f"E→E potentiated: {pot['start']:.3f} → {pot['end']:.3f} ({sw['up']} up, {sw['down']} down switches)",
    ]


def _finish(path: Path, simulate: Callable[[], RunResult], no_plot: bool) -> None:
    """Run `simulate`; print the summary and draw the figures, or say how to resume."""
    try:
        result = simulate()
    except KeyboardInterrupt as e:
        info = e.args[0].info if e.args and hasattr(e.args[0], "info") else {}
        at, ck = info.get("simulated_ms"), info.get("checkpoint_ms")
        if ck is None:
            click.echo(
                f"interrupted: {path} holds the data up to the interruption, but no checkpoint to resume "
                "from (run.json status 'interrupted')",
                err=True,
            )
        else:
            since = "" if at is None or abs(at - ck) < 1e-9 else f" (from the checkpoint at {ck:g} ms)"
            click.echo(
                f"interrupted at {at if at is not None else ck:g} ms: resume with `wmnet resume {path}`{since}",
                err=True,
            )
        sys.exit(130)
    for line in _summary_lines(result.info):
        click.echo(line)
    if not no_plot:
        for f in _plot_run(path):
            click.echo(f"figure: {f}")
    click.echo(f"results: {path}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wmnet")
def cli() -> None:
    """wmnet: fast simulation of spiking working-memory networks with plastic synapses."""


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--out", help="Output folder (default: a new runs/<timestamp>/).")
@click.option("--duration", type=float, help="Simulated time (ms).")
@click.option("--seed", type=int, help="Master seed.")
@click.option("--device", help="auto | cpu | cuda | cuda:N")
@click.option("--dtype", type=click.Choice(["float16", "float32", "float64"]))
@click.option("--engine", type=click.Choice(["auto", "reference", "sparse"]))
@click.option(
    "--input", "input_path", type=click.Path(dir_okay=False), help="External current, .npy of shape (N, steps), mV/ms."
)
@click.option(
    "--connectivity", type=click.Path(dir_okay=False), help=".npz with dense post×pre j_fast, j_slow and optional l."
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config field.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--no-plot", is_flag=True, help="Skip the figures.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(
    config: str | None,
    out: str | None,
    duration: float | None,
    seed: int | None,
    device: str | None,
    dtype: str | None,
    engine: str | None,
    input_path: str | None,
    connectivity: str | None,
    sets: tuple[str, ...],
    overwrite: bool,
    no_plot: bool,
    quiet: bool,
) -> None:
    """Simulate CONFIG (default: the seed model) and write spikes, traces, run.json and plots."""
    # Validate the config before the heavy imports (torch, numba): config errors come back at once.
    cfg = _config(
        config, sets, {"duration": duration, "seed": seed, "device": device, "dtype": dtype, "engine": engine}
    )
    from wmnet.io.claim import check_out, claim_run_folder, config_inputs
    from wmnet.launch import build, run_in

    dev, engine_reason = _plan(cfg)
    check_out(out, overwrite)
    # Absolute paths: run.json keeps them for `wmnet resume`, which may run from elsewhere.
    connectivity = str(Path(connectivity).absolute()) if connectivity is not None else None
    input_path = str(Path(input_path).absolute()) if input_path is not None else None
    sim = build(cfg, dev, connectivity, input_path)  # every input validated before any write
    # Created (or a previous run's cleared) under its lock, which the run then holds to the end.
    inputs = [
        ("config file", config),
        ("--connectivity", connectivity),
        ("--input", input_path),
        *(("array stimulus", p) for p in config_inputs(cfg)),
    ]
    folder = claim_run_folder(out, overwrite, inputs)
    extra = {"input": input_path, **({"engine_reason": engine_reason} if engine_reason else {})}
    _finish(folder.path, lambda: run_in(folder, sim, not quiet, extra), no_plot)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--no-plot", is_flag=True, help="Skip the figures.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def resume(run_dir: str, no_plot: bool, quiet: bool) -> None:
    """Continue the interrupted run in RUN_DIR from its checkpoint.pt to the planned end."""
    from wmnet.checkpoint import resume_run

    _finish(Path(run_dir), lambda: resume_run(run_dir, progress=not quiet), no_plot)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--by", "by_ms", type=float, required=True, help="Simulated time to add (ms).")
@click.option("--no-plot", is_flag=True, help="Skip the figures.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extend(run_dir: str, by_ms: float, no_plot: bool, quiet: bool) -> None:
    """Continue the completed run in RUN_DIR for --by more ms, appending to its files (learning
    goes on from the final state; past a protocol's end the config's `stimulus` drives it)."""
    from wmnet.checkpoint import resume_run

    if not (math.isfinite(by_ms) and by_ms > 0):
        raise WmnetError(f"--by {by_ms:g}: expected a positive, finite duration in ms")
    ck_config = Path(run_dir) / "config.yaml"
    if ck_config.is_file():  # resume_run checks the rest; here: at least one whole step
        dt = load_config(ck_config).dt
        if round(by_ms / dt) < 1:
            raise WmnetError(f"--by {by_ms:g}: less than one step of dt = {dt:g} ms; nothing to simulate")
    _finish(Path(run_dir), lambda: resume_run(run_dir, progress=not quiet, extend_ms=by_ms), no_plot)


@cli.group(name="config")
def config_group() -> None:
    """Inspect configurations."""


@config_group.command("show")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config field.")
def config_show(config: str | None, sets: tuple[str, ...]) -> None:
    """Print the effective config (defaults, file, then --set overrides) as YAML."""
    click.echo(_config(config, sets, {}).to_yaml(), nl=False)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
def plot(run_dir: str) -> None:
    """Redraw a run's figures from its saved files into RUN_DIR/figures/."""
    for f in _plot_run(run_dir):
        click.echo(f"figure: {f}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--nwb", "nwb_path", required=True, type=click.Path(dir_okay=False), help="Output NWB file.")
@click.option("--all-units", is_flag=True, help="A unit for every neuron (default: those that spiked).")
@click.option("--partial", is_flag=True, help="Export a run that did not complete (what its files hold).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(run_dir: str, nwb_path: str, all_units: bool, partial: bool, overwrite: bool, quiet: bool) -> None:
    """Write the run in RUN_DIR as one NWB file (spikes, traces, rates, synapses, epochs, config)."""
    from wmnet.io.nwb import to_nwb

    out = to_nwb(run_dir, nwb_path, all_units=all_units, partial=partial, overwrite=overwrite, progress=not quiet)
    click.echo(f"nwb: {out}")


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--device", help="auto | cpu | cuda | cuda:N")
@click.option("--dtype", type=click.Choice(["float16", "float32", "float64"]))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config field.")
def info(config: str | None, device: str | None, dtype: str | None, sets: tuple[str, ...]) -> None:
    """Build the network without running it and print its size."""
    from wmnet.memory import describe
    from wmnet.network import Network

    cfg = _config(config, sets, {"device": device, "dtype": dtype})
    _plan(cfg)
    net = Network.build(cfg)
    for line in describe(net):
        click.echo(line)


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config field.")
@click.option(
    "--scan",
    "scan_spec",
    metavar="KEY=START:STOP:N",
    help="Continuation over a config field or g_in (bifurcation figure).",
)
@click.option("--out", help="Folder for meanfield.json (and bifurcation.png with --scan).")
@click.option(
    "--connectivity", type=click.Path(dir_okay=False), help="Potentiated fractions per group pair from a snapshot .npz."
)
@click.option(
    "--synapses", type=click.Path(dir_okay=False), help="Potentiated fractions from a run's synapses.h5 (last sample)."
)
@click.option("--g-in", type=float, help="Potentiated fraction within a group.")
@click.option("--g-between", type=float, help="Potentiated fraction between groups.")
@click.option("--g-to-nonselective", type=float, help="Potentiated fraction, group → nonselective.")
@click.option("--g-from-nonselective", type=float, help="Potentiated fraction, nonselective → group.")
@click.option("--g-nonselective", type=float, help="Potentiated fraction, nonselective → nonselective.")
@click.option("--max-active", type=int, default=2, show_default=True, help="Most groups active at once.")
@click.option(
    "--slow-noise",
    type=click.Choice(["quasi-static", "fourcaud-brunel"]),
    default="fourcaud-brunel",
    show_default=True,
    help="How the slow current's noise enters the rate (docs/meanfield.md).",
)
def meanfield(
    config: str | None,
    sets: tuple[str, ...],
    scan_spec: str | None,
    out: str | None,
    connectivity: str | None,
    synapses: str | None,
    g_in: float | None,
    g_between: float | None,
    g_to_nonselective: float | None,
    g_from_nonselective: float | None,
    g_nonselective: float | None,
    max_active: int,
    slow_noise: str,
) -> None:
    """Predict the stationary states of CONFIG (mean-field theory, docs/meanfield.md)."""
    cfg = _config(config, sets, {})
    from wmnet.meanfield.report import run_command

    g = {
        "g_in": g_in,
        "g_between": g_between,
        "g_to_nonselective": g_to_nonselective,
        "g_from_nonselective": g_from_nonselective,
        "g_nonselective": g_nonselective,
    }
    run_command(cfg, scan_spec, out, connectivity, synapses, g, max_active, click.echo, slow_noise)


cli.add_command(sweep_group)  # wmnet sweep FILE | status | plot (src/wmnet/sweep/cli.py)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except WmnetError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:
        # A file the command cannot read or write (a read-only folder, a name too long, a full
        # disk): one line naming it, not a traceback.
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"error: {where}{e.strerror or e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
