"""Figures of a run: each `plot_*` takes a RunResult (in memory or `RunResult.from_folder`) or a run folder
(`plot_raster` and `plot_rates` also a table of spikes or rates, as `to_pandas()` gives them), draws into `ax`
when given (one panel) or into a new figure, and returns the matplotlib Figure. Only
`save_run_figures` (what `wmnet run` and `wmnet plot` call) writes files: DIR/figures/*.png.

    from wmnet.plotting import plot_rates
    fig = plot_rates(result)                  # a new figure
    plot_raster(result, ax=axes[0])           # or a panel of your own figure

The matplotlib backend is left alone here (a notebook keeps its inline figures); the CLI selects the
non-interactive Agg backend before importing this module (cli.use_agg). A figure of something the run did not
record raises NothingToPlot (a WmnetError); `save_run_figures` skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from wmnet import model
from wmnet.errors import WmnetError
from wmnet.memory_states import emergence, has_training, mark_emergence
from wmnet.protocol import read_events
from wmnet.result import RunResult

if TYPE_CHECKING:
    import pandas as pd

COLORS = {"E": "tab:blue", "I": "tab:red"}
LABELS = {v: v if u == "1" else f"{v} ({u})" for v, u in model.UNITS.items()}  # "v (mV)", "x"
MAX_RASTER_NEURONS = {"E": 800, "I": 200}
Source = RunResult | str | Path


class NothingToPlot(WmnetError):
    """The run did not record what the figure shows."""


def as_result(source: Source) -> RunResult:
    """A RunResult as it is, a run folder reloaded (`RunResult.from_folder`)."""
    return source if isinstance(source, RunResult) else RunResult.from_folder(source)


def _group_color(name: str, names: list[str]) -> str:
    """E and I keep their colours; other groups take tab10 colours in a fixed order."""
    if name in COLORS:
        return COLORS[name]
    others = [n for n in names if n not in COLORS]
    return f"C{(others.index(name) + 2) % 10}" if name in others else "0.5"


def _group_names(result: RunResult) -> list[str]:
    """The run's group names in their defined order (node_sets.json; in memory, the rate monitor's)."""
    order = result.group_order()
    return order or (result.rates.names if result.rates is not None else [])


def _events(result: RunResult) -> list[dict[str, str]]:
    path = None if result.out is None else result.out / "events.tsv"
    return read_events(path) if path is not None and path.exists() else []


def _shade_epochs(ax: Axes, result: RunResult) -> None:
    """Shade the protocol's selective-stimulus epochs in the group's colour, from events.tsv."""
    names = _group_names(result)
    for row in _events(result):
        selective = [part.split(":", 1)[1] for part in row["stimulus"].split("+") if part.startswith("selective:")]
        if selective:
            t0, dur = float(row["onset"]) * 1000, float(row["duration"]) * 1000
            ax.axvspan(t0, t0 + dur, color=_group_color(selective[0], names), alpha=0.15, lw=0)


def _fig_of(ax: Axes) -> Figure:
    fig = ax.get_figure(root=True)
    if not isinstance(fig, Figure):
        raise WmnetError("ax: an Axes of a matplotlib Figure is needed")
    return fig


def _figure(ax: Axes | None, rows: int, **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """The figure of `ax` with [[ax]], or a new one with `rows` panels (squeezed=False, one column)."""
    if ax is not None:
        return _fig_of(ax), np.array([[ax]])
    fig, axes = plt.subplots(rows, 1, squeeze=False, **kwargs)
    return fig, axes


def plot_raster(
    source: Source | pd.DataFrame, ax: Axes | None = None, bin_ms: float = 5.0, sizes: dict[str, int] | None = None
) -> Figure:
    """Raster (E and I in two colours) over population rates in `bin_ms` bins (ms); with `ax`, the raster only.
    `source` may also be a table of spikes (columns population, node_id, t_ms: `result.spikes.to_pandas()`);
    `sizes` {population: neurons} then sets the rates' denominators (default: the highest node id + 1)."""
    if isinstance(source, (RunResult, str, Path)):
        result = as_result(source)
        cfg, info = result.config, result.info
        spikes = result.spikes.by_population()
        t_end = result.simulated_ms or cfg.n_steps * cfg.dt
        sizes = {"E": cfg.populations.E.size, "I": cfg.populations.I.size}
        about = f"seed {info.get('seed', cfg.seed)}, {info.get('engine', '?')} engine, {info.get('dtype', cfg.dtype)}"
    else:
        spikes = {}
        for pop in ("E", "I"):
            rows = source[source["population"] == pop]
            spikes[pop] = (rows["t_ms"].to_numpy(dtype=np.float64), rows["node_id"].to_numpy(dtype=np.int64))
        found = {pop: int(ids.max()) + 1 if ids.size else 1 for pop, (_, ids) in spikes.items()}
        sizes = {**found, **(sizes or {})}
        t_end = float(source["t_ms"].max()) if len(source) else 1.0
        about = f"{len(source):,} spikes"
    if ax is None:
        fig, (ax_r, ax_p) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        fig, ax_r, ax_p = _fig_of(ax), ax, None
    offset = 0
    edges = np.arange(0, t_end + bin_ms, bin_ms)
    for pop in ("E", "I"):
        size = sizes[pop]
        shown = min(size, MAX_RASTER_NEURONS[pop])
        t, ids = spikes[pop]
        m = ids < shown
        ax_r.plot(t[m], ids[m] + offset, ",", color=COLORS[pop], rasterized=True)
        offset += shown
        if ax_p is not None:
            counts, _ = np.histogram(t, edges)
            rate = counts / (size * bin_ms / 1000)
            ax_p.step(edges[:-1], rate, where="post", color=COLORS[pop], label=f"{pop} ({size} neurons)")
    ax_r.set_ylabel("neuron (E first)")
    ax_r.axhline(min(sizes["E"], MAX_RASTER_NEURONS["E"]) - 0.5, color="0.7", lw=0.5)
    ax_r.set_ylim(-0.5, offset - 0.5)
    ax_r.set_title(f"Pulse onsets (first {MAX_RASTER_NEURONS['E']} E, {MAX_RASTER_NEURONS['I']} I shown) — {about}")
    if ax_p is None:
        ax_r.set_xlabel("time (ms)")
        ax_r.set_xlim(0, t_end)
    else:
        ax_p.set_ylabel(f"rate (Hz, {bin_ms:g} ms bins)")
        ax_p.set_xlabel("time (ms)")
        ax_p.set_xlim(0, t_end)
        ax_p.legend(loc="upper right", fontsize=8)
    assert isinstance(fig, Figure)
    return fig


