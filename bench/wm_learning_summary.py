"""Learning rate per presentation (docs/tutorial.md): .venv/bin/python bench/wm_learning_summary.py SWEEP_DIR

For each point of a bench/wm_learning_sweep.yaml sweep, the P1->P1 potentiated fraction at the end of each
cue and of each delay, and P1's rate in each delay (Hz)."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

from wmnet.analysis import epoch_rates


def main(sweep: Path) -> None:
    for d in sorted((sweep / "points").iterdir()):
        syn = d / "synapses.h5"
        if not syn.exists():
            continue
        with h5py.File(syn) as f:
            p = f["synapses/P1->P1/potentiated_fraction"][:]
            t0, _, step = f["time"][:]  # SONATA: start, stop, step (ms)
            ts = t0 + step * np.arange(len(p))
        rows = epoch_rates(d)
        ends, delays = [], []
        for r in rows:
            if r["block"] == "n/a":
                continue
            end = (float(r["onset"]) + float(r["duration"])) * 1000
            k = int(np.searchsorted(ts, end - 1e-6)) if ts is not None else None
            if k is not None and k < len(p):
                ends.append(f"{r['trial_type'][0]}{p[k]:.2f}")
            if r["trial_type"] == "delay":
                delays.append(f"{r['rate_hz']['P1']:.0f}")
        print(f"{d.name.split('_', 1)[1]:45s} {' '.join(ends)} | delay P1 Hz {' '.join(delays)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
