"""Figures of a sweep's results table: a metric against one swept key (mean ± std over seeds,
one line per combination of the other swept keys), or a heatmap over two keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from wmnet.errors import WmnetError  # noqa: E402
from wmnet.sweep.results import read_table  # noqa: E402


def _swept(out: Path) -> list[str]:
    try:
        return list(json.loads((out / "manifest.json").read_text())["swept_keys"])
    except (OSError, ValueError, KeyError) as e:
        raise WmnetError(f"{out}: cannot read the sweep's manifest.json ({e})") from None


def _check(df: pd.DataFrame, key: str, what: str, swept: list[str]) -> None:
    if key not in df.columns:
        raise WmnetError(f"{what} {key}: no such column (swept keys: {', '.join(swept) or 'none'})")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", text)


def plot_sweep(out: str | Path, x: str, metric: str, y: str | None = None, dest: str | Path | None = None) -> Path:
    """Draw `metric` against swept key `x` (or over `x` and `y`); returns the PNG written
    (default DIR/figures/sweep_<metric>_vs_<x>[_<y>].png). Only complete points are drawn."""
    d = Path(out)
    df = read_table(d)
    swept = _swept(d)
    _check(df, x, "--x", swept)
    if y is not None:
        _check(df, y, "--y", swept)
    _check(df, metric, "--metric", swept)
    if not pd.api.types.is_numeric_dtype(df[metric]):
        raise WmnetError(f"--metric {metric}: not a numeric column")
    done = df[df["status"] == "complete"]
    if done.empty:
        raise WmnetError(f"{d}: no complete point to plot yet")
    name = f"sweep_{_safe(metric)}_vs_{_safe(x)}" + (f"_{_safe(y)}" if y else "") + ".png"
    path = Path(dest) if dest is not None else d / "figures" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    others = [k for k in swept if k not in (x, y) and k in done.columns]
    if y is None:
        groups = done.groupby(others, dropna=False) if others else [((), done)]
        for label, sub in groups:
            stats = sub.groupby(x)[metric].agg(["mean", "std", "count"]).sort_index()
            err = stats["std"].fillna(0.0).to_numpy()  # one seed: no spread to draw
            lab = ", ".join(f"{k}={v}" for k, v in zip(others, label if isinstance(label, tuple) else (label,)))
            ax.errorbar(
                stats.index.to_numpy(), stats["mean"].to_numpy(), yerr=err, marker="o", capsize=3, label=lab or None
            )
        if others:
            ax.legend(fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        n_seeds = done["seed"].nunique()
        ax.set_title(f"{metric}: mean ± std over {n_seeds} seed(s)", fontsize=9)
    else:
        grid = done.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
        img = ax.imshow(grid.to_numpy(dtype=float), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(np.arange(grid.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.columns])
        ax.set_yticks(np.arange(grid.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.index])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        fig.colorbar(img, ax=ax, label=metric)
        over = ([] if "seed" in (x, y) else ["seeds"]) + others
        ax.set_title(f"{metric}: mean over {' and '.join(over)}" if over else metric, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
