"""Output of `wmnet meanfield`: the table, meanfield.json and the bifurcation figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np

from wmnet.meanfield.fixed_points import FixedPoint


def table(fps: list[FixedPoint]) -> list[str]:
    """One line per fixed point: kind, stability, rates (Hz) per unit, x of the first group."""
    if not fps:
        return ["no fixed point found"]
    names = list(fps[0].rates_hz)
    head = f"{'kind':<24} {'stable':<6} " + " ".join(f"{n:>12}" for n in names) + f" {'x(first)':>9}"
    lines = [head, "-" * len(head)]
    for fp in fps:
        first = names[0]
        lines.append(
            f"{fp.kind:<24} {'yes' if fp.stable else 'no':<6} "
            + " ".join(f"{fp.rates_hz[n]:>9.2f} Hz" for n in names)
            + f" {fp.x[first]:>9.3f}"
            + (f"  (×{fp.multiplicity} by symmetry)" if fp.multiplicity > 1 else "")
        )
    return lines


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temporary file, then rename), so a failure leaves nothing half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


def _branch_rate(fp: FixedPoint) -> tuple[str, float]:
    """(branch, rate in Hz) drawn in the figure: the selective group's rate, else the first group's."""
    kind = fp.kind
    if kind.startswith("selective:"):
        return "selective", fp.rates_hz[kind.split(":")[1]]
    if kind.startswith("multi:"):
        return f"multi ({kind.count('+') + 1} groups)", fp.rates_hz[kind.split(":")[1].split("+")[0]]
    return "spontaneous", next(iter(fp.rates_hz.values()))


def plot_scan(sc: Any, dest: Path) -> Path:
    """Rates of the fixed points against the scanned value: stable solid, unstable dashed, the
    bistable range shaded and its boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_i) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=[3, 1.4])
    series: dict[tuple[str, bool, int], list[tuple[float, float, float]]] = {}
    for v, fps in zip(sc.values, sc.points):
        # Points of one kind and stability at one value are told apart by their rank in rate, so
        # that a lower and an upper branch of the same kind are drawn as two lines.
        seen: dict[tuple[str, bool], int] = {}
        for fp in sorted(fps, key=lambda f: _branch_rate(f)[1]):
            branch, rate = _branch_rate(fp)
            rank = seen[(branch, fp.stable)] = seen.get((branch, fp.stable), -1) + 1
            series.setdefault((branch, fp.stable, rank), []).append((float(v), rate, fp.rates_hz["I"]))
    colours = {"spontaneous": "tab:blue", "selective": "tab:red"}
    labelled: set[tuple[str, bool]] = set()
    for (branch, stable, _), pts in sorted(series.items()):
        pts.sort()
        arr = np.array(pts)
        c = colours.get(branch, "tab:gray")
        style: dict[str, Any] = dict(color=c, ls="-" if stable else "--", marker="." if stable else "", ms=3, lw=1.5)
        label = None if (branch, stable) in labelled else f"{branch}, {'stable' if stable else 'unstable'}"
        labelled.add((branch, stable))
        ax.plot(arr[:, 0], arr[:, 1], label=label, **style)
        ax_i.plot(arr[:, 0], arr[:, 2], **style)
    for b in sc.boundaries:
        for a in (ax, ax_i):
            a.axvline(b, color="k", lw=1, ls=":")
        ax.annotate(f"{b:.3g}", (b, ax.get_ylim()[1]), ha="center", va="bottom", fontsize=8)
    if sc.bistable.any():
        for a in (ax, ax_i):
            a.fill_between(
                sc.values,
                0,
                1,
                where=sc.bistable,
                transform=a.get_xaxis_transform(),
                color="tab:orange",
                alpha=0.12,
                label="bistable" if a is ax else None,
            )
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("group rate (Hz): selective group, else P1")
    ax.set_title("Mean-field fixed points (solid: stable, dashed: unstable)")
    ax.legend(fontsize=8, loc="upper left")
    ax_i.set_ylabel("I rate (Hz)")
    ax_i.set_xlabel(sc.key)
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(dest)
    return dest


def parse_scan(spec: str) -> tuple[str, np.ndarray]:
    """KEY=START:STOP:N → (key, N values from START to STOP inclusive)."""
    from wmnet.errors import WmnetError

    key, eq, rng = spec.partition("=")
    parts = rng.split(":")
    if not eq or not key.strip() or len(parts) != 3:
        raise WmnetError(f"--scan {spec!r}: expected KEY=START:STOP:N, e.g. g_in=0.1:0.9:41")
    try:
        start, stop, n = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise WmnetError(f"--scan {spec!r}: START and STOP must be numbers and N a whole number") from None
    if n < 2 or n > 10000 or not (np.isfinite(start) and np.isfinite(stop)) or start == stop:
        raise WmnetError(f"--scan {spec!r}: expected 2 ≤ N ≤ 10000 points and START ≠ STOP (finite)")
    return key.strip(), np.linspace(start, stop, n)


def run_command(
    cfg: Any,
    scan_spec: str | None,
    out: str | None,
    connectivity: str | None,
    synapses: str | None,
    g: dict[str, float | None],
    max_active: int,
    echo: Any,
    slow_noise: str = "fourcaud-brunel",
) -> None:
    """`wmnet meanfield`: validate everything, compute, then write (nothing is written on error)."""
    from wmnet import meanfield
    from wmnet.errors import WmnetError

    explicit = {k: v for k, v in g.items() if v is not None}
    for k, v in explicit.items():
        if not 0 <= v <= 1:
            raise WmnetError(f"--{k.replace('_', '-')} {v:g}: expected a probability in [0, 1]")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise WmnetError(f"--out {out}: exists and is not a folder")
    measured = meanfield.measured_potentiation(cfg, connectivity, synapses)
    noise = cast("meanfield.SlowNoise", slow_noise)
    fps = meanfield.solve_model(meanfield.build(cfg, measured=measured, slow_noise=noise, **explicit), max_active)
    payload: dict[str, Any] = {
        "slow_noise": slow_noise,
        "fixed_points": [fp.to_dict() for fp in fps],
        "potentiation": {"explicit": explicit, "connectivity": connectivity, "synapses": synapses},
    }
    for line in table(fps):
        echo(line)
    sc = None
    if scan_spec is not None:
        key, values = parse_scan(scan_spec)
        meanfield.check_scan_key(cfg, key)
        sc = meanfield.scan(
            cfg,
            key,
            values,
            max_active=min(max_active, 1),
            connectivity=connectivity,
            synapses=synapses,
            slow_noise=noise,
            **explicit,
        )
        payload["scan"] = sc.to_dict()
        echo(
            f"scan {key}: {len(values)} points; bistable (stable spontaneous + stable selective) at "
            f"{int(sc.bistable.sum())} of them; boundaries: "
            + (", ".join(f"{b:.4g}" for b in sc.boundaries) or "none in the range")
        )
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WmnetError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
        write_json(out_dir / "meanfield.json", payload)
        echo(f"results: {out_dir / 'meanfield.json'}")
        if sc is not None:
            echo(f"figure: {plot_scan(sc, out_dir / 'bifurcation.png')}")
