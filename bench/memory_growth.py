"""Peak memory of a long run against a short one: does anything grow with the simulated time?

Runs `wmnet run` (every spike recorded, the default monitors on, output to a temporary folder)
once per duration, each in a fresh child process, and reports its peak host RSS (from
`/usr/bin/time -v` when present, else `getrusage(RUSAGE_CHILDREN)` of a fresh child per run),
the RSS sampled along the run (to see a slope, not only a peak), and the peak device memory
(`torch.cuda.max_memory_allocated`) when the run is on CUDA.

    python bench/memory_growth.py                                   # default network, 6 s and 60 s
    python bench/memory_growth.py --scale 0.1 --set device=cpu \\
        --json bench/results/memory-growth-cpu.json                 # 800 E + 200 I, same p

`--scale` multiplies both population sizes (connection probabilities stay, so each neuron has
fewer synapses); `--set KEY=VALUE` is passed to `wmnet run`; `--durations` are simulated ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child: runs the CLI in this process, then reports its own peaks to the file named by
# argv[1] (the CLI ends with sys.exit, so catch it).
CHILD = r"""
import json, resource, sys
report, sys.argv = sys.argv[1], ["wmnet", *sys.argv[2:]]
code = 0
try:
    from wmnet.cli import main
    main()
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
out = {"exit": code, "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
torch = sys.modules.get("torch")
if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
    out["cuda_max_allocated"] = torch.cuda.max_memory_allocated()
    out["cuda_max_reserved"] = torch.cuda.max_memory_reserved()
    out["cuda_device"] = torch.cuda.get_device_name()
with open(report, "w") as f:
    json.dump(out, f)
sys.exit(code)
"""

# The parent, when /usr/bin/time is missing: a fresh process per run, so that
# RUSAGE_CHILDREN holds that run's peak only.
RUSAGE_PARENT = r"""
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(f"Maximum resident set size (kbytes): {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}",
      file=sys.stderr)
sys.exit(code)
"""


def _rss_kib(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_once(duration_ms: float, sets: list[str], out_root: Path, sample_s: float) -> dict:
    out = out_root / f"run-{duration_ms:g}ms"
    report = out_root / f"peaks-{duration_ms:g}ms.json"
    wmnet = [
        sys.executable,
        "-c",
        CHILD,
        str(report),
        "run",
        "--out",
        str(out),
        "--overwrite",
        "--no-plot",
        "--quiet",
        "--duration",
        f"{duration_ms:g}",
        *[a for s in sets for a in ("--set", s)],
    ]
    timer = shutil.which("time") and Path("/usr/bin/time").is_file()
    cmd = ["/usr/bin/time", "-v", *wmnet] if timer else [sys.executable, "-c", RUSAGE_PARENT, *wmnet]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []  # (wall s, RSS KiB) of the wmnet process
    while proc.poll() is None:
        kids = _children(proc.pid)
        rss = _rss_kib(kids[0]) if kids else None
        if rss is not None:
            samples.append((time.perf_counter() - t0, rss))
        time.sleep(sample_s)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"wmnet run ({duration_ms:g} ms) failed with {proc.returncode}:\n{stderr[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    peaks = json.loads(report.read_text())
    info = json.loads((out / "run.json").read_text())
    files = {
        p.name: p.stat().st_size
        for p in [out / "spikes.h5", out / "rates.h5", out / "synapses.h5", *sorted((out / "reports").glob("*.h5"))]
        if p.exists()
    }

    # RSS along the run: at 10% of the wall time (imports and the network build are over), at
    # 50% and at 90% (before the end, when closing the files frees their caches), and the
    # least-squares slope between 10% and 90%, per simulated second.
    def at(frac: float) -> float | None:
        later = [r for t, r in samples if t >= frac * wall]
        return round(later[0] / 1024, 1) if later else None

    steady = [(t, r) for t, r in samples if 0.1 * wall <= t <= 0.9 * wall]
    slope = None
    if len(steady) > 2:
        mt, mr = sum(t for t, _ in steady) / len(steady), sum(r for _, r in steady) / len(steady)
        var = sum((t - mt) ** 2 for t, _ in steady)
        if var > 0:
            per_wall = sum((t - mt) * (r - mr) for t, r in steady) / var / 1024  # MiB per wall s
            slope = round(per_wall * info["wall_s_per_sim_s"], 2)
    res = {
        "duration_ms": duration_ms,
        "wall_s": round(wall, 1),
        "wall_s_per_sim_s": round(info["wall_s_per_sim_s"], 2),
        "peak_rss_mib": round(int(m.group(1)) / 1024, 1) if m else None,
        "peak_rss_source": "/usr/bin/time -v" if timer else "getrusage(RUSAGE_CHILDREN)",
        "ru_maxrss_mib": round(peaks["ru_maxrss_kib"] / 1024, 1),
        "rss_at_10_50_90_percent_mib": [at(0.1), at(0.5), at(0.9)],
        "rss_slope_mib_per_sim_s": slope,
        "rss_samples_wall_s_mib": [
            [round(t, 1), round(r / 1024, 1)] for t, r in samples[:: max(1, len(samples) // 40)]
        ],
        "cuda_peak_allocated_mib": (
            round(peaks["cuda_max_allocated"] / 2**20, 1) if "cuda_max_allocated" in peaks else None
        ),
        "cuda_peak_reserved_mib": (
            round(peaks["cuda_max_reserved"] / 2**20, 1) if "cuda_max_reserved" in peaks else None
        ),
        "device": info["device"],
        "device_name": peaks.get("cuda_device") or info.get("device_name"),
        "n_neurons": info["n_neurons"],
        "n_synapses": info["n_synapses"],
        "spikes": info["summary"]["spikes"],
        "file_bytes": files,
    }
    shutil.rmtree(out, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--durations", type=float, nargs="+", default=[6000.0, 60000.0], help="simulated ms")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply both population sizes (p kept)")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to `wmnet run --set` (repeatable)",
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--tmp", type=Path, help="folder for the runs' output (default: a temporary one)")
    ap.add_argument("--note", help="stored in the JSON (e.g. the commit when run from an export)")
    ap.add_argument("--sample", type=float, default=1.0, help="RSS sampling period (wall s)")
    args = ap.parse_args()

    sets = list(args.sets)
    if args.scale != 1.0:
        from wmnet.config import load_config

        cfg = load_config(None, sets)
        sets += [
            f"populations.E.size={round(cfg.populations.E.size * args.scale)}",
            f"populations.I.size={round(cfg.populations.I.size * args.scale)}",
        ]
    results = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        for dur in args.durations:
            print(
                f"running {dur / 1000:g} s simulated ({' '.join(sets) or 'defaults'}) ...", file=sys.stderr, flush=True
            )
            results.append(run_once(dur, sets, Path(d), args.sample))
    print(
        f"\n{results[0]['n_neurons']} neurons, {results[0]['n_synapses']:,} synapses, "
        f"device {results[0]['device_name']}"
    )
    print(
        "| simulated | wall | spikes | spikes.h5 | peak RSS | RSS at 10%, 50%, 90% of the run "
        "| RSS slope | device peak |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        dev = (
            "n/a on CPU"
            if r["cuda_peak_allocated_mib"] is None
            else f"{r['cuda_peak_allocated_mib']:.0f} MiB allocated, {r['cuda_peak_reserved_mib']:.0f} MiB reserved"
        )
        print(
            f"| {r['duration_ms'] / 1000:g} s | {r['wall_s']:.0f} s | {r['spikes']:,} | "
            f"{r['file_bytes'].get('spikes.h5', 0) / 2**20:.1f} MiB | {r['peak_rss_mib']} MiB | "
            f"{', '.join(map(str, r['rss_at_10_50_90_percent_mib']))} MiB | "
            f"{r['rss_slope_mib_per_sim_s']} MiB per simulated s | "
            f"{dev} |"
        )
    if args.json:
        import wmnet

        try:
            commit = (
                subprocess.run(
                    ["git", "rev-parse", "--short", "HEAD"],
                    capture_output=True,
                    text=True,
                    cwd=Path(wmnet.__file__).parent,
                ).stdout.strip()
                or None
            )
        except OSError:
            commit = None
        args.json.write_text(
            json.dumps(
                {
                    "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                    "sets": sets,
                    "wmnet": str(Path(wmnet.__file__).parent),
                    "commit": commit,
                    "note": args.note,
                    "python": sys.version.split()[0],
                    "host_cpus": os.cpu_count(),
                    "results": results,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
