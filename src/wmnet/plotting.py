"""Figures drawn from a run's saved files (so `wmnet plot DIR` can redraw them at any time).

The matplotlib backend is left alone here (a notebook keeps its inline figures); the CLI
selects the non-interactive Agg backend before importing this module (cli.use_agg).
Figures of what a run did not record (spikes, traces, rates...) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from wmnet.errors import WmnetError
from wmnet.io.nodesets import read_groups
from wmnet.io.runinfo import read_json
from wmnet.io.series import read_series
from wmnet.io.sonata import read_report, read_spikes
from wmnet.protocol import read_events

COLORS = {"E": "tab:blue", "I": "tab:red"}
LABELS = {"v": "v (mV)", "i_s": "i_s (mV/ms)", "i_f": "i_f (mV/ms)", "x": "x", "a": "a"}
MAX_RASTER_NEURONS = {"E": 800, "I": 200}


def _group_color(name: str, names: list[str]) -> str:
    """E and I keep their colours; other groups take tab10 colours in a fixed order."""
    if name in COLORS:
        return COLORS[name]
    others = [n for n in names if n not in COLORS]
    return f"C{(others.index(name) + 2) % 10}" if name in others else "0.5"


def _group_names(run_dir: Path) -> list[str]:
    """The run's group names in their defined order (node_sets.json), or [] without one."""
    sets = run_dir / "node_sets.json"
    return [n for n in read_json(sets) if ":" not in n] if sets.exists() else []


def _shade_epochs(ax: plt.Axes, run_dir: Path) -> None:
    """Shade the protocol's selective-stimulus epochs in the group's colour, from events.tsv."""
    path = run_dir / "events.tsv"
    if not path.exists():
        return
    names = _group_names(run_dir)
    for row in read_events(path):
        selective = [part.split(":", 1)[1] for part in row["stimulus"].split("+") if part.startswith("selective:")]
        if selective:
            t0, dur = float(row["onset"]) * 1000, float(row["duration"]) * 1000
            ax.axvspan(t0, t0 + dur, color=_group_color(selective[0], names), alpha=0.15, lw=0)


def _save(fig: plt.Figure, dest: Path) -> Path:
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    plt.close(fig)
    return dest


def plot_raster(run_dir: Path, dest: Path, bin_ms: float = 5.0) -> Path:
    """Raster (E and I in two colours) over population rates in `bin_ms` bins."""
    info = read_json(run_dir / "run.json")
    cfg = info["config"]
    spikes = read_spikes(run_dir / "spikes.h5")
    t_end = info.get("simulated_ms") or cfg["duration"]
    fig, (ax_r, ax_p) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    offset = 0
    edges = np.arange(0, t_end + bin_ms, bin_ms)
    for pop in ("E", "I"):
        size = cfg["populations"][pop]["size"]
        shown = min(size, MAX_RASTER_NEURONS[pop])
        t, ids = spikes.get(pop, (np.zeros(0), np.zeros(0)))
        m = ids < shown
        ax_r.plot(t[m], ids[m] + offset, ",", color=COLORS[pop], rasterized=True)
        offset += shown
        counts, _ = np.histogram(t, edges)
        rate = counts / (size * bin_ms / 1000)
        ax_p.step(edges[:-1], rate, where="post", color=COLORS[pop], label=f"{pop} ({size} neurons)")
    ax_r.set_ylabel("neuron (E first)")
    shown_e = min(cfg["populations"]["E"]["size"], MAX_RASTER_NEURONS["E"])
    ax_r.axhline(shown_e - 0.5, color="0.7", lw=0.5)
    ax_r.set_ylim(-0.5, offset - 0.5)
    ax_r.set_title(
        f"Pulse onsets (first {MAX_RASTER_NEURONS['E']} E, {MAX_RASTER_NEURONS['I']} I shown) — "
        f"seed {info['seed']}, {info['engine']} engine, {info['dtype']}"
    )
    ax_p.set_ylabel(f"rate (Hz, {bin_ms:g} ms bins)")
    ax_p.set_xlabel("time (ms)")
    ax_p.set_xlim(0, t_end)
    ax_p.legend(loc="upper right", fontsize=8)
    return _save(fig, dest)


