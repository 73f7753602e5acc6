"""Peak memory of `wmnet export --nwb` against the number of spikes (issue 16; a benchmark, not a test).

For each spike count it writes a synthetic run folder (the default 8000 E + 2000 I network's
config; Poisson spikes at a uniform rate, written in time order with the project's SpikeWriter,
as a run writes them; no traces, rates or synapses), then exports it in a fresh process and
reports that process's peak RSS (ru_maxrss) next to the same process's RSS after importing
pynwb (the baseline), the export's wall time, and the file sizes.

    .venv/bin/python bench/export_memory.py                       # 1 M, 10 M and 70 M spikes
    .venv/bin/python bench/export_memory.py --spikes 1e6 2e7 --rate 130 --keep runs/bench-export
    .venv/bin/python bench/export_memory.py --max-spikes-in-memory 2e6   # smaller sort buckets

Needs about 2.5 × 16 bytes of disk per spike (spikes.h5, the NWB file, the bucket file).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import pynwb  # noqa: F401  (the baseline includes pynwb, hdmf and h5py)
from wmnet.io.nwb import to_nwb
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
to_nwb(sys.argv[1], sys.argv[2], max_spikes_in_memory=int(sys.argv[3]))
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_rss_mib": base / 1024, "peak_rss_mib": peak / 1024, "export_s": wall}))
"""


def make_run(folder: Path, n_spikes: int, rate_hz: float, seed: int) -> float:
    """A complete run folder with about n_spikes Poisson spikes of 10,000 neurons; returns its duration (ms)."""
    from wmnet.config import load_config
    from wmnet.io.runinfo import write_json
    from wmnet.io.sonata import PopulationRange, SpikeWriter

    cfg = load_config(None, [])
    n_e, n = cfg.populations.E.size, cfg.n_neurons
    duration = float(np.ceil(n_spikes / (n * rate_hz / 1000.0)))  # ms
    cfg = load_config(None, [f"duration={duration}"])
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    rng = np.random.default_rng(seed)
    writer = SpikeWriter(folder / "spikes.h5", [PopulationRange("E", 0, n_e), PopulationRange("I", n_e, n - n_e)])
    block_ms, written = 100.0, 0
    for t0 in np.arange(0.0, duration, block_ms):
        k = min(rng.poisson(n * rate_hz * block_ms / 1000.0), n_spikes - written)
        if k <= 0:
            break
        # On the dt grid, as the engines write them; sorted by time, then id.
        t = t0 + np.round(rng.uniform(0.0, min(block_ms, duration - t0), k) / cfg.dt) * cfg.dt
        ids = rng.integers(0, n, k)
        order = np.lexsort((ids, t))
        writer.append(t[order], ids[order])
        written += k
    writer.close()
    write_json(
        folder / "run.json",
        {
            "wmnet_run": 1,
            "seed": cfg.seed,
            "config": cfg.to_dict(),
            "status": "complete",
            "simulated_ms": duration,
            "steps_done": round(duration / cfg.dt),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime()),
            "versions": {"note": "synthetic run (bench/export_memory.py)"},
        },
    )
    return duration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spikes", type=float, nargs="+", default=[1e6, 1e7, 7e7], help="spike counts")
    ap.add_argument("--rate", type=float, default=130.0, help="mean rate per neuron (Hz; the seed network's)")
    ap.add_argument("--max-spikes-in-memory", type=float, default=None, help="to_nwb's sort budget (spikes)")
    ap.add_argument("--keep", help="write the folders here and keep them (default: a temporary folder)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    from wmnet.io.nwb import MAX_SPIKES_IN_MEMORY

    budget = int(args.max_spikes_in_memory or MAX_SPIKES_IN_MEMORY)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wmnet-export-bench-"))
    results = []
    try:
        for s in args.spikes:
            n_spikes = int(s)
            run = root / f"run-{n_spikes}"
            if run.exists():
                shutil.rmtree(run)
            t = time.perf_counter()
            duration = make_run(run, n_spikes, args.rate, seed=len(results))
            made = time.perf_counter() - t
            out = root / f"run-{n_spikes}.nwb"
            out.unlink(missing_ok=True)
            child = subprocess.run(
                [sys.executable, "-c", CHILD, str(run), str(out), str(budget)], capture_output=True, text=True
            )
            if child.returncode != 0:
                sys.exit(child.stderr)
            r = {
                "spikes": n_spikes,
                "simulated_ms": duration,
                "max_spikes_in_memory": budget,
                **json.loads(child.stdout.strip().splitlines()[-1]),
                "spikes_h5_mib": (run / "spikes.h5").stat().st_size / 2**20,
                "nwb_mib": out.stat().st_size / 2**20,
                "make_run_s": made,
            }
            results.append(r)
            print(
                f"{n_spikes:>11,} spikes ({duration / 1000:.1f} s of 10,000 neurons): "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB "
                f"(after imports {r['baseline_rss_mib']:.0f} MiB), export {r['export_s']:.1f} s; "
                f"spikes.h5 {r['spikes_h5_mib']:.0f} MiB, NWB {r['nwb_mib']:.0f} MiB",
                flush=True,
            )
            if not args.keep:
                shutil.rmtree(run)
                out.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
