"""Check a working-memory run against issue 13's criteria: .venv/bin/python bench/wm_summary.py RUN_DIR

Prints, from epoch_rates (spikes.h5, live-readable) and synapses.h5: spontaneous rates, per test
trial the cued group's 1 s delay mean (delay + delay_end) against the other groups, its rate in the
last 200 ms, the hand-over, and the potentiated fractions per group pair (first, last sample,
and the maximum)."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

from wmnet.analysis import epoch_rates

GROUPS = ["P1", "P2", "P3", "P4", "P5"]


def main(run: Path) -> None:
    rows = epoch_rates(run)
    t_max = float(h5py.File(run / "spikes.h5")["spikes/E/timestamps"][:].max())
    done = [r for r in rows if (float(r["onset"]) + float(r["duration"])) * 1000 <= t_max + 1]
    print(f"simulated so far: {t_max / 1000:.1f} s; complete epochs: {len(done)} of {len(rows)}")
    for r in done:
        if r["block"] == "n/a":
            rr = r["rate_hz"]
            print(
                f"{r['trial_type']:20s} E {rr['E']:.2f} I {rr['I']:.2f} groups max {max(rr[g] for g in GROUPS):.2f} "
                f"nonselective {rr['nonselective']:.2f}"
            )
    trials: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for r in done:
        if r["block"] != "n/a":
            trials.setdefault((r["block"], r["repetition"], r["group"]), {})[r["trial_type"]] = r["rate_hz"]
    print("block        group  cue   delay1s  others  ratio  last200  others_max")
    for (block, _, group), ep in trials.items():
        if "delay_end" in ep and "delay" in ep:
            d = {g: 0.8 * ep["delay"][g] + 0.2 * ep["delay_end"][g] for g in GROUPS}
            oth = [d[g] for g in GROUPS if g != group]
            print(
                f"{block:12s} {group:6s} {ep['cue'][group]:5.1f} {d[group]:7.1f} {np.mean(oth):7.2f} "
                f"{d[group] / max(np.mean(oth), 1e-9):6.1f} {ep['delay_end'][group]:7.1f} {max(oth):8.2f}"
            )
        elif block == "train" and "delay" in ep:
            oth = [ep["delay"][g] for g in GROUPS if g != group]
            print(f"{block:12s} {group:6s} {ep['cue'][group]:5.1f} {ep['delay'][group]:7.1f} {np.mean(oth):7.2f}")
        elif "delay_B_end" in ep:
            a, b = group.split("+")
            print(
                f"handover {a}->{b}: delay_A {a} {ep['delay_A'][a]:.1f} {b} {ep['delay_A'][b]:.1f}; "
                f"delay_B {a} {ep['delay_B'][a]:.1f} {b} {ep['delay_B'][b]:.1f}; last 200 ms {a} "
                f"{ep['delay_B_end'][a]:.1f} {b} {ep['delay_B_end'][b]:.1f}"
            )
    syn = run / "synapses.h5"
    if syn.exists():
        with h5py.File(syn) as f:
            for pair in f["synapses"]:
                p = f[f"synapses/{pair}/potentiated_fraction"][:]
                if p.size:
                    print(f"potentiated {pair:28s} start {p[0]:.3f} now {p[-1]:.3f} max {p.max():.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