def plot_traces(source: Source, ax: Axes | None = None, variables: list[str] | None = None) -> Figure:
    """One panel per recorded variable (default: all; with `ax`, the first of `variables`), one line per
    recorded neuron; v with θ marked."""
    result = as_result(source)
    cfg, traces = result.config, result.traces
    neurons = traces.neurons
    recorded = traces.variables if neurons.size else []
    chosen = [v for v in (variables or recorded) if v in recorded]
    if not chosen:
        raise NothingToPlot("no state traces recorded" + (f" of {', '.join(variables)}" if variables else ""))
    if ax is not None:
        chosen = chosen[:1]
    fig, axes = _figure(ax, len(chosen), figsize=(10, 2.0 * len(chosen) + 0.8), sharex=True)
    n_e = cfg.populations.E.size
    for panel, var in zip(axes[:, 0], chosen):
        t, data = traces.samples(var)  # one read: a running run appends between two
        for pop, cols in (("E", np.nonzero(neurons < n_e)[0]), ("I", np.nonzero(neurons >= n_e)[0])):
            if not cols.size:
                continue
            for col in cols:
                nid = neurons[col] - (0 if pop == "E" else n_e)
                panel.plot(t, data[:, col], "-" if pop == "E" else "--", lw=0.8, label=f"{pop}{nid}")
            if var == "v":
                theta = getattr(cfg.populations, pop).theta
                panel.axhline(theta, color=COLORS[pop], ls=":", lw=1, label=f"θ ({pop})")
        panel.set_ylabel(LABELS[var])
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[0, 0].set_title(f"State traces (every {cfg.record.traces.every} steps)")
    axes[-1, 0].set_xlabel("time (ms)")
    return fig


