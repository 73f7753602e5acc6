"""Probe memory states at the CPU size: a short cue–delay protocol on a (pre-wired) config.

    .venv/bin/python bench/wm_probe.py NAME [KEY=VALUE ...]

Runs configs/working_memory_cpu.yaml with the overrides and a probe protocol (rest, cue P1,
delay, cue P2, delay), without learning unless plasticity.enabled=true is given, and prints the
rate (Hz) of every group per epoch. Output under runs/probe/NAME.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from wmnet.analysis import epoch_rates
from wmnet.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def probe(
    name: str,
    overrides: list[str],
    base: str = "configs/working_memory_cpu.yaml",
    rest: float = 600.0,
    cue: float = 300.0,
    delay: float = 1000.0,
) -> list[dict]:
    cue_stim = {"kind": "selective", "group": "$group", "contrast_E": 1.5}
    for o in overrides:  # contrast=C sets the probe's cue contrast
        if o.startswith("contrast="):
            cue_stim["contrast_E"] = float(o.split("=")[1])
    cfg = load_config(
        ROOT / base, ["plasticity.enabled=false", *[o for o in overrides if not o.startswith("contrast=")]]
    ).to_dict()
    cfg["protocol"] = {
        "initial_rest": rest,
        "epochs": [
            {
                "block": "probe",
                "groups": ["P1", "P2"],
                "epochs": [
                    {"name": "cue", "duration": cue, "stimulus": cue_stim},
                    {"name": "delay", "duration": delay - 200},
                    {"name": "late", "duration": 200},
                ],
            }
        ],
    }
    cfg.pop("duration", None)
    cfg["record"] = {
        "traces": {"variables": ["v"], "neurons": [0], "every": 100.0},
        "synapses": {"every": None},
        "snapshots": [],
        "rates": {"bin": 10.0},
    }
    out = ROOT / "runs" / "probe" / name
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.time()
    subprocess.run(
        [
            str(ROOT / ".venv/bin/wmnet"),
            "run",
            str(out.parent / f"{name}.yaml"),
            "--out",
            str(out),
            "--overwrite",
            "--no-plot",
            "--quiet",
        ],
        check=True,
    )
    rows = epoch_rates(out)
    print(f"== {name} {' '.join(overrides)}  ({time.time() - t0:.0f} s)")
    groups = [g for g in rows[0]["rate_hz"] if g.startswith("P")] + ["nonselective", "E", "I"]
    print("epoch        " + " ".join(f"{g:>6}" for g in groups))
    for r in rows:
        label = f"{r['group'] if r['group'] != 'n/a' else ''}:{r['trial_type']}"
        print(f"{label:12s} " + " ".join(f"{r['rate_hz'][g]:6.1f}" for g in groups))
    return rows


if __name__ == "__main__":
    probe(sys.argv[1], sys.argv[2:])
