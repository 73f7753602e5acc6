"""Why a group first holds its delay below the mean-field's critical within fraction: a test.

python bench/wm_emergence_probe.py RUN --out DIR [--scan 0.66,0.72,0.78,0.84,0.9] [--jobs 1]

RUN is a working-memory run (configs/working_memory*.yaml) with `record.snapshots` at the end of each
group's emergence cue (memory_states.emergence gives the times). For each group that holds:

1. Structure at emergence, from the snapshot: the within fraction g_in (as synapses.h5 has it), the
   per-neuron fraction of potentiated inputs from the group, and the rate-weighted fraction
   g_w = sum_ij nu_i nu_j b_ij / sum_ij nu_i nu_j c_ij (b: potentiated, c: a synapse, nu: each neuron's rate
   over the delay that followed), i.e. the fraction that the neurons carrying the delay activity see.
2. Cause, by simulation with plasticity off (the structure frozen) from that snapshot: a cue and a 1 s
   delay with (a) the learned structure, (b) the same synapses with the group's within potentiated bits
   shuffled among them (the same g_in, no Hebbian correlation), and (c) with `--scan`, the within bits
   drawn anew at each fraction g (the mean-field's homogeneous group), so that the simulation's own
   boundary for a homogeneous group is measured next to the theory's.

Writes DIR/emergence_probe.json and prints a table. Every probe is a `wmnet run` of ~2.3 s simulated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wmnet.config import Config
from wmnet.io.connectivity_files import read_npz
from wmnet.io.runinfo import read_json
from wmnet.io.sonata import read_spikes
from wmnet.meanfield import build
from wmnet.meanfield.build import snapshot_potentiation
from wmnet.meanfield.fixed_points import solve as solve_model
from wmnet.meanfield.theory import Model
from wmnet.memory_states import delay_holds, emergence
from wmnet.protocol import read_events
from wmnet.result import snapshot_times


def group_ids(run: Path, name: str) -> np.ndarray:
    return np.asarray(read_json(run / "node_sets.json")[name]["node_id"], dtype=np.int64)


def within_mask(snap: dict[str, np.ndarray], ids: np.ndarray, n_e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask over E->E synapses in CSR order: pre and post both in ids, pre index, post index) of each synapse."""
    rowptr, post = snap["EE_rowptr"], snap["EE_post"].astype(np.int64)
    pre = np.repeat(np.arange(n_e), np.diff(rowptr))
    member = np.zeros(n_e, dtype=bool)
    member[ids] = True
    return member[pre] & member[post], pre, post


def neuron_rates(run: Path, ids: np.ndarray, t0: float, t1: float, n_e: int) -> np.ndarray:
    """Rate (Hz) of every E neuron over [t0, t1) ms, indexed by E id (others 0)."""
    ts, nid = read_spikes(run / "spikes.h5")["E"]
    sel = (ts >= t0) & (ts < t1)
    counts = np.bincount(nid[sel].astype(np.int64), minlength=n_e).astype(float)
    out = np.zeros(n_e)
    out[ids] = counts[ids] / ((t1 - t0) / 1000.0)
    return out


def structure(run: Path, snap: dict[str, np.ndarray], group: str, t_cue_end: float) -> dict[str, Any]:
    n_e = int(snap["n_E"])
    ids = group_ids(run, group)
    m, pre, post = within_mask(snap, ids, n_e)
    b = snap["EE_potentiated"][m].astype(float)
    pr, po = pre[m], post[m]
    nu = neuron_rates(run, ids, t_cue_end, t_cue_end + 1000.0, n_e)
    w = nu[pr] * nu[po]
    per_post = np.bincount(po, weights=b, minlength=n_e)[ids] / np.maximum(np.bincount(po, minlength=n_e)[ids], 1)
    r = nu[ids]
    top = r >= np.quantile(r, 0.5)
    return {
        "g_in": float(b.mean()),
        "g_rate_weighted": float((w * b).sum() / w.sum()) if w.sum() > 0 else None,
        "per_neuron_fraction_sd": float(per_post.std()),
        "corr_fraction_rate": float(np.corrcoef(per_post, r)[0, 1]) if r.std() > 0 else None,
        "fraction_top_half_by_rate": float(per_post[top].mean()),
        "fraction_bottom_half_by_rate": float(per_post[~top].mean()),
        "delay_rate_hz": float(r.mean()),
    }


