"""Memory states in a run: which delays hold activity, and when learning first makes a group hold one.

A group *holds* a delay when, in the delay's last `last_ms` (default 200 ms), it fires at least
`hold_hz` (10 Hz) while every other prototype group stays at or below `others_hz` (5 Hz): the
after-training criteria of docs/tutorial.md. The *emergence* of a group's memory state is the first
training presentation (a `train` block trial of that group) whose delay it holds; the within-group
potentiated fraction at the end of that presentation's cue is compared with the mean-field critical
within-group fraction g_in (docs/meanfield.md), computed with the other fractions measured at the
same moment.

    from wmnet.memory_states import delay_holds, emergence, plot_emergence
    for e in emergence("runs/working_memory_cpu"):
        print(e.group, e.presentation, e.g_in, e.g_critical)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import matplotlib.figure
import numpy as np

from wmnet.io.runinfo import read_json
from wmnet.protocol import read_events

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class DelayHold:
    """One trial's delay: the cued group's rate (Hz) at the delay's end, and the others' maximum."""

    block: str
    repetition: str
    group: str
    delay_end_ms: float  # end of the delay (ms from the start of the run)
    rate_hz: float  # the cued group, over the delay's last `last_ms`
    others_max_hz: float  # the highest other prototype group over the same window
    holds: bool


@dataclass(frozen=True)
class Emergence:
    """The first training presentation after which `group` holds its delay (None: never)."""

    group: str
    presentation: int | None  # 1-based count of the group's training trials
    t_ms: float | None  # end of that presentation's cue (ms)
    g_in: float | None  # the group's within potentiated fraction at t_ms
    g_critical: float | None  # mean-field critical g_in, other fractions as measured at t_ms
    g_in_previous: float | None = None  # the within fraction after the previous (not yet held) presentation's cue


def _time_axis(f: h5py.File) -> tuple[float, float]:
    """(start, step) in ms of a SONATA-style series file's `time` dataset (start, stop, step)."""
    t0, _, step = (float(x) for x in f["time"][:])
    return t0, step


def _rates(run_dir: Path) -> tuple[dict[str, np.ndarray], float, float]:
    with h5py.File(run_dir / "rates.h5", "r") as f:
        t0, step = _time_axis(f)
        return {name: f[f"rates/{name}/rate_hz"][:] for name in f["rates"]}, t0, step


def _prototype_names(run_dir: Path) -> list[str]:
    cfg = read_json(run_dir / "run.json")["config"]
    pr = (cfg.get("groups") or {}).get("prototypes")
    return [f"P{i + 1}" for i in range(int(pr["count"]))] if pr else []


def delay_holds(
    run_dir: str | Path, last_ms: float = 200.0, hold_hz: float = 10.0, others_hz: float = 5.0
) -> list[DelayHold]:
    """Every trial of the protocol that has a `delay` epoch (a cued group): does its group hold it?

    The delay ends where the trial's last epoch whose name starts with `delay` ends (so a `delay`
    followed by `delay_end` counts as one delay). Rates come from rates.h5 (its bins must divide
    `last_ms`)."""
    d = Path(run_dir)
    rates, t0, step = _rates(d)
    names = [g for g in _prototype_names(d) if g in rates]
    cfg = read_json(d / "run.json")["config"]
    dt = float(cfg["dt"])
    trials: dict[tuple[str, str, str], float] = {}
    for ev in read_events(d / "events.tsv"):
        if ev["block"] == "n/a" or ev["group"] not in names or not str(ev["trial_type"]).startswith("delay"):
            continue
        key = (str(ev["block"]), str(ev["repetition"]), str(ev["group"]))
        trials[key] = max(trials.get(key, 0.0), int(ev["stop_step"]) * dt)
    out = []
    for (block, rep, group), end in trials.items():
        j1 = int(round((end - t0) / step))
        j0 = j1 - int(round(last_ms / step))
        if j0 < 0 or j1 > len(rates[group]):
            continue  # not (yet) recorded
        r = float(rates[group][j0:j1].mean())
        others = max((float(rates[g][j0:j1].mean()) for g in names if g != group), default=0.0)
        out.append(DelayHold(block, rep, group, end, r, others, r >= hold_hz and others <= others_hz))
    return out


