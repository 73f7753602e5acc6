"""The simulation's own bistability boundary for a homogeneous group, next to the mean-field's.

python bench/wm_boundary_scan.py CONFIG --g 0.6,0.7,0.8 [--seeds 0,1] [--delay 2000] --out DIR [--jobs 1]

For each within fraction g and seed: the config with plasticity off (the structure frozen), every E->E
synapse inside a prototype group potentiated with probability g (`projections.E->E.structure.within`;
every other kind at the config's p_potentiated, as the mean-field's scan of g_in assumes), and a
protocol of one cue of P1 (the config's training cue) followed by a delay of `--delay` ms. A group
that holds its rate through the whole delay (500 ms bins, last 200 ms >= 10 Hz, others <= 5 Hz) sits
above the boundary. Next to it, the mean-field's boundary in g_in (`wmnet.meanfield.scan`, 0.4-1.0
in steps of 0.005) for the same config.

Writes DIR/boundary_scan.json and prints a table. One probe is ~3 s simulated.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from wm_emergence_probe import delay_course  # type: ignore[import-not-found]

from wmnet import meanfield
from wmnet.config import Config, load_config
from wmnet.memory_states import delay_holds


def probe_config(base: dict[str, Any], g: float, seed: int, delay_ms: float) -> dict[str, Any]:
    cfg = copy.deepcopy(base)
    cfg["seed"] = seed
    cfg.setdefault("plasticity", {})["enabled"] = False
    ee = cfg["projections"].setdefault("E->E", {})
    ee["structure"] = {"within": g}
    train = next(e for e in cfg["protocol"]["epochs"] if e.get("block") == "train")
    epochs = copy.deepcopy(train["epochs"])
    for ep in epochs:
        if ep["name"] == "delay":
            ep["duration"] = float(delay_ms)
    cfg["protocol"] = {"initial_rest": 500, "epochs": [{"block": "probe", "groups": ["P1"], "epochs": epochs}]}
    cfg["record"] = {"synapses": None, "snapshots": [], "checkpoint_at_end": False}
    cfg.pop("duration", None)
    return cfg


def simulate(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    wmnet = str(Path(sys.executable).with_name("wmnet"))
    subprocess.run([wmnet, "run", str(path), "--out", str(out), "--overwrite", "--no-plot", "--quiet"], check=True)
    (h,) = [x for x in delay_holds(out) if x.block == "probe"]
    return {
        "last_200ms_hz": round(h.rate_hz, 2),
        "others_max_hz": round(h.others_max_hz, 2),
        "holds": h.holds,
        "delay_rate_500ms_bins_hz": delay_course(out, h.group),
    }


def theory_boundaries(cfg: Config) -> dict[str, float | None]:
    """The mean-field's boundary in g_in (0.4-1.0 in steps of 0.005), per slow-noise treatment."""
    out: dict[str, float | None] = {}
    for treatment in meanfield.SLOW_NOISE:
        sc = meanfield.scan(cfg, "g_in", np.linspace(0.4, 1.0, 121), max_active=1, slow_noise=treatment)
        out[treatment] = sc.boundary
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config", type=Path)
    ap.add_argument("--g", required=True, help="comma-separated within fractions")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--delay", type=float, default=2000.0, help="ms")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(args.config.read_text())
    gs = [float(x) for x in args.g.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, Any]] = []
    jobs = [(g, s) for s in seeds for g in gs]

    def one(job: tuple[float, int]) -> None:
        g, s = job
        r = {"g_in": g, "seed": s, **simulate(probe_config(base, g, s, args.delay), args.out / f"g{g:.3f}_s{s}")}
        print(json.dumps(r), flush=True)
        rows.append(r)

    with ThreadPoolExecutor(args.jobs) as ex:
        list(ex.map(one, jobs))
    rows.sort(key=lambda r: (r["seed"], r["g_in"]))
    mf = theory_boundaries(load_config(args.config))
    print(f"mean-field boundary in g_in: {mf}", flush=True)
    result = {"config": str(args.config), "delay_ms": args.delay, "mean_field_boundary": mf, "probes": rows}
    (args.out / "boundary_scan.json").write_text(json.dumps(result, indent=1))
    print(f"{'seed':>4} {'g_in':>6} {'holds':>5} {'last 200 ms':>11}  delay in 500 ms bins (Hz)")
    for r in rows:
        bins = r["delay_rate_500ms_bins_hz"]
        print(f"{r['seed']:>4} {r['g_in']:>6.3f} {r['holds']!s:>5} {r['last_200ms_hz']:>11.2f}  {bins}")


if __name__ == "__main__":
    main()
