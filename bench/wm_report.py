"""The working-memory criteria and the emergence of memory states, as Markdown:
.venv/bin/python bench/wm_report.py RUN_DIR [RUN_DIR ...]
.venv/bin/python bench/wm_report.py --summary RUN_DIR [RUN_DIR ...]    (one row per run)

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
    print(
        "\n| group | holds after presentation | g_in then | g_in after the previous cue (not held) "
        "| mean-field critical g_in | difference |"
    )
    print("|---|---|---|---|---|---|")
    for e in emergence(run):
        if e.presentation is None or e.g_in is None:
            print(f"| {e.group} | never | – | – | – | – |")
            continue
        crit = f"{e.g_critical:.3f}" if e.g_critical is not None else "none found"
        diff = f"{e.g_in - e.g_critical:+.3f}" if e.g_critical is not None else "–"
        prev = f"{e.g_in_previous:.3f}" if e.g_in_previous is not None else "–"
        print(f"| {e.group} | {e.presentation} | {e.g_in:.3f} | {prev} | {crit} | {diff} |")
    print()


def summary_row(run: Path) -> str:
    """One Markdown row: size, seed, criteria met, and the ranges behind each criterion."""
    cfg = read_json(run / "run.json")["config"]
    n = cfg["populations"]["E"]["size"] + cfg["populations"]["I"]["size"]
    rows = criteria(run)

    def of(prefix: str, key: str) -> list[float]:
        return [c.values[key] for c in rows if c.name.startswith(prefix)]

    def rng(prefix: str, key: str) -> str:
        v = of(prefix, key)
        return f"{min(v):.1f}–{max(v):.1f}" if v else "–"

    spont = "; ".join(
        f"E {c.values['E']:.2f}, {c.values['peak_group']:.1f}" for c in rows if c.name.startswith("spontaneous")
    )
    after = f"{rng('after', 'delay')} / {rng('after', 'last')} / ≤ {max(of('after', 'others_max'), default=0):.2f}"
    hand = " ".join(
        f"{c.values['first_end']:.1f}, {c.values['second_end']:.1f}" for c in rows if c.name.startswith("hand")
    )
    em = emergence(run)
    diff = [e.g_in - e.g_critical for e in em if e.g_in is not None and e.g_critical is not None]
    emd = f"{min(diff):+.3f} to {max(diff):+.3f}" if diff else "–"
    pres = ", ".join(str(e.presentation) for e in em)
    met = f"{sum(c.passed for c in rows)}/{len(rows)}"
    return (
        f"| {n} | {cfg['seed']} | {met} | {spont} | ×{rng('before', 'ratio')} | {after} | "
        f"{rng('untrained', 'delay')} | {hand} | {pres} | {emd} |"
    )


HEADER = (
    "| neurons | seed | criteria met | spontaneous before; after (E Hz, highest group in 1 s) "
    "| before training (cued/others) | after training: delay / last 200 ms / others (Hz) "
    "| untrained P5 delay (Hz) | hand-over: P1, P2 last 200 ms (Hz) | emergence (presentation per group) "
    "| g_in − critical |\n|---|---|---|---|---|---|---|---|---|---|"
)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summary"]:
        print(HEADER)
        for arg in sys.argv[2:]:
            print(summary_row(Path(arg)))
    else:
        for arg in sys.argv[1:]:
            report(Path(arg))
