"""wmnet benchmark: wall seconds per simulated second (s/s), against the dense reference engine.

    python bench/bench.py                       # default network + low activity (+ scale points)
    python bench/bench.py --points default --duration 200 --ref-duration 5

Every point reports build time, s/s, peak memory and, for the default network, the reference
engine's s/s measured in the same process on the same device, and the ratio. Results are
printed and written as JSON (--json). Absolute times on shared machines are noisy; the ratio
within one run is the number to compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from wmnet.config import load_config
from wmnet.memory import footprint
from wmnet.network import Network
from wmnet.simulation import Simulation, device_name

# Fixed in-degree scale points: 80% of the inputs from E, 20% from I, as in the p = 0.2 network.
SCALE = {
    "scale100k": 100_000,
    "scale1M": 1_000_000,
}
POINTS = {
    "default": [],
    # Weaker drive: the sinusoid's amplitude is cut until E fires below 10 Hz.
    "low": ["stimulus.amplitude_max=1.0"],
    # GPU: synaptic sums in fixed point (bitwise reproducible) instead of float atomics.
    "default_det": ["deterministic=true"],
}


def scale_overrides(n: int, k_in: int = 2000) -> list[str]:
    n_e, n_i = int(0.8 * n), n - int(0.8 * n)
    k_e, k_i = int(0.8 * k_in), k_in - int(0.8 * k_in)
    return [
        f"populations.E.size={n_e}",
        f"populations.I.size={n_i}",
        f"projections.E->E.k_in={k_e}",
        f"projections.E->I.k_in={k_e}",
        f"projections.I->E.k_in={k_i}",
        f"projections.I->I.k_in={k_i}",
    ]


def peak_memory(device: torch.device) -> dict[str, float]:
    out = {"host_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        out["device_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def measure(overrides: list[str], device: str, engine: str, duration: float, warmup: float) -> dict[str, Any]:
    cfg = load_config(
        None,
        overrides
        + [
            f"device={device}",
            "dtype=float32",
            f"engine={engine}",
            "record.traces.variables=[]",
            "record.synapses=null",
        ],
    )
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    net = Network.build(cfg)
    sim = Simulation(net)
    if warmup:
        sim.run(duration=warmup, progress=False)  # compile kernels, reach the steady regime
    if net.device.type == "cuda":
        torch.cuda.synchronize(net.device)
    t0 = time.perf_counter()
    res = sim.run(duration=duration, progress=False)
    if net.device.type == "cuda":
        torch.cuda.synchronize(net.device)
    wall = time.perf_counter() - t0
    fp = footprint(net)
    pops = res.summary["populations"]
    return {
        "engine": sim.engine_name,
        "n_neurons": net.n,
        "n_synapses": net.connectivity.n_synapses(),
        "build_s": round(net.build_seconds, 3),
        "simulated_ms": duration,
        "wall_s": round(wall, 3),
        "s_per_s": wall / (duration / 1000),
        "rate_E_hz": round(pops["E"]["rate_hz"], 2),
        "rate_I_hz": round(pops["I"]["rate_hz"], 2),
        "sigma_fraction": round(res.summary["sigma_fraction"], 4),
        "bytes_per_synapse": fp["bytes_per_synapse"],
        "model_bytes": fp["bytes"]["total"],
        **peak_memory(net.device),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--points", default="default,low", help="comma list of: default, default_det, low, scale100k, scale1M"
    )
    ap.add_argument("--duration", type=float, default=1000.0, help="simulated ms per point (sparse engine)")
    ap.add_argument("--scale-duration", type=float, default=20.0, help="simulated ms for scale points")
    ap.add_argument("--ref-duration", type=float, default=5.0, help="simulated ms for the reference engine")
    ap.add_argument(
        "--warmup",
        type=float,
        default=40.0,
        help="simulated ms before timing (compiles kernels and captures the GPU graphs)",
    )
    ap.add_argument("--json", type=Path, help="write results here")
    args = ap.parse_args()
    dev = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    results: dict[str, Any] = {
        "device": str(dev),
        "device_name": device_name(dev),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "points": {},
    }
    for point in args.points.split(","):
        if point in SCALE:
            r = measure(scale_overrides(SCALE[point]), str(dev), "auto", args.scale_duration, args.warmup)
        else:
            r = measure(POINTS[point], str(dev), "auto", args.duration, args.warmup)
        results["points"][point] = r
        report(point, r)
    if "default" in results["points"]:
        # Last, so that its dense N×N matrices do not raise the other points' peak memory.
        r = results["points"]["default"]
        ref = measure([], str(dev), "reference", args.ref_duration, 0.0)
        r["reference_s_per_s"] = ref["s_per_s"]
        r["speedup_vs_reference"] = ref["s_per_s"] / r["s_per_s"]
        results["points"]["reference"] = ref
        report("reference", ref)
        print(
            f"default network: sparse {r['s_per_s']:.2f} s/s, reference {ref['s_per_s']:.1f} s/s, "
            f"ratio {r['speedup_vs_reference']:.1f}x (same run, same device)"
        )
    print(f"device: {results['device_name']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(point: str, r: dict[str, Any]) -> None:
    line = (
        f"{point:10s} {r['engine']:9s} N={r['n_neurons']:>9,} syn={r['n_synapses']:>13,} "
        f"build {r['build_s']:7.2f} s  {r['s_per_s']:9.2f} s/s  E {r['rate_E_hz']:6.1f} Hz  "
        f"peak host {r['host_peak_rss_gib']:.2f} GiB"
    )
    if "device_peak_gib" in r:
        line += f" device {r['device_peak_gib']:.2f} GiB"
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