def plot_rates(source: Source | pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Population and group rates over time (rates.h5, or the rate monitor in memory). `source` may also be a
    table of rates (Hz; index: bin start t_ms, one column per group: `result.rates.to_pandas()`)."""
    result = None
    if isinstance(source, (RunResult, str, Path)):
        result = as_result(source)
        rates = result.rates
        if rates is None:
            raise NothingToPlot("no rates recorded (record.rates)")
        table = rates.to_pandas()  # one read: consistent while a run appends
        sizes, order, bin_ms = rates.sizes(), _group_names(result), rates.bin_ms
    else:
        table, sizes, order = source, {}, []
        bin_ms = float(table.index[1] - table.index[0]) if len(table) > 1 else float("nan")
    fig, axes = _figure(ax, 1, figsize=(10, 3.6))
    panel = axes[0, 0]
    t, found = table.index.to_numpy(), list(table.columns)
    names = [n for n in order if n in found] + [n for n in found if n not in order]
    for name in names:
        panel.step(
            t,
            table[name].to_numpy(),
            where="post",
            color=_group_color(name, names),
            lw=1.2 if name in COLORS else 0.9,
            label=f"{name} ({sizes[name]} neurons)" if name in sizes else name,
        )
    if result is not None:
        _shade_epochs(panel, result)
    panel.set_xlabel("time (ms)")
    panel.set_ylabel(f"rate (Hz, {bin_ms:g} ms bins)")
    panel.set_title("Population and group rates")
    panel.legend(loc="upper right", fontsize=8)
    return fig


def plot_learning(source: Source, ax: Axes | None = None) -> Figure:
    """Learning dynamics (synapses.h5, or the synapse monitor in memory): potentiated fraction and mean L per
    synapse group, and the switch rate (whole network); with `ax`, the potentiated fraction only."""
    result = as_result(source)
    stats = result.synapse_stats
    if stats is None:
        raise NothingToPlot("no E→E statistics recorded (record.synapses)")
    table = stats.to_pandas()  # one read: consistent while a run appends
    t = table.index.to_numpy()
    up, down = table["switches/up"].to_numpy(), table["switches/down"].to_numpy()
    if up.size < 2:
        raise NothingToPlot("fewer than two E→E statistics samples")
    groups = {
        k.split("/")[1]: {
            "potentiated_fraction": table[k].to_numpy(),
            "mean_L": table[k.replace("potentiated_fraction", "mean_L")].to_numpy(),
        }
        for k in table.columns
        if k.startswith("synapses/") and k.endswith("/potentiated_fraction")
    }
    if ax is not None:
        panels: tuple[Axes, ...] = (ax,)
        fig = _fig_of(ax)
    else:
        fig, panels = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    ax_p = panels[0]
    lines = {
        name: ax_p.plot(t, g["potentiated_fraction"], marker=".", ms=3, label=name)[0] for name, g in groups.items()
    }
    if result.out is not None and has_training(result.out):
        # When each trained group first holds its delay, and the mean-field's critical g_in (docs/tutorial.md).
        pre_post = {name: name.split("->") for name in lines}
        colors = {pp[0]: to_hex(lines[n].get_color()) for n, pp in pre_post.items() if len(pp) == 2 and pp[0] == pp[1]}
        mark_emergence(ax_p, emergence(result.out), colors=colors)
    ax_p.set_ylabel("fraction potentiated")
    ax_p.set_title("Learning dynamics: E→E synapse groups (pre→post)")
    if len(panels) == 3:
        ax_l, ax_s = panels[1], panels[2]
        for name, g in groups.items():
            ax_l.plot(t, g["mean_L"], marker=".", ms=3, label=name)
        period_s = (t[1] - t[0]) / 1000
        ax_s.step(t[1:], up[1:] / period_s, where="pre", color="tab:green", label="up (potentiation)")
        ax_s.step(t[1:], down[1:] / period_s, where="pre", color="tab:purple", label="down (depression)")
        ax_l.set_ylabel("mean L")
        ax_s.set_ylabel("switches per s (network)")
        ax_s.set_xlabel("time (ms)")
    else:
        ax_p.set_xlabel("time (ms)")
    for panel in panels:
        panel.legend(loc="upper right", fontsize=8)
        _shade_epochs(panel, result)
    assert isinstance(fig, Figure)
    return fig


def _e_blocks(result: RunResult) -> dict[str, np.ndarray]:
    """Neuron groups for the block matrix: the run's groups restricted to E neurons, and the rest of E;
    without groups, ten equal index blocks of E."""
    n_e = result.config.populations.E.size
    groups: dict[str, np.ndarray] = {}
    for name, ids in result.groups().items():
        ids = ids[ids < n_e]
        if name not in ("E", "I", "nonselective") and ids.size:
            groups[name] = ids
    if groups:
        rest = np.setdiff1d(np.arange(n_e), np.concatenate(list(groups.values())))
        if rest.size:
            groups["rest of E"] = rest
        return groups
    edges = np.linspace(0, n_e, 11).astype(int)
    return {f"{a}–{b - 1}": np.arange(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a}


def plot_efficacy_blocks(source: Source, ax: Axes | None = None, t_ms: float | None = None) -> Figure:
    """Mean E→E efficacy (mV/ms) between neuron groups (post × pre) at each snapshot (a folder's), or in the
    engine's state now (a result in memory without snapshots); with `ax`, one snapshot (`t_ms`, default
    the last)."""
    result = as_result(source)
    times: list[float | None] = list(result.snapshot_times())
    if not times and result.engine is not None and result.network is not None:
        times = [None]  # the engine's state now
    if not times:
        raise NothingToPlot("no E→E snapshots (record.snapshots)")
    if t_ms is not None:
        times = [t_ms]
    elif ax is not None:
        times = times[-1:]
    ee = result.config.projections.EE
    n_e = result.config.populations.E.size
    groups = _e_blocks(result)
    label = np.full(n_e, -1)
    for g, ids in enumerate(groups.values()):
        label[ids] = g
    n_g = len(groups)
    if ax is None:
        fig, axes = plt.subplots(1, len(times), figsize=(3.6 * len(times) + 1.2, 3.8), squeeze=False)
        panels = list(axes[0])
    else:
        fig, panels = _fig_of(ax), [ax]
    image = None
    for panel, t in zip(panels, times):
        rowptr, post, pot, when = result.ee_state(t)
        pre = np.repeat(np.arange(n_e), np.diff(rowptr))
        J = np.where(pot != 0, ee.J_p, ee.J_d)
        gi, gj = label[post], label[pre]
        ok = (gi >= 0) & (gj >= 0)
        total = np.bincount(gi[ok] * n_g + gj[ok], weights=J[ok], minlength=n_g * n_g)
        count = np.bincount(gi[ok] * n_g + gj[ok], minlength=n_g * n_g)
        mean = np.divide(total, count, out=np.full(n_g * n_g, np.nan), where=count > 0).reshape(n_g, n_g)
        image = panel.imshow(mean, vmin=ee.J_d, vmax=ee.J_p, cmap="viridis")
        panel.set_title(f"t = {when:g} ms", fontsize=9)
        panel.set_xticks(range(n_g), list(groups), rotation=90, fontsize=6)
        panel.set_yticks(range(n_g), list(groups), fontsize=6)
        panel.set_xlabel("pre group")
    panels[0].set_ylabel("post group")
    assert image is not None and isinstance(fig, Figure)
    fig.colorbar(image, ax=panels, label="mean E→E efficacy (mV/ms)", shrink=0.8)
    if ax is None:
        fig.suptitle("E→E efficacy between neuron groups at each snapshot")
    return fig


def plot_trials(source: Source, ax: Axes | None = None, block: str | None = None) -> Figure:
    """Trial-averaged rate of the stimulated group against the block's other groups, one panel per block of
    single-group trials (e.g. before and after training; with `ax` or `block`, one): delay activity shows as
    the cued group staying above the others after its stimulus ends. From a run folder's events.tsv."""
    result = as_result(source)
    d = result.out
    if d is None or not (d / "events.tsv").exists() or not (d / "node_sets.json").exists():
        raise NothingToPlot("no protocol trials (events.tsv and node_sets.json of a run folder)")
    from wmnet.analysis import trial_psth

    blocks = trial_psth(d)
    if block is not None:
        if block not in blocks:
            raise WmnetError(f"no block {block!r} of single-group trials (blocks: {', '.join(blocks) or 'none'})")
        blocks = {block: blocks[block]}
    elif ax is not None:
        blocks = dict(list(blocks.items())[:1])
    if not blocks:
        raise NothingToPlot("no block of single-group trials")
    if ax is None:
        fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks) + 0.8, 3.4), squeeze=False, sharey=True)
        panels = list(axes[0])
    else:
        fig, panels = _fig_of(ax), [ax]
    for panel, (name, b) in zip(panels, blocks.items()):
        for ep, t0, t1 in b["epochs"]:
            if ep == b["epochs"][0][0]:
                panel.axvspan(t0, t1, color="0.85", lw=0)
        panel.step(b["t"], b["cued"], where="post", color="tab:orange", label="stimulated group")
        panel.step(b["t"], b["other"], where="post", color="0.35", label="other groups")
        panel.set_title(f"{name} ({b['trials']} trials)", fontsize=10)
        panel.set_xlabel("time from trial start (ms)")
    panels[0].set_ylabel("E rate (Hz)")
    panels[0].legend(loc="upper right", fontsize=8)
    assert isinstance(fig, Figure)
    return fig


