"""The working-memory criteria and the emergence of memory states, as Markdown:
.venv/bin/python bench/wm_report.py RUN_DIR [RUN_DIR ...]

For each run of the working-memory protocol (configs/working_memory*.yaml): every criterion of
docs/tutorial.md with what was measured (wmnet.memory_states.criteria), then per trained group the
presentation after which it first holds its delay, the within-group potentiated fraction then, and
the mean-field critical g_in with the other fractions measured at that moment (emergence)."""

from __future__ import annotations

import sys
from pathlib import Path

from wmnet.io.runinfo import read_json
from wmnet.memory_states import criteria, emergence


def report(run: Path) -> None:
    cfg = read_json(run / "run.json")["config"]
    n = cfg["populations"]["E"]["size"] + cfg["populations"]["I"]["size"]
    print(f"### {run.name}: {n} neurons, seed {cfg['seed']}\n")
    rows = criteria(run)
    print(f"{sum(c.passed for c in rows)} of {len(rows)} criteria met.\n")
    print("| criterion | measured | met |\n|---|---|---|")
    for c in rows:
        print(f"| {c.name} | {c.value} | {'yes' if c.passed else '**no**'} |")
    print("\n| group | holds after presentation | g_in then | mean-field critical g_in | difference |")
    print("|---|---|---|---|---|")
    for e in emergence(run):
        if e.presentation is None or e.g_in is None:
            print(f"| {e.group} | never | – | – | – |")
            continue
        crit = f"{e.g_critical:.3f}" if e.g_critical is not None else "none found"
        diff = f"{e.g_in - e.g_critical:+.3f}" if e.g_critical is not None else "–"
        print(f"| {e.group} | {e.presentation} | {e.g_in:.3f} | {crit} | {diff} |")
    print()


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        report(Path(arg))