def _fractions_at(run_dir: Path, t_ms: float) -> dict[str, float]:
    """Potentiated fraction of every recorded synapse pair at the sample nearest before t_ms."""
    with h5py.File(run_dir / "synapses.h5", "r") as f:
        t0, step = _time_axis(f)
        out = {}
        for pair in f["synapses"]:
            p = f[f"synapses/{pair}/potentiated_fraction"][:]
            k = min(len(p) - 1, int(math.floor((t_ms - t0) / step + 1e-9)))
            if k >= 0:
                out[pair] = float(p[k])
        return out


def _critical_g_in(run_dir: Path, fractions: dict[str, float], group: str, names: list[str]) -> float | None:
    """The mean-field bistability boundary in g_in (searched in 0.5-1; every group's within fraction set to
    g_in), the other kinds of synapse as measured in `fractions` (a kind not recorded: the config's)."""
    from wmnet import meanfield
    from wmnet.config import Config

    cfg = Config.model_validate(read_json(run_dir / "run.json")["config"])
    groups = set(names)

    def kind(pair: str) -> str | None:
        pre, _, post = pair.partition("->")
        if pre in groups and post in groups:
            return "within" if pre == post else "between"
        if pre in groups and post == "nonselective":
            return "to_nonselective"
        if pre == "nonselective" and post in groups:
            return "from_nonselective"
        return "nonselective" if pre == post == "nonselective" else None

    def pick(own: str, k: str) -> float | None:
        # The group's own pair if it was recorded, else the mean of the recorded pairs of that kind.
        if own in fractions:
            return fractions[own]
        same = [v for pair, v in fractions.items() if kind(pair) == k]
        return float(np.mean(same)) if same else None

    g = {
        "g_between": pick("", "between"),
        "g_to_nonselective": pick(f"{group}->nonselective", "to_nonselective"),
        "g_from_nonselective": pick(f"nonselective->{group}", "from_nonselective"),
        "g_nonselective": pick("nonselective->nonselective", "nonselective"),
    }
    sc = meanfield.scan(
        cfg,
        "g_in",
        np.linspace(0.5, 1.0, 26),  # g_in in steps of 0.02: the boundary to within 0.01
        g_between=g["g_between"],
        g_to_nonselective=g["g_to_nonselective"],
        g_from_nonselective=g["g_from_nonselective"],
        g_nonselective=g["g_nonselective"],
    )
    return sc.boundary


def emergence(run_dir: str | Path, critical: bool = True, **hold: float) -> list[Emergence]:
    """Per prototype group with training trials, the first one whose delay it holds (delay_holds)."""
    d = Path(run_dir)
    names = _prototype_names(d)
    cue_end: dict[tuple[str, str], float] = {}
    cfg = read_json(d / "run.json")["config"]
    dt = float(cfg["dt"])
    for ev in read_events(d / "events.tsv"):
        if ev["block"] == "train" and str(ev["trial_type"]).startswith("cue"):
            cue_end[(str(ev["repetition"]), str(ev["group"]))] = int(ev["stop_step"]) * dt
    out = []
    for group in names:
        trials = sorted(
            (h for h in delay_holds(d, **hold) if h.block == "train" and h.group == group),
            key=lambda h: h.delay_end_ms,
        )
        if not trials:
            continue
        first = next((i for i, h in enumerate(trials) if h.holds), None)
        if first is None:
            out.append(Emergence(group, None, None, None, None))
            continue
        t = cue_end[(trials[first].repetition, group)]
        fr = _fractions_at(d, t)
        g_in = fr.get(f"{group}->{group}")
        prev = None
        if first > 0:
            prev = _fractions_at(d, cue_end[(trials[first - 1].repetition, group)]).get(f"{group}->{group}")
        g_crit = _critical_g_in(d, fr, group, names) if critical else None
        out.append(Emergence(group, first + 1, t, g_in, g_crit, prev))
    return out


