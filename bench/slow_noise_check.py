"""Which treatment of the slow current's noise predicts a LIF neuron's rate? (docs/meanfield.md)

python bench/slow_noise_check.py [--out FILE] [MU,D_WHITE,D_SLOW,TAU_S ...]

Independent neurons stepped as the engines step them (Euler at dt 0.1 ms, τ_m 20 ms, θ 20 mV, reset
15 mV, a 21-step pulse), driven by a mean μ (mV), white noise of intensity D_white ((mV/ms)²·ms) and
a slow current: white noise of intensity D_slow filtered with τ_s (ms), as the model's slow current
filters its input. The simulated rate against the theory's two treatments (theory.SLOW_NOISE) and
against the white part alone. 2000 neurons for 5 s each case (~20 s per case).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wmnet.meanfield.theory import FB_C, GRID_TAU_FACTOR, siegert, spread_rate

DT, TAU_M, THETA, V_RESET, N_PULSE = 0.1, 20.0, 20.0, 15.0, 21
CASES = [  # μ (mV), D_white, D_slow ((mV/ms)²·ms), τ_s (ms)
    (16.0, 3.0, 0.12, 100.0),
    (12.0, 3.0, 0.12, 100.0),
    (12.0, 3.0, 1.0, 100.0),
    (12.0, 1.0, 1.0, 100.0),
    (14.0, 2.0, 0.5, 100.0),
    (19.0, 3.0, 2.0, 100.0),
    (12.0, 3.0, 1.0, 50.0),
    (12.0, 3.0, 1.0, 20.0),
    (12.0, 3.0, 1.0, 10.0),
    (15.0, 0.3, 3.0, 100.0),
    (12.0, 0.3, 3.0, 10.0),
    (18.0, 0.5, 2.0, 5.0),
]


def simulate(
    mu: float, d_white: float, d_slow: float, tau_s: float, n: int = 2000, steps: int = 50000, seed: int = 1
) -> float:
    """Rate (Hz): v frozen for the pulse's steps, then reset; the slow current an exact OU update."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(V_RESET, THETA, n)
    i_s = rng.standard_normal(n) * np.sqrt(d_slow / (2 * tau_s))  # stationary start
    count = np.zeros(n, dtype=np.int64)  # pulse steps left (0: integrating)
    onsets = 0
    a = np.exp(-DT / tau_s)
    kick = np.sqrt(d_slow / (2 * tau_s) * (1 - a * a))
    white = np.sqrt(d_white * DT)
    for _ in range(steps):
        on = count > 0
        count[on] -= 1
        v[on & (count == 0)] = V_RESET
        free = ~on
        v[free] += DT * ((mu - v[free]) / TAU_M + i_s[free]) + white * rng.standard_normal(int(free.sum()))
        i_s = a * i_s + kick * rng.standard_normal(n)
        new = free & (v >= THETA)
        onsets += int(new.sum())
        count[new] = N_PULSE
    return onsets / (n * steps * DT) * 1000


def theory(mu: float, d_white: float, d_slow: float, tau_s: float, treatment: str) -> float:
    """Rate (Hz) as theory.Model computes it for these inputs."""
    grid = d_white * GRID_TAU_FACTOR * DT
    if treatment == "fourcaud-brunel":
        d = d_white + d_slow
        shift = FB_C * np.sqrt(d_slow * tau_s + d * GRID_TAU_FACTOR * DT)
        spread = 0.0
    else:
        d = d_white
        shift = FB_C * np.sqrt(grid)
        spread = TAU_M * np.sqrt(d_slow / (2 * (tau_s + TAU_M)))
    sigma = np.sqrt(TAU_M * d)
    r = spread_rate(
        np.array(mu), np.array(sigma), np.array(spread), TAU_M, THETA + shift, V_RESET + shift, N_PULSE * DT
    )
    return float(r) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", help="MU,D_WHITE,D_SLOW,TAU_S")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cases = [tuple(float(x) for x in c.split(",")) for c in args.cases] or CASES
    rows = []
    print("| μ (mV) | D_white | D_slow | τ_s (ms) | sim (Hz) | quasi-static | fourcaud-brunel | white part alone |")
    print("|---|---|---|---|---|---|---|---|")
    for mu, dw, ds, ts in cases:
        row = {"mu": mu, "D_white": dw, "D_slow": ds, "tau_s": ts, "sim_hz": simulate(mu, dw, ds, ts)}
        for t in ("quasi-static", "fourcaud-brunel"):
            row[t] = theory(mu, dw, ds, ts, t)
        white = siegert(np.array(mu), np.array(np.sqrt(TAU_M * dw)), TAU_M, THETA, V_RESET, N_PULSE * DT)
        row["white_alone"] = float(white) * 1000  # no grid shift: a reference only
        rows.append(row)
        print(
            f"| {mu:g} | {dw:g} | {ds:g} | {ts:g} | {row['sim_hz']:.2f} | {row['quasi-static']:.2f} | "
            f"{row['fourcaud-brunel']:.2f} | {row['white_alone']:.2f} |",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps({"machine": "2-core CPU (shared)", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
