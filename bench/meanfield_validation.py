"""Mean-field predictions (wmnet.meanfield) against simulation (docs/meanfield.md, "Validation").

    .venv/bin/python bench/meanfield_validation.py [--out DIR] [--only spontaneous|selective]

Networks like configs/working_memory_cpu.yaml (2000 E + 500 I, p = 0.8, five prototype groups of
200 E neurons), plasticity off so that the structure stays what the theory is given:
- spontaneous: 11 parameter points, 500 ms to settle, rates over the next 600 ms;
- selective: the weakly depressing regime (U = 0.02, τ_rec = 100 ms) at several within-group
  potentiated fractions (projections.E->E.structure.within): 500 ms to settle, 400 ms spontaneous,
  a 300 ms cue of P1 (contrast 2), rates over the last 600 ms of a 900 ms delay; the simulated bistability
  boundary (first within-fraction whose cued group stays active) against the theory's.
Each run is a `wmnet run` of 1.1–2.1 s simulated (1–3 min each on the busy shared 2-core CPU;
`--only spontaneous` and `--only selective` can run side by side).
Prints the tables and writes DIR/meanfield_validation.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wmnet import meanfield
from wmnet.analysis import epoch_rates
from wmnet.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "populations.E.size=2000",
    "populations.I.size=500",
    "projections.E->E.p=0.8",
    "projections.E->E.J_p=0.5",
    "projections.E->I.p=0.8",
    "projections.I->E.p=0.8",
    "projections.I->E.efficacy=-0.54",
    "projections.I->I.p=0.8",
    "background.E.mean=1.45",
    "background.E.std=1.5",
    "background.I.mean=1.8",
    "background.I.std=1.0",
    "background.grain=1.0",
    "stimulus.kind=background",
    "stp.U=0.05",
    "plasticity.enabled=false",
    "groups.prototypes={count: 5, fraction: 0.1}",
    "record.traces={variables: [v], neurons: [0], every: 100}",
]
SPONTANEOUS = {  # name: extra overrides
    "base": [],
    "E mean 1.35": ["background.E.mean=1.35"],
    "E mean 1.55": ["background.E.mean=1.55"],
    "E std 1.2": ["background.E.std=1.2"],
    "I mean 1.7": ["background.I.mean=1.7"],
    "I->E -0.50": ["projections.I->E.efficacy=-0.50"],
    "I->E -0.65": ["projections.I->E.efficacy=-0.65"],
    "J_p 0.4": ["projections.E->E.J_p=0.4"],
    "U 0.07": ["stp.U=0.07"],
    "tau_rec 100": ["stp.tau_rec=100"],
    "within 0.5": ["projections.E->E.structure={within: 0.5}"],
}
SELECTIVE = ["stp.U=0.02", "stp.tau_rec=100"]
SELECTIVE_WITHIN = [0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0]
SCAN_RANGE = (0.4, 1.0)  # the scanned parameter's range (the boundary's tolerance is 10% of it)

# 500 ms to settle: x starts full and takes a few hundred ms (τ_rec = 200 ms) to deplete to its
# steady state; with 200 ms the E rates measured after it were ~10% low.
PROTOCOL_SPONT = "protocol={epochs: [{name: settle, duration: 500}, {name: measure, duration: 600}]}"
PROTOCOL_CUE = (
    "protocol={epochs: [{name: settle, duration: 500}, {name: spontaneous, duration: 400}, "
    "{name: cue, duration: 300, stimulus: {kind: selective, group: P1, contrast_E: 2.0}}, "
    "{name: settle_delay, duration: 300}, {name: delay, duration: 600}]}"
)


def simulate(cfg: Config, work: Path, name: str) -> tuple[list[dict[str, Any]], float]:
    """Run `cfg` with `wmnet run`; (epoch rows with rate_hz, wall seconds)."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(cfg.to_yaml())
    t = time.perf_counter()
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "wmnet"),
            "run",
            str(d / "config.yaml"),
            "--out",
            str(d / "run"),
            "--no-plot",
            "--quiet",
            "--overwrite",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return epoch_rates(d / "run"), time.perf_counter() - t


def within(pred: float, sim: float, rel: float = 0.25, abs_hz: float = 1.0) -> bool:
    return abs(pred - sim) <= max(rel * abs(sim), abs_hz)


def persistent(rates: dict[str, float]) -> bool:
    """The cued group P1 stays active: the theory's rule for "selective" (above 2× and 5 Hz over
    the quietest E group)."""
    others = min(v for k, v in rates.items() if k.startswith("P") and k != "P1")
    ref = min(others, rates.get("nonselective", others))
    return rates["P1"] > max(2 * ref, ref + 5)