def plot_traces(run_dir: Path, dest: Path) -> Path | None:
    """One panel per recorded variable; one line per recorded neuron; v with θ marked."""
    info = read_json(run_dir / "run.json")
    cfg = info["config"]
    reports = {
        v: read_report(run_dir / "reports" / f"{v}.h5")
        for v in ("v", "i_s", "i_f", "x", "a")
        if (run_dir / "reports" / f"{v}.h5").exists()
    }
    # A report of no neurons (record.traces.neurons: []) holds no population: nothing to draw.
    variables = [v for v, r in reports.items() if r]
    if not variables:
        return None
    fig, axes = plt.subplots(len(variables), 1, figsize=(10, 2.0 * len(variables) + 0.8), sharex=True, squeeze=False)
    for ax, var in zip(axes[:, 0], variables):
        report = reports[var]
        for pop, (t, ids, data) in report.items():
            for col, nid in enumerate(ids):
                style = "-" if pop == "E" else "--"
                ax.plot(t, data[:, col], style, lw=0.8, label=f"{pop}{nid}")
            if var == "v":
                ax.axhline(cfg["populations"][pop]["theta"], color=COLORS[pop], ls=":", lw=1, label=f"θ ({pop})")
        ax.set_ylabel(LABELS[var])
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[0, 0].set_title(f"State traces (every {cfg['record']['traces']['every']} steps)")
    axes[-1, 0].set_xlabel("time (ms)")
    return _save(fig, dest)


def plot_rates(run_dir: Path, dest: Path) -> Path | None:
    """Population and group rates over time, from rates.h5."""
    path = run_dir / "rates.h5"
    if not path.exists():
        return None
    fig, ax = plt.subplots(figsize=(10, 3.6))
    t, s = read_series(path)  # consistent even while a run appends to the file
    found = [k.split("/")[1] for k in s if k.startswith("rates/") and k.endswith("/rate_hz")]
    names = [n for n in _group_names(run_dir) if n in found] + [n for n in found if n not in _group_names(run_dir)]
    for name in names:
        ax.step(
            t,
            s[f"rates/{name}/rate_hz"],
            where="post",
            color=_group_color(name, names),
            lw=1.2 if name in COLORS else 0.9,
            label=f"{name} ({s[f'rates/{name}/node_ids'].size} neurons)",
        )
    bin_ms = float(s["time"][2])
    _shade_epochs(ax, run_dir)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel(f"rate (Hz, {bin_ms:g} ms bins)")
    ax.set_title("Population and group rates")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, dest)


def plot_learning(run_dir: Path, dest: Path) -> Path | None:
    """Learning dynamics from synapses.h5: potentiated fraction and mean L per synapse group,
    and the switch rate (whole network)."""
    path = run_dir / "synapses.h5"
    if not path.exists():
        return None
    t, s = read_series(path)  # consistent even while a run appends to the file
    up, down = s["switches/up"], s["switches/down"]
    if up.size < 2:
        return None
    groups = {
        k.split("/")[1]: {"potentiated_fraction": s[k], "mean_L": s[k.replace("potentiated_fraction", "mean_L")]}
        for k in s
        if k.startswith("synapses/") and k.endswith("/potentiated_fraction")
    }
    fig, (ax_p, ax_l, ax_s) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    for name, g in groups.items():
        ax_p.plot(t, g["potentiated_fraction"], marker=".", ms=3, label=name)
        ax_l.plot(t, g["mean_L"], marker=".", ms=3, label=name)
    period_s = (t[1] - t[0]) / 1000
    ax_s.step(t[1:], up[1:] / period_s, where="pre", color="tab:green", label="up (potentiation)")
    ax_s.step(t[1:], down[1:] / period_s, where="pre", color="tab:purple", label="down (depression)")
    ax_p.set_ylabel("fraction potentiated")
    ax_p.set_title("Learning dynamics: E→E synapse groups (pre→post)")
    ax_l.set_ylabel("mean L")
    ax_s.set_ylabel("switches per s (network)")
    ax_s.set_xlabel("time (ms)")
    for ax in (ax_p, ax_l, ax_s):
        ax.legend(loc="upper right", fontsize=8)
        _shade_epochs(ax, run_dir)
    return _save(fig, dest)


def _e_blocks(run_dir: Path, n_e: int, n: int) -> dict[str, np.ndarray]:
    """Neuron groups for the block matrix: the run's groups (node_sets.json) restricted to E
    neurons, and the rest of E; without groups, ten equal index blocks of E."""
    groups: dict[str, np.ndarray] = {}
    path = run_dir / "node_sets.json"
    for name, ids in read_groups(path, n_e, n).items() if path.exists() else ():
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