def emergence_table(rows: list[Emergence]) -> list[dict[str, Any]]:
    """JSON-ready rows."""
    return [asdict(r) for r in rows]


def has_training(run_dir: str | Path) -> bool:
    """Whether the run's protocol has `train` trials of prototype groups and synapses.h5 (so emergence applies)."""
    d = Path(run_dir)
    if not (d / "events.tsv").exists() or not (d / "synapses.h5").exists() or not (d / "rates.h5").exists():
        return False
    names = set(_prototype_names(d))
    return any(ev["block"] == "train" and ev["group"] in names for ev in read_events(d / "events.tsv"))


def mark_emergence(
    ax: Axes, rows: list[Emergence], time_unit_ms: float = 1.0, colors: dict[str, str] | None = None
) -> None:
    """On a plot of potentiated fractions against time (in units of `time_unit_ms` ms), mark each
    group's emergence (a dot at its within fraction then, a dotted vertical line) and its mean-field
    critical g_in (a dashed horizontal line), in `colors[group]` (default C0, C1, ... by order)."""
    for i, r in enumerate(rows):
        color = (colors or {}).get(r.group, f"C{i}")
        if r.t_ms is not None and r.g_in is not None:
            x = r.t_ms / time_unit_ms
            ax.axvline(x, color=color, lw=0.8, ls=":")
            ax.plot([x], [r.g_in], "o", color=color, ms=6, mec="k", mew=0.5)
            ax.annotate(
                f"{r.group} holds after presentation {r.presentation}: g_in {r.g_in:.2f}"
                + (f", critical {r.g_critical:.2f}" if r.g_critical is not None else ""),
                (x, r.g_in),
                xytext=(4, -12 - 10 * i),
                textcoords="offset points",
                fontsize=7,
                color=color,
            )
        if r.g_critical is not None:
            ax.axhline(r.g_critical, color=color, lw=0.8, ls="--")


