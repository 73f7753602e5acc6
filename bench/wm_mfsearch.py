"""Mean-field search for memory states at the CPU size: where do a stable low state and a stable
one-group selective state coexist?  .venv/bin/python bench/wm_mfsearch.py [OUT.tsv]

For each parameter point and g_in, solve() the config and report the stable low state (every group
≤ 5 Hz) and the stable selective state (one group ≥ 15 Hz, others ≤ 5 Hz), if any.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from wmnet import meanfield
from wmnet.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# The other potentiated fractions as learned by the demo (docs/tutorial.md, section 4).
LEARNED = {"g_between": 0.12, "g_to_nonselective": 0.03, "g_from_nonselective": 0.3, "g_nonselective": 0.13}
GROUPS = [f"P{i}" for i in range(1, 6)]


def classify(fps: list[meanfield.FixedPoint]) -> tuple[dict | None, dict | None]:
    low = sel = None
    for fp in fps:
        if not fp.stable:
            continue
        r = fp.rates_hz
        g = sorted((r[p] for p in GROUPS), reverse=True)
        if g[0] <= 5 and low is None:
            low = r
        elif g[0] >= 15 and g[1] <= 5 and sel is None:
            sel = r
    return low, sel


def main(out: str) -> None:
    grid = {
        "stp.U": [0.01, 0.02, 0.028, 0.05],
        "projections.E->E.J_p": [0.5, 0.8, 1.2],
        "background.E.mean": [1.2, 1.35, 1.45],
        "background.E.std": [1.0, 1.5],
        "projections.I->E.efficacy": [-0.54, -0.9],
    }
    base = load_config(ROOT / "configs/working_memory_cpu.yaml")
    with open(out, "w") as fh:
        fh.write("\t".join([*grid, "g_in", "low_E", "low_I", "low_group", "sel_cued", "sel_other", "sel_I"]) + "\n")
        for values in itertools.product(*grid.values()):
            cfg = base
            for k, v in zip(grid, values):
                cfg = meanfield.with_value(cfg, k, v)
            for g_in in (0.6, 0.8, 1.0):
                try:
                    low, sel = classify(meanfield.solve(cfg, max_active=1, g_in=g_in, **LEARNED))
                except Exception as e:  # a regime the theory refuses: skip the point
                    print("skip", values, g_in, str(e)[:80], file=sys.stderr)
                    continue
                row = [
                    *values,
                    g_in,
                    *(f"{low[k]:.2f}" if low else "nan" for k in ("E", "I")),
                    f"{max(low[p] for p in GROUPS):.2f}" if low else "nan",
                    *(
                        f"{v:.2f}"
                        for v in (
                            (max(sel[p] for p in GROUPS), sorted(sel[p] for p in GROUPS)[-2], sel["I"])
                            if sel
                            else (float("nan"),) * 3
                        )
                    ),
                ]
                fh.write("\t".join(str(x) for x in row) + "\n")
                fh.flush()
                if low and sel:
                    print("BISTABLE", dict(zip(grid, values)), g_in, row[-6:], flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/mf/search.tsv")
