"""DIR/results.parquet: one row per point, built from the point folders and the sweep's state.

Columns: `point` (the folder name under points/), one column per swept key (named by the key,
e.g. `stp.U`), `seed`, `status` (pending, running, complete, failed, interrupted), `error` (one
line), `wall_s` (the point's time in its worker, s), `import_s` (the worker's imports, paid by a
worker's first point only, s), `numba_compiled` (CPU-engine functions its worker compiled
rather than loaded from numba's cache, over the worker's life: 0 when the cache is shared),
`worker_pid`, `wall_build_s`, `wall_simulate_s`, `wall_s_per_sim_s`,
`simulated_ms`, every number of run.json's summary flattened as `summary.<path>` (e.g.
`summary.populations.E.rate_hz`), and for protocol runs `epoch.<i>.<name>.rate_hz.<group>` per
epoch i of events.tsv (Hz; the rates of epoch_rates.tsv).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS = "results.parquet"
STATE = "state.json"
STATUSES = ("pending", "running", "complete", "failed", "interrupted")


def flatten(d: dict[str, Any], prefix: str) -> dict[str, float | int]:
    """Every number of a nested dict, keyed by its dotted path under `prefix`."""
    out: dict[str, float | int] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
        elif v is None:
            out[key] = float("nan")  # JSON null: a NaN the run wrote as null
    return out


def epoch_columns(folder: Path) -> dict[str, float]:
    """epoch_rates.tsv as columns: epoch.<i>.<trial_type>.rate_hz.<group> (Hz)."""
    path = folder / "epoch_rates.tsv"
    if not path.is_file():
        return {}
    out: dict[str, float] = {}
    with open(path, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh, delimiter="\t")):
            for k, v in row.items():
                if k.startswith("rate_hz_"):
                    out[f"epoch.{i}.{row['trial_type']}.rate_hz.{k.removeprefix('rate_hz_')}"] = float(v)
    return out


def read_run(folder: Path) -> dict[str, Any] | None:
    try:
        with open(folder / "run.json") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def point_row(point: dict[str, Any], folder: Path, state: dict[str, Any], running: bool) -> dict[str, Any]:
    """The table row of one point (manifest entry `point`) from its folder and its sweep state."""
    row: dict[str, Any] = {"point": point["name"], **point["params"], "seed": point["seed_value"]}
    info = read_run(folder)
    status = info.get("status") if info else None
    if running:
        row["status"] = "running"
    elif status == "complete" and state.get("status") != "failed":
        row["status"] = "complete"
    elif state.get("status") == "failed" or status == "failed":
        row["status"] = "failed"
    elif status in ("running", "interrupted") or state.get("status") == "interrupted":
        row["status"] = "interrupted"
    else:
        row["status"] = "pending"
    row["error"] = state.get("error") if row["status"] == "failed" else None
    if row["status"] == "failed" and row["error"] is None and info is not None:
        row["error"] = info.get("error")
    row["wall_s"] = state.get("wall_s", float("nan"))
    row["import_s"] = state.get("import_s", float("nan"))
    row["numba_compiled"] = state.get("compiled", float("nan"))
    row["worker_pid"] = state.get("pid", float("nan"))
    if info is not None and status in ("complete", "failed"):
        wall = info.get("wall_seconds") or {}
        row["wall_build_s"] = wall.get("build", float("nan"))
        row["wall_simulate_s"] = wall.get("simulate", float("nan"))
        rate = info.get("wall_s_per_sim_s")
        row["wall_s_per_sim_s"] = float("nan") if rate is None else rate
        row["simulated_ms"] = info.get("simulated_ms", float("nan"))
        row.update(flatten(info.get("summary") or {}, "summary"))
        if status == "complete":
            row.update(epoch_columns(folder))
    return row


def _column(values: pd.Series) -> pd.Series:
    """A column parquet can store: numbers stay numbers, anything mixed or nested becomes text."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
    if all(isinstance(v, bool) for v in present):
        return values.astype("boolean") if present else values.astype("float64")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.to_numeric(values)
    if all(isinstance(v, str) for v in present):
        return values.astype("string")
    return values.map(lambda v: None if v is None else json.dumps(v)).astype("string")


def table(rows: list[dict[str, Any]], swept: list[str]) -> pd.DataFrame:
    """The DataFrame of rows, columns in a fixed order (point, swept keys, seed, status, ...)."""
    df = pd.DataFrame(rows)
    first = [
        "point",
        *swept,
        "seed",
        "status",
        "error",
        "wall_s",
        "import_s",
        "numba_compiled",
        "worker_pid",
        "wall_build_s",
        "wall_simulate_s",
        "wall_s_per_sim_s",
        "simulated_ms",
    ]
    for c in first:
        if c not in df:
            df[c] = None
    df = df[first + [c for c in df.columns if c not in first]]
    for c in df.columns:
        df[c] = _column(df[c])
    return df


def write_table(df: pd.DataFrame, out: Path) -> None:
    """results.parquet, atomically (tmp + rename): a reader never sees it half-written."""
    tmp = out / (RESULTS + ".tmp")
    df.to_parquet(tmp, engine="pyarrow", index=False)
    os.replace(tmp, out / RESULTS)


def read_table(out: str | Path) -> pd.DataFrame:
    from wmnet.errors import WmnetError

    path = Path(out) / RESULTS
    if not path.is_file():
        raise WmnetError(f"{out}: no {RESULTS} (not a wmnet sweep folder, or the sweep has not started)")
    return pd.read_parquet(path, engine="pyarrow")