def split_unit(model: Model, cfg: Config, name: str, shares: np.ndarray, G: np.ndarray) -> Model:
    """`model` with unit `name` split into len(shares) sub-units (their shares of its neurons), whose
    potentiated fractions among themselves are G[post, pre]; every other coupling as the unit's."""
    u = model.names.index(name)
    k = len(shares)
    idx = np.array([*range(u), *([u] * k), *range(u + 1, len(model.names))])
    share = np.ones(len(idx))
    share[u : u + k] = shares
    names = [*model.names[:u], *(f"{name}.{a}" for a in range(k)), *model.names[u + 1 :]]
    ix = np.ix_(idx, idx)
    ee = cfg.projections.EE
    j = G * ee.J_p + (1 - G) * ee.J_d
    j2 = G * ee.J_p**2 + (1 - G) * ee.J_d**2
    sub = slice(u, u + k)
    mats: dict[str, np.ndarray] = {}
    for f in ("K_slow", "K_fast", "J_slow", "J_fast", "J2_slow", "J2_fast", "private_slow", "private_fast"):
        m = getattr(model, f)[ix].copy()
        if f.startswith("K_"):
            m *= share[None, :]  # inputs from a sub-unit: its share of the unit's neurons
        mats[f] = m
    mats["J_slow"][sub, sub] = j * ee.slow_scale
    mats["J_fast"][sub, sub] = j * ee.fast_scale
    mats["J2_slow"][sub, sub] = j2 * ee.slow_scale**2
    mats["J2_fast"][sub, sub] = j2 * ee.fast_scale**2
    vecs = {
        f: getattr(model, f)[idx]
        for f in ("is_e", "tau_m", "theta", "v_reset", "t_ref", "tau_s", "ext_mean", "ext_D", "ext_tau")
    }
    return replace(
        model,
        names=names,
        size=model.size[idx] * share,
        release=[model.release[i] for i in idx],
        **vecs,
        **mats,  # type: ignore[arg-type]
    )


def split_holds(model: Model, name: str, k: int) -> dict[str, Any]:
    """Does the split model have a stable state with the sub-units of `name` at >= 10 Hz (size-weighted)
    next to a stable spontaneous state?"""
    sub = [i for i, n in enumerate(model.names) if n.startswith(f"{name}.")]
    fps = solve_model(model, max_active=k)
    w = model.size[sub] / model.size[sub].sum()
    best = 0.0
    spont = False
    for fp in fps:
        r = float(w @ (fp.nu[sub] * 1000))
        if fp.stable and r >= 10:
            best = max(best, r)
        spont |= fp.stable and fp.kind == "spontaneous"
    return {"memory_hz": best or None, "spontaneous_stable": spont, "bistable": bool(best and spont)}


def mean_field_split(run: Path, snap_path: Path, group: str, k: int) -> dict[str, Any]:
    """The mean-field of the run's config with the snapshot's fractions, and with `group` split into k
    equal sub-units by each neuron's fraction of potentiated inputs from the group (G measured)."""
    cfg = Config.model_validate(read_json(run / "run.json")["config"])
    snap = read_npz(snap_path, "snapshot")
    n_e = int(snap["n_E"])
    ids = group_ids(run, group)
    m, pre, post = within_mask(snap, ids, n_e)
    b = snap["EE_potentiated"][m].astype(float)
    pr, po = pre[m], post[m]
    frac = np.bincount(po, weights=b, minlength=n_e)[ids] / np.maximum(np.bincount(po, minlength=n_e)[ids], 1)
    order = ids[np.argsort(frac)]
    label = np.full(n_e, -1)
    for a, part in enumerate(np.array_split(order, k)):
        label[part] = a
    n = np.zeros((k, k))
    np.add.at(n, (label[po], label[pr]), 1)
    kk = np.zeros((k, k))
    np.add.at(kk, (label[po], label[pr]), b)
    G = kk / n
    shares = np.array([np.sum(label == a) for a in range(k)]) / len(ids)
    measured = snapshot_potentiation(cfg, snap_path)
    whole = build(cfg, measured=measured)
    out: dict[str, Any] = {"k": k, "G": G.round(3).tolist(), "g_mean": float(b.mean())}
    out["homogeneous"] = split_holds(split_unit(whole, cfg, group, np.array([1.0]), np.array([[b.mean()]])), group, 1)
    out["split"] = split_holds(split_unit(whole, cfg, group, shares, G), group, k)
    return out


def train_cue_ends(run: Path, group: str) -> list[float]:
    """End (ms) of every training cue of `group`, in time order."""
    dt = float(read_json(run / "run.json")["config"]["dt"])
    ends = [
        int(ev["stop_step"]) * dt
        for ev in read_events(run / "events.tsv")
        if ev["block"] == "train" and ev["group"] == group and str(ev["trial_type"]).startswith("cue")
    ]
    return sorted(ends)


def write_variant(src: dict[str, np.ndarray], path: Path, mask: np.ndarray, bits: np.ndarray) -> None:
    d = dict(src)
    pot = d["EE_potentiated"].copy()
    pot[mask] = bits
    d["EE_potentiated"] = pot
    L = d["EE_L"].copy()
    L[mask] = bits.astype(L.dtype)  # plasticity is off in the probe; L follows the bit
    d["EE_L"] = L
    with open(path, "wb") as f:
        np.savez_compressed(f, **d)  # type: ignore[arg-type]


