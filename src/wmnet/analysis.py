"""Per-epoch analysis of a protocol run, from its files: how each group fired in each epoch.

    rows = epoch_rates(run_dir)        # one dict per epoch of events.tsv
    rows[5]["rate_hz"]["P2"]           # mean rate (Hz) of P2's E neurons in epoch 5
    write_epoch_rates(run_dir)         # the same as epoch_rates.tsv

Rates count pulse onsets in [start_step, stop_step) exactly, from spikes.h5. A group's rate is
that of its E neurons (the populations E and I are reported whole).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from wmnet.io.nodesets import read_groups
from wmnet.io.runinfo import read_json
from wmnet.io.sonata import read_spikes
from wmnet.protocol import read_events


def epoch_rates(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every epoch's row of events.tsv with `rate_hz`: {group: mean rate (Hz)} over its steps."""
    d = Path(run_dir)
    cfg = read_json(d / "run.json")["config"]
    n_e = cfg["populations"]["E"]["size"]
    n = n_e + cfg["populations"]["I"]["size"]
    dt = float(cfg["dt"])
    groups = read_groups(d / "node_sets.json", n_e, n)
    members = {name: ids if name in ("E", "I") else ids[ids < n_e] for name, ids in groups.items()}
    members = {name: ids for name, ids in members.items() if ids.size}
    spikes = read_spikes(d / "spikes.h5")
    t_e, id_e = spikes.get("E", (np.zeros(0), np.zeros(0, dtype=np.int64)))
    t_i, id_i = spikes.get("I", (np.zeros(0), np.zeros(0, dtype=np.int64)))
    steps = np.rint(np.concatenate([t_e, t_i]) / dt).astype(np.int64)
    ids = np.concatenate([id_e.astype(np.int64), id_i.astype(np.int64) + n_e])
    order = np.argsort(steps, kind="stable")
    steps, ids = steps[order], ids[order]
    member = np.zeros((len(members), n), dtype=bool)
    for j, g in enumerate(members.values()):
        member[j, g] = True
    sizes = member.sum(axis=1)
    rows = []
    for ev in read_events(d / "events.tsv"):
        k0, k1 = int(ev["start_step"]), int(ev["stop_step"])
        a, b = np.searchsorted(steps, [k0, k1])
        counts = member[:, ids[a:b]].sum(axis=1)
        seconds = (k1 - k0) * dt / 1000
        rows.append({**ev, "rate_hz": {name: float(c / (s * seconds)) for name, c, s in zip(members, counts, sizes)}})
    return rows


def write_epoch_rates(run_dir: str | Path) -> Path:
    """epoch_rates.tsv: the events.tsv columns, then one rate column (Hz) per group."""
    d = Path(run_dir)
    rows = epoch_rates(d)
    names = list(rows[0]["rate_hz"]) if rows else []
    path = d / "epoch_rates.tsv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        head = [k for k in rows[0] if k != "rate_hz"] if rows else []
        w.writerow(head + [f"rate_hz_{g}" for g in names])
        for r in rows:
            w.writerow([r[k] for k in head] + [f"{r['rate_hz'][g]:.4g}" for g in names])
    return path


def trial_summary(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (block, epoch name) of blocks with one group per trial: the mean rate of the trial's
    group ("cued"), of the other groups of that block ("other"), and of each population."""
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    block_groups: dict[str, set[str]] = {}
    for r in rows:
        if r["block"] != "n/a" and r["group"] != "n/a" and "+" not in r["group"]:
            block_groups.setdefault(r["block"], set()).add(r["group"])
    for r in rows:
        g = r["group"]
        if r["block"] not in block_groups or g not in r["rate_hz"]:
            continue
        acc = out.setdefault((r["block"], r["trial_type"]), {"cued": [], "other": [], "E": [], "I": []})
        acc["cued"].append(r["rate_hz"][g])
        acc["other"] += [r["rate_hz"][o] for o in block_groups[r["block"]] if o != g and o in r["rate_hz"]]
        acc["E"].append(r["rate_hz"].get("E", np.nan))
        acc["I"].append(r["rate_hz"].get("I", np.nan))
    return {key: {k: float(np.mean(v)) if v else float("nan") for k, v in acc.items()} for key, acc in out.items()}


def trial_psth(run_dir: str | Path, bin_ms: float = 20.0) -> dict[str, dict[str, Any]]:
    """Trial-averaged rates of blocks whose trials stimulate one group each, aligned to the trial
    start: per block, t (bin starts, ms from the trial start), `cued` (rate of the trial's group),
    `other` (mean of the block's other groups), `epochs` [(name, start, stop) ms] of one trial."""
    d = Path(run_dir)
    cfg = read_json(d / "run.json")["config"]
    n_e = cfg["populations"]["E"]["size"]
    dt = float(cfg["dt"])
    groups = read_groups(d / "node_sets.json", n_e, n_e + cfg["populations"]["I"]["size"])
    t_e, id_e = read_spikes(d / "spikes.h5").get("E", (np.zeros(0), np.zeros(0, dtype=np.int64)))
    steps = np.rint(t_e / dt).astype(np.int64)
    trials: dict[str, list[list[dict[str, str]]]] = {}
    for ev in read_events(d / "events.tsv"):
        if ev["block"] == "n/a" or ev["group"] == "n/a" or "+" in ev["group"]:
            continue
        runs = trials.setdefault(ev["block"], [])
        key = (ev["repetition"], ev["group"])
        if runs and (runs[-1][0]["repetition"], runs[-1][0]["group"]) == key:
            runs[-1].append(ev)
        else:
            runs.append([ev])
    out: dict[str, dict[str, Any]] = {}
    bin_steps = max(1, round(bin_ms / dt))
    for block, runs in trials.items():
        names = sorted({r[0]["group"] for r in runs})
        length = int(runs[0][-1]["stop_step"]) - int(runs[0][0]["start_step"])
        n_bins = length // bin_steps
        rate = {g: np.zeros(n_bins) for g in names}  # summed over trials, per cued group
        cued, other = np.zeros(n_bins), np.zeros(n_bins)
        for run in runs:
            k0 = int(run[0]["start_step"])
            a, b = np.searchsorted(steps, [k0, k0 + n_bins * bin_steps])
            bins = (steps[a:b] - k0) // bin_steps
            for g in names:
                ids = groups[g][groups[g] < n_e]
                hit = np.isin(id_e[a:b], ids)
                rate[g] = np.bincount(bins[hit], minlength=n_bins) / (ids.size * bin_steps * dt / 1000)
            cued += rate[run[0]["group"]]
            others = [rate[g] for g in names if g != run[0]["group"]]
            other += np.mean(others, axis=0) if others else np.nan
        k0 = int(runs[0][0]["start_step"])
        out[block] = {
            "t": np.arange(n_bins) * bin_steps * dt,
            "cued": cued / len(runs),
            "other": other / len(runs),
            "trials": len(runs),
            "epochs": [
                (e["trial_type"], (int(e["start_step"]) - k0) * dt, (int(e["stop_step"]) - k0) * dt) for e in runs[0]
            ],
        }
    return out