# The figures of a run folder, in the order `wmnet plot` lists them; False: no tight_layout (a colorbar
# spanning the panels).
FIGURES: tuple[tuple[str, Callable[[RunResult], Figure], bool], ...] = (
    ("raster.png", plot_raster, True),
    ("traces.png", plot_traces, True),
    ("rates.png", plot_rates, True),
    ("learning.png", plot_learning, True),
    ("efficacy_blocks.png", plot_efficacy_blocks, False),
    ("trials.png", plot_trials, True),
)


def save_run_figures(run_dir: str | Path) -> list[Path]:
    """Draw every figure of a run folder into DIR/figures/ (and, with a protocol, write DIR/epoch_rates.tsv).
    Returns the files written; figures of what the run did not record are skipped."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise WmnetError(f"{run_dir}: not a wmnet run folder (no run.json)")
    fig_dir = run_dir / "figures"
    try:
        fig_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise WmnetError(f"{fig_dir}: cannot create the figures folder ({e.strerror or e})") from None
    result = RunResult.from_folder(run_dir)
    if (run_dir / "events.tsv").exists() and (run_dir / "node_sets.json").exists():
        from wmnet.analysis import write_epoch_rates

        try:
            write_epoch_rates(run_dir)
        except OSError as e:
            where = getattr(e, "filename", None) or run_dir / "epoch_rates.tsv"
            raise WmnetError(f"{where}: cannot write the epoch rates ({e.strerror or e})") from None
    out = []
    for name, draw, tight in FIGURES:
        # The raster only if spikes were recorded (record.spikes: false writes no spikes.h5).
        if name == "raster.png" and not (run_dir / "spikes.h5").exists():
            continue
        dest = fig_dir / name
        try:
            fig = draw(result)
        except NothingToPlot:
            continue
        try:
            if tight:
                fig.tight_layout()
            fig.savefig(dest, dpi=120)
        except OSError as e:  # read errors of the run's files are WmnetErrors already (io.hdf5.read_live)
            raise WmnetError(
                f"{getattr(e, 'filename', None) or dest}: cannot write the figure ({e.strerror or e})"
            ) from None
        finally:
            plt.close(fig)
        out.append(dest)
    return out