def probe_config(run: Path, group: str, path: Path, delay_ms: float | None = None) -> None:
    """The run's config with plasticity off and a protocol of one training trial of `group` (its
    delay `delay_ms` long, if given)."""
    cfg = read_json(run / "run.json")["config"]
    cfg["plasticity"]["enabled"] = False
    train = next(e for e in cfg["protocol"]["epochs"] if e.get("block") == "train")
    if delay_ms is not None:
        for ep in train["epochs"]:
            if ep["name"] == "delay":
                ep["duration"] = float(delay_ms)
    cfg["protocol"] = {
        "initial_rest": 500,
        "epochs": [{"block": "probe", "groups": [group], "epochs": train["epochs"]}],
    }
    cfg["record"].update(synapses=None, snapshots=[], checkpoint_at_end=False)
    cfg.pop("duration", None)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def simulate(cfg: Path, conn: Path, out: Path) -> dict[str, Any]:
    wmnet = str(Path(sys.executable).with_name("wmnet"))
    cmd = [wmnet, "run", str(cfg), "--connectivity", str(conn), "--out", str(out)]
    cmd += ["--overwrite", "--no-plot", "--quiet"]
    subprocess.run(cmd, check=True)
    (h,) = [x for x in delay_holds(out) if x.block == "probe"]
    return {
        "last_200ms_hz": h.rate_hz,
        "others_max_hz": h.others_max_hz,
        "holds": h.holds,
        "delay_rate_500ms_bins_hz": delay_course(out, h.group),
    }


def delay_course(out: Path, group: str, bin_ms: float = 500.0) -> list[float]:
    """The cued group's rate (Hz) in successive `bin_ms` bins of the probe's delay: a decaying
    transient (a slow passage near a lost fixed point) shows as a falling sequence."""
    dt = float(read_json(out / "run.json")["config"]["dt"])
    (ev,) = [e for e in read_events(out / "events.tsv") if e["block"] == "probe" and e["trial_type"] == "delay"]
    t0, t1 = int(ev["start_step"]) * dt, int(ev["stop_step"]) * dt
    ids = group_ids(out, group)
    ts, nid = read_spikes(out / "spikes.h5")["E"]
    sel = np.isin(nid.astype(np.int64), ids) & (ts >= t0) & (ts < t1)
    counts = np.histogram(ts[sel], bins=np.arange(t0, t1 + bin_ms / 2, bin_ms))[0]
    return (counts / len(ids) / (bin_ms / 1000.0)).round(2).tolist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scan", default="", help="comma-separated within fractions for homogeneous groups")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="of the shuffles and draws")
    ap.add_argument("--delay", type=float, default=None, help="probe delay (ms); default the protocol's")
    ap.add_argument("--groups", default="", help="comma-separated groups to probe (default all that emerge)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    snaps = snapshot_times(args.run)
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[dict[str, Any], str, Path, Path, Path]] = []
    only = {g for g in args.groups.split(",") if g}
    for e in emergence(args.run):
        if only and e.group not in only:
            continue
        if e.t_ms is None or e.t_ms not in snaps:
            print(f"{e.group}: no snapshot at its emergence cue end ({e.t_ms} ms); skipped")
            continue
        snap = read_npz(snaps[e.t_ms], "snapshot")
        row: dict[str, Any] = {"group": e.group, "presentation": e.presentation, "t_ms": e.t_ms}
        row.update(g_in_synapses_h5=e.g_in, g_critical=e.g_critical, g_in_previous=e.g_in_previous)
        row.update(structure(args.run, snap, e.group, e.t_ms))
        for k in (2, 4):
            row[f"mean_field_split_{k}"] = mean_field_split(args.run, snaps[e.t_ms], e.group, k)
        prev = [t for t in train_cue_ends(args.run, e.group) if t < e.t_ms]
        if prev and prev[-1] in snaps:  # the presentation before, which the group did not hold
            row["previous"] = {
                "t_ms": prev[-1],
                **structure(args.run, read_npz(snaps[prev[-1]], "s"), e.group, prev[-1]),
            }
            for k in (2, 4):
                row["previous"][f"mean_field_split_{k}"] = mean_field_split(args.run, snaps[prev[-1]], e.group, k)
        print(json.dumps(row), flush=True)
        rows.append(row)
        cfg = args.out / f"probe_{e.group}.yaml"
        probe_config(args.run, e.group, cfg, args.delay)
        m, _, _ = within_mask(snap, group_ids(args.run, e.group), int(snap["n_E"]))
        bits = snap["EE_potentiated"][m]
        variants = {"learned": snaps[e.t_ms]}
        p = args.out / f"{e.group}_shuffled.npz"
        write_variant(snap, p, m, rng.permutation(bits))
        variants["shuffled"] = p
        for g in (float(x) for x in args.scan.split(",") if x):
            p = args.out / f"{e.group}_homogeneous_{g:.2f}.npz"
            write_variant(snap, p, m, (rng.random(m.sum()) < g).astype(bits.dtype))
            variants[f"homogeneous_{g:.2f}"] = p
        for name, conn in variants.items():
            jobs.append((row, name, cfg, conn, args.out / f"run_{e.group}_{name}"))

    def one(j: tuple[dict[str, Any], str, Path, Path, Path]) -> None:
        row, name, cfg, conn, out = j
        row[name] = simulate(cfg, conn, out)
        print(f"{row['group']} {name}: {row[name]}", flush=True)

    with ThreadPoolExecutor(args.jobs) as ex:
        list(ex.map(one, jobs))
    (args.out / "emergence_probe.json").write_text(json.dumps(rows, indent=1))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