def spontaneous_part(
    work: Path, noise: meanfield.SlowNoise, reuse: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """`reuse`: the simulated rates of an earlier result's rows (the theory recomputed, no runs)."""
    rows = []
    print("\n| point | E sim | E theory | I sim | I theory | within 25% or 1 Hz | sim wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, extra in SPONTANEOUS.items():
        cfg = load_config(None, BASE + extra + [PROTOCOL_SPONT])
        fps = meanfield.solve(cfg, slow_noise=noise)
        th = next(fp for fp in fps if fp.kind == "spontaneous" and fp.stable)
        if reuse is not None:
            sim, wall = next(r["sim"] for r in reuse if r["point"] == name), 0.0
        else:
            epochs, wall = simulate(cfg, work, "spont-" + name.replace(" ", "_").replace(">", ""))
            sim = epochs[-1]["rate_hz"]
        ok = within(th.rates_hz["E"], sim["E"]) and within(th.rates_hz["I"], sim["I"])
        rows.append({"point": name, "overrides": extra, "sim": sim, "theory": th.rates_hz, "ok": ok})
        print(
            f"| {name} | {sim['E']:.2f} | {th.rates_hz['E']:.2f} | {sim['I']:.2f} | {th.rates_hz['I']:.2f} | "
            f"{'yes' if ok else 'NO'} | {wall:.0f} |",
            flush=True,
        )
    return rows


def selective_part(work: Path, noise: meanfield.SlowNoise, reuse: dict[str, Any] | None) -> dict[str, Any]:
    key = "projections.E->E.structure.within"
    sc = meanfield.scan(
        load_config(None, BASE + SELECTIVE + [PROTOCOL_CUE, "projections.E->E.structure={within: 0.2}"]),
        key,
        np.linspace(*SCAN_RANGE, 61),
        slow_noise=noise,
    )
    rows = []
    print(f"\ntheory: bistability boundary at within = {sc.boundary}")
    print(
        "\n| within | theory: stable selective P1 / others / I (Hz) | sim delay P1 / others / I (Hz) | sim "
        "persistent | rates within 25% | spontaneous before the cue E/I sim vs theory |"
    )
    print("|---|---|---|---|---|---|")
    for g in SELECTIVE_WITHIN:
        cfg = load_config(None, BASE + SELECTIVE + [PROTOCOL_CUE, f"projections.E->E.structure={{within: {g}}}"])
        fps = meanfield.solve(cfg, max_active=1, slow_noise=noise)
        sel = next((fp for fp in fps if fp.kind == "selective:P1" and fp.stable), None)
        spont = next((fp for fp in fps if fp.kind == "spontaneous" and fp.stable), None)
        if reuse is not None:
            old = next(r for r in reuse["rows"] if r["within"] == g)
            delay, before, wall = old["sim_delay"], old["sim_spontaneous"], 0.0
        else:
            epochs, wall = simulate(cfg, work, f"sel-{g}")
            by_name = {e["trial_type"]: e["rate_hz"] for e in epochs}
            delay, before = by_name["delay"], by_name["spontaneous"]
        others = float(np.mean([delay[f"P{i}"] for i in range(2, 6)]))
        pers = persistent(delay)
        ok = None
        if sel is not None and pers:
            ok = within(sel.rates_hz["P1"], delay["P1"], abs_hz=0) and within(sel.rates_hz["I"], delay["I"])
        th_txt = (
            (
                f"{sel.rates_hz['P1']:.1f} / {np.mean([sel.rates_hz[f'P{i}'] for i in range(2, 6)]):.2f} / "
                f"{sel.rates_hz['I']:.1f}"
            )
            if sel
            else "none"
        )
        sp_txt = (
            f"{before['E']:.2f}/{before['I']:.2f} vs {spont.rates_hz['E']:.2f}/{spont.rates_hz['I']:.2f}"
            if spont
            else f"{before['E']:.2f}/{before['I']:.2f} vs none"
        )
        print(
            f"| {g} | {th_txt} | {delay['P1']:.1f} / {others:.2f} / {delay['I']:.1f} | {'yes' if pers else 'no'} | "
            f"{'-' if ok is None else 'yes' if ok else 'NO'} | {sp_txt} |",
            flush=True,
        )
        rows.append(
            {
                "within": g,
                "theory_selective": sel.rates_hz if sel else None,
                "theory_spontaneous": spont.rates_hz if spont else None,
                "sim_delay": delay,
                "sim_spontaneous": before,
                "persistent": pers,
                "rates_ok": ok,
                "wall_s": wall,
            }
        )
    sim_boundary = None
    pers_flags = [r["persistent"] for r in rows]
    for i in range(1, len(rows)):
        if pers_flags[i] and not pers_flags[i - 1]:
            sim_boundary = (rows[i - 1]["within"] + rows[i]["within"]) / 2
            break
    span = SCAN_RANGE[1] - SCAN_RANGE[0]
    ok_b = sim_boundary is not None and sc.boundary is not None and abs(sim_boundary - sc.boundary) <= 0.1 * span
    print(
        f"\nbistability boundary: theory {sc.boundary}, simulation {sim_boundary} "
        f"(tolerance 10% of {SCAN_RANGE}: ±{0.1 * span:.3g}): {'yes' if ok_b else 'NO'}"
    )
    return {"rows": rows, "boundary_theory": sc.boundary, "boundary_sim": sim_boundary, "boundary_ok": ok_b}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="folder for the runs and meanfield_validation.json (default: temp)")
    ap.add_argument("--only", choices=["spontaneous", "selective"], default=None)
    ap.add_argument("--slow-noise", choices=meanfield.SLOW_NOISE, default="fourcaud-brunel")
    ap.add_argument("--reuse", type=Path, default=None, help="an earlier JSON: its simulations, the theory anew")
    args = ap.parse_args()
    reuse = json.loads(args.reuse.read_text()) if args.reuse else {}
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mf-validation-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": "2-core CPU (shared)", "base_overrides": BASE, "slow_noise": args.slow_noise}
    if args.reuse:
        result["simulations_from"] = str(args.reuse)
    if args.only in (None, "spontaneous"):
        result["spontaneous"] = spontaneous_part(work, args.slow_noise, reuse.get("spontaneous"))
    if args.only in (None, "selective"):
        result["selective"] = selective_part(work, args.slow_noise, reuse.get("selective"))
    (work / "meanfield_validation.json").write_text(json.dumps(result, indent=1))
    print(f"\nresults: {work / 'meanfield_validation.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