def plot_emergence(
    run_dir: str | Path, ax: Axes | None = None, rows: list[Emergence] | None = None
) -> matplotlib.figure.Figure:
    """Within-group potentiated fractions over time with each group's emergence marked
    (mark_emergence), on `ax` or a new figure."""
    import matplotlib.pyplot as plt

    d = Path(run_dir)
    rows = emergence(d) if rows is None else rows
    from matplotlib.figure import Figure

    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    else:
        parent = ax.get_figure(root=True)
        assert isinstance(parent, Figure)
        fig = parent
    with h5py.File(d / "synapses.h5", "r") as f:
        t0, step = _time_axis(f)
        for i, r in enumerate(rows):
            key = f"synapses/{r.group}->{r.group}/potentiated_fraction"
            if key in f:
                p = f[key][:]
                ax.plot((t0 + step * np.arange(len(p))) / 1000, p, color=f"C{i}", lw=1, label=r.group)
    mark_emergence(ax, rows, time_unit_ms=1000.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("within-group potentiated fraction")
    ax.set_title("emergence of memory states (dot: first held delay; dashed: mean-field critical g_in)", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    return fig


@dataclass(frozen=True)
class Criterion:
    """One of docs/tutorial.md's working-memory criteria, measured on a run."""

    name: str
    value: str  # what was measured, in words and numbers
    passed: bool
    values: dict[str, float] = field(default_factory=dict)  # the same numbers by name (rates in Hz)


def _trials(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, dict[str, float]]]:
    out: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for r in rows:
        if r["block"] != "n/a":
            out.setdefault((str(r["block"]), str(r["repetition"]), str(r["group"])), {})[str(r["trial_type"])] = r[
                "rate_hz"
            ]
    return out


def _delay_mean(ep: dict[str, dict[str, float]], durations: dict[str, float], group: str) -> float:
    """Duration-weighted mean over the trial's epochs whose names start with `delay`."""
    names = [n for n in ep if n.startswith("delay")]
    total = sum(durations[n] for n in names)
    return sum(ep[n][group] * durations[n] for n in names) / total


def criteria(run_dir: str | Path, spontaneous_hz: tuple[float, float] = (1.0, 5.0)) -> list[Criterion]:
    """The working-memory criteria (docs/tutorial.md) on a run of the working-memory protocol:
    epochs `spontaneous_*` (no cue), blocks `test_before`, `train`, `test_after` (trials with `cue`
    and `delay*` epochs, the last 200 ms as `delay_end`) and `handover` (`cue_A`, `delay_A`, `cue_B`,
    `delay_B`, `delay_B_end`). Groups never cued in `train` are the untrained controls."""
    from wmnet.analysis import epoch_rates

    d = Path(run_dir)
    names = _prototype_names(d)
    rates, t0, step = _rates(d)
    recorded_ms = t0 + step * len(rates["E"])  # a running run: only the epochs it has completed
    rows = [r for r in epoch_rates(d) if (float(r["onset"]) + float(r["duration"])) * 1000 <= recorded_ms + 1e-6]
    durations = {str(r["trial_type"]): float(r["duration"]) for r in rows}
    out: list[Criterion] = []
    for r in rows:
        if r["block"] == "n/a" and str(r["trial_type"]).startswith("spontaneous"):
            e, i = r["rate_hz"]["E"], r["rate_hz"]["I"]
            j0, j1 = (
                int(round((float(r["onset"]) * 1000 - t0) / step)),
                int(round(((float(r["onset"]) + float(r["duration"])) * 1000 - t0) / step)),
            )
            per_s = max(1, int(round(1000 / step)))
            peak = max(
                float(rates[g][k : k + per_s].mean())
                for g in names
                for k in range(j0, max(j0 + 1, j1 - per_s + 1), per_s)
            )
            out.append(
                Criterion(
                    f"{r['trial_type']}: E in {spontaneous_hz[0]:g}-{spontaneous_hz[1]:g} Hz, I < 20 Hz, "
                    "no group ignites",
                    f"{float(r['duration']):g} s: E {e:.2f} Hz, I {i:.2f} Hz, highest group in any 1 s {peak:.2f} Hz",
                    spontaneous_hz[0] <= e <= spontaneous_hz[1] and i < 20 and peak <= 5.0,
                    {"E": e, "I": i, "peak_group": peak},
                )
            )
    trials = _trials(rows)
    trained = {g for (b, _, g) in trials if b == "train"}
    for (block, _, group), ep in trials.items():
        if block not in ("test_before", "test_after") or "cue" not in ep or "delay_end" not in ep:
            continue
        mean = _delay_mean(ep, durations, group)
        oth = [_delay_mean(ep, durations, g) for g in names if g != group]
        last = ep.get("delay_end", {}).get(group, float("nan"))
        ratio = mean / max(float(np.mean(oth)), 1e-9)
        nums = {"delay": mean, "others": float(np.mean(oth)), "others_max": max(oth), "ratio": ratio, "last": last}
        text = (
            f"delay {mean:.1f} Hz, others {np.mean(oth):.2f} (max {max(oth):.2f}), x{ratio:.1f}, last 200 ms {last:.1f}"
        )
        if block == "test_before" or group not in trained:
            label = "before training" if block == "test_before" else "untrained control"
            out.append(Criterion(f"{label} {group}: delay <= 2x others", text, ratio <= 2.0, nums))
        else:
            ok = mean >= 15 and ratio >= 4 and last >= 10 and max(oth) <= 5
            out.append(
                Criterion(f"after training {group}: >= 15 Hz, >= 4x, last 200 ms >= 10, others <= 5", text, ok, nums)
            )
    for (block, _, pair), ep in trials.items():
        if block == "handover" and "delay_B_end" in ep:
            a, b = pair.split("+")
            end = ep["delay_B_end"]
            out.append(
                Criterion(
                    f"hand-over {a}->{b}: {a} <= 5 Hz, {b} >= 10 Hz at the end",
                    f"delay_A {a} {ep['delay_A'][a]:.1f}; last 200 ms {a} {end[a]:.1f}, {b} {end[b]:.1f} Hz",
                    end[a] <= 5 and end[b] >= 10,
                    {"delay_A": ep["delay_A"][a], "first_end": end[a], "second_end": end[b]},
                )
            )
    return out