def plot_efficacy_blocks(run_dir: Path, dest: Path) -> Path | None:
    """Mean E→E efficacy (mV/ms) between neuron groups (post × pre) at each snapshot."""
    snaps = sorted(
        (run_dir / "snapshots").glob("connectivity_*ms.npz"),
        key=lambda p: float(p.stem.removeprefix("connectivity_").removesuffix("ms")),
    )
    if not snaps:
        return None
    cfg = read_json(run_dir / "run.json")["config"]
    ee = cfg["projections"]["E->E"]
    n_e = cfg["populations"]["E"]["size"]
    groups = _e_blocks(run_dir, n_e, n_e + cfg["populations"]["I"]["size"])
    label = np.full(n_e, -1)
    for g, ids in enumerate(groups.values()):
        label[ids] = g
    n_g = len(groups)
    fig, axes = plt.subplots(1, len(snaps), figsize=(3.6 * len(snaps) + 1.2, 3.8), squeeze=False)
    image = None
    for ax, path in zip(axes[0], snaps):
        from wmnet.connectivity import read_npz

        d = read_npz(path, "snapshot")
        try:
            rowptr, post, pot = d["EE_rowptr"], d["EE_post"], d["EE_potentiated"]
            t_ms = float(d["t_ms"])
        except (KeyError, TypeError, ValueError):
            raise WmnetError(
                f"{path}: not a complete wmnet snapshot (EE_rowptr, EE_post, EE_potentiated, t_ms)"
            ) from None
        pre = np.repeat(np.arange(n_e), np.diff(rowptr))
        J = np.where(pot != 0, ee["J_p"], ee["J_d"])
        gi, gj = label[post], label[pre]
        ok = (gi >= 0) & (gj >= 0)
        total = np.bincount(gi[ok] * n_g + gj[ok], weights=J[ok], minlength=n_g * n_g)
        count = np.bincount(gi[ok] * n_g + gj[ok], minlength=n_g * n_g)
        mean = np.divide(total, count, out=np.full(n_g * n_g, np.nan), where=count > 0).reshape(n_g, n_g)
        image = ax.imshow(mean, vmin=ee["J_d"], vmax=ee["J_p"], cmap="viridis")
        ax.set_title(f"t = {t_ms:g} ms", fontsize=9)
        ax.set_xticks(range(n_g), list(groups), rotation=90, fontsize=6)
        ax.set_yticks(range(n_g), list(groups), fontsize=6)
        ax.set_xlabel("pre group")
    axes[0, 0].set_ylabel("post group")
    fig.colorbar(image, ax=axes[0].tolist(), label="mean E→E efficacy (mV/ms)", shrink=0.8)
    fig.suptitle("E→E efficacy between neuron groups at each snapshot")
    fig.savefig(dest, dpi=120)
    plt.close(fig)
    return dest


def plot_trials(run_dir: Path, dest: Path) -> Path | None:
    """Trial-averaged rate of the stimulated group against the block's other groups, one panel
    per block of single-group trials (e.g. before and after training): delay activity shows as
    the cued group staying above the others after its stimulus ends."""
    if not (run_dir / "events.tsv").exists() or not (run_dir / "node_sets.json").exists():
        return None
    from wmnet.analysis import trial_psth, write_epoch_rates

    write_epoch_rates(run_dir)
    blocks = trial_psth(run_dir)
    if not blocks:
        return None
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks) + 0.8, 3.4), squeeze=False, sharey=True)
    for ax, (name, b) in zip(axes[0], blocks.items()):
        for ep, t0, t1 in b["epochs"]:
            if ep == b["epochs"][0][0]:
                ax.axvspan(t0, t1, color="0.85", lw=0)
        ax.step(b["t"], b["cued"], where="post", color="tab:orange", label="stimulated group")
        ax.step(b["t"], b["other"], where="post", color="0.35", label="other groups")
        ax.set_title(f"{name} ({b['trials']} trials)", fontsize=10)
        ax.set_xlabel("time from trial start (ms)")
    axes[0, 0].set_ylabel("E rate (Hz)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    return _save(fig, dest)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw every figure of a run into DIR/figures/. Returns the files written."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise WmnetError(f"{run_dir}: not a wmnet run folder (no run.json)")
    fig_dir = run_dir / "figures"
    try:
        fig_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise WmnetError(f"{fig_dir}: cannot create the figures folder ({e.strerror or e})") from None
    out = []
    # The raster only if spikes were recorded (record.spikes: false writes no spikes.h5).
    draws = [(plot_raster, "raster.png")] if (run_dir / "spikes.h5").exists() else []
    for draw, name in (
        *draws,
        (plot_traces, "traces.png"),
        (plot_rates, "rates.png"),
        (plot_learning, "learning.png"),
        (plot_efficacy_blocks, "efficacy_blocks.png"),
        (plot_trials, "trials.png"),
    ):
        try:
            fig = draw(run_dir, fig_dir / name)
        except OSError as e:  # read errors of the run's files are WmnetErrors already (io.sonata.read_live)
            plt.close("all")
            raise WmnetError(
                f"{getattr(e, 'filename', None) or fig_dir / name}: cannot write the figure ({e.strerror or e})"
            ) from None
        if fig is not None:
            out.append(fig)
    return out
