"""Mean-field check of one parameter point over g_in: .venv/bin/python bench/wm_mfcheck.py KEY=VALUE ...

Prints, per g_in, the stable low state (E, I, highest group rate) and the stable selective state
(cued, highest other group, I), as bench/wm_mfsearch.py classifies them."""

from __future__ import annotations

import sys
from pathlib import Path

from wm_mfsearch import GROUPS, LEARNED, classify

from wmnet import meanfield
from wmnet.config import load_config

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    cfg = load_config(ROOT / "configs/working_memory_cpu.yaml", sys.argv[1:])
    for g_in in (0.2, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        low, sel = classify(meanfield.solve(cfg, max_active=1, g_in=g_in, **LEARNED))
        lo = f"low E {low['E']:.2f} I {low['I']:.2f} group {max(low[p] for p in GROUPS):.2f}" if low else "no low state"
        se = (
            (f"sel {max(sel[p] for p in GROUPS):.1f} other {sorted(sel[p] for p in GROUPS)[-2]:.2f} I {sel['I']:.1f}")
            if sel
            else "no selective state"
        )
        print(f"{' '.join(sys.argv[1:])} g_in {g_in}: {lo}; {se}", flush=True)
