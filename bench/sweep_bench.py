"""Sweep overheads: a 16-point sweep of a small network with the local pool and with Ray.

    .venv/bin/python bench/sweep_bench.py [--out bench/results/sweep-cpu.json] [--points 16]
        [--neurons 800 200] [--duration 500] [--workers N] [--variants local,ray,cold,cold-nowarm]

Each variant runs in its own process (so NUMBA_CACHE_DIR can point at an empty cache first):
- local:        the pool, numba's cache warm (the normal case);
- ray:          the same sweep as Ray tasks on a local Ray instance (started inside the timing);
- cold:         an empty numba cache; the sweep's warm-up compiles once in the main process;
- cold-nowarm:  an empty numba cache and no warm-up: every worker compiles for itself.
Per variant: the sweep's wall time; the sum of the points' own times (build + simulate, from
run.json); the parallel efficiency (own sum / workers / wall); the overhead per point
((wall × workers − own sum) / points: start-up, imports, cache loading, compilation, idle tail);
the workers' imports (s, once per worker) and how many numba functions the workers compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def variant(name: str, points: int, neurons: tuple[int, int], duration: float, workers: int | None) -> dict[str, Any]:
    """Run one variant in this process (called in a fresh subprocess by main)."""
    from wmnet.sweep import runner

    warm_s: list[float] = []
    plain_warm_up = runner.warm_up

    def timed_warm_up(*args: Any) -> float:
        warm_s.append(plain_warm_up(*args))
        return warm_s[-1]

    runner.warm_up = timed_warm_up  # to report the warm-up's share of the start-up

    n_u = points // 2
    sweep = {
        "set": {
            "populations.E.size": neurons[0],
            "populations.I.size": neurons[1],
            "duration": duration,
            "device": "cpu",
            "engine": "sparse",
        },
        "grid": {"stp.U": [round(0.05 + 0.05 * i, 4) for i in range(n_u)]},
        "seeds": [0, 1],
    }
    out = Path(tempfile.mkdtemp(prefix=f"sweep-bench-{name}-"))
    shutil.rmtree(out)
    t0, t0_unix = time.perf_counter(), time.time()
    df = runner.run_sweep(
        sweep,
        out,
        executor="ray" if name == "ray" else "local",
        workers=workers,
        progress=False,
        warm=name != "cold-nowarm",
    )
    wall, t1_unix = time.perf_counter() - t0, time.time()
    state = json.loads((out / "state.json").read_text())
    w = workers or (os.cpu_count() or 1)
    w = min(w, len(df))
    own = float((df["wall_build_s"] + df["wall_simulate_s"]).sum())
    res = {
        "variant": name,
        "points": len(df),
        "complete": int((df["status"] == "complete").sum()),
        "workers": w,
        "sweep_wall_s": wall,
        "points_own_sum_s": own,
        "points_worker_sum_s": float(df["wall_s"].sum()),
        "parallel_efficiency": own / w / wall,
        "overhead_per_point_s": (wall * w - own) / len(df),
        "worker_import_s": [float(x) for x in df["import_s"] if x > 0.01],
        # numba_compiled counts over a worker's life: its last point's count is the worker's.
        "numba_compiled_by_workers": int(df.groupby("worker_pid")["numba_compiled"].max().sum()),
        "first_point_simulate_s": float(df["wall_simulate_s"].iloc[0]),
        "median_point_simulate_s": float(df["wall_simulate_s"].median()),
        "median_point_build_s": float(df["wall_build_s"].median()),
        "timeline": timeline(state, df, t0_unix, t1_unix, warm_s),
    }
    shutil.rmtree(out, ignore_errors=True)
    return res


def timeline(state: dict[str, Any], df: Any, t0: float, t1: float, warm_s: list[float]) -> dict[str, float]:
    """Where the sweep's worker-seconds went: before the first point starts, in the workers
    around the points' own time, between a worker's points, after the last point."""
    starts = [v["t_start"] for v in state.values()]
    ends = [v["t_end"] for v in state.values()]
    own = dict(zip(df["point"], df["wall_build_s"] + df["wall_simulate_s"]))
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for v in state.values():
        by_pid.setdefault(v["pid"], []).append((v["t_start"], v["t_end"]))
    gaps = sum(b[0] - a[1] for iv in by_pid.values() for a, b in zip(sorted(iv), sorted(iv)[1:]))
    return {
        "until_first_point_s": min(starts) - t0,  # validation, warm-up, pool start
        "warm_up_s": sum(warm_s),
        "after_last_point_s": t1 - max(ends),  # pool shutdown, the last table write
        "worker_imports_s": float(sum(v.get("import_s") or 0.0 for v in state.values())),
        "in_worker_not_own_s": float(sum(v["wall_s"] - own[n] for n, v in state.items())),  # + unprimed imports
        "between_points_s": gaps,  # dispatch: result back to the main process, next point sent
        "worker_processes": len(by_pid),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/sweep-cpu.json")
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--neurons", type=int, nargs=2, default=(800, 200))
    ap.add_argument("--duration", type=float, default=500.0)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--variants", default="local,ray,cold,cold-nowarm")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run this variant here, print JSON
    a = ap.parse_args()
    if a.one:
        print(json.dumps(variant(a.one, a.points, tuple(a.neurons), a.duration, a.workers)))
        return
    results = []
    for name in a.variants.split(","):
        env = dict(os.environ)
        cache = None
        if name.startswith("cold"):
            cache = tempfile.mkdtemp(prefix="numba-cache-")
            env["NUMBA_CACHE_DIR"] = cache  # an empty cache, for this variant's processes only
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--points",
            str(a.points),
            "--neurons",
            *map(str, a.neurons),
            "--duration",
            str(a.duration),
        ]
        cmd += ["--workers", str(a.workers)] if a.workers else []
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"variant {name} failed")
        res = json.loads(done.stdout.strip().splitlines()[-1])
        res["process_wall_s"] = time.perf_counter() - t0
        results.append(res)
        print(
            f"{name:12s} wall {res['sweep_wall_s']:6.1f} s, own sum {res['points_own_sum_s']:6.1f} s, "
            f"efficiency {res['parallel_efficiency']:.2f}, overhead/point {res['overhead_per_point_s']:.2f} s, "
            f"imports {res['worker_import_s']}, compiled by workers {res['numba_compiled_by_workers']}",
            flush=True,
        )
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    meta = {
        "machine": os.uname().nodename,
        "cores": os.cpu_count(),
        "load_avg_1min_at_end": os.getloadavg()[0],
        "points": a.points,
        "neurons": list(a.neurons),
        "duration_ms": a.duration,
        "results": results,
    }
    Path(a.out).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
