"""A run folder as the exporters (`to_nwb`, `to_neo`) read it: `open_run` checks the folder and
reads its metadata into a `Run` (config, sizes, dt, the end of the data on disk, groups, events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import yaml

from wmnet.errors import WmnetError
from wmnet.io.nodesets import read_groups
from wmnet.io.runinfo import read_json
from wmnet.io.sonata import UNITS

if TYPE_CHECKING:
    from wmnet.result import RunResult

TRACE_VARIABLES = tuple(UNITS)  # the model's state variables, in the order of wmnet's reports


@dataclass
class Run:
    """What an export needs to know about a run folder (see `open_run`)."""

    path: Path
    info: dict[str, Any]  # run.json
    config: dict[str, Any]
    config_yaml: str  # the config that reruns it, whole
    status: str
    n_e: int
    n: int
    dt: float  # ms
    end_ms: float  # the end of the data on disk
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # global ids, without E and I

    @property
    def populations(self) -> list[tuple[str, int, int]]:
        """(name, offset, size) of E and I."""
        return [("E", 0, self.n_e), ("I", self.n_e, self.n - self.n_e)]

    def events(self) -> list[dict[str, str]]:
        """events.tsv's rows that started before the end of the data, the last one cut there."""
        from wmnet.protocol import read_events

        path = self.path / "events.tsv"
        if not path.exists():
            return []
        end_step = round(self.end_ms / self.dt)
        rows = []
        for row in read_events(path):
            if int(row["start_step"]) >= end_step:
                continue
            if int(row["stop_step"]) > end_step:
                row = {
                    **row,
                    "stop_step": str(end_step),
                    "duration": f"{(end_step - int(row['start_step'])) * self.dt / 1000:.6g}",
                }
            rows.append(row)
        return rows


def run_folder(result_or_dir: RunResult | str | Path) -> Path:
    """The folder of a RunResult (one run with `out=`) or a path."""
    if isinstance(result_or_dir, (str, Path)):
        return Path(result_or_dir)
    out = getattr(result_or_dir, "out", None)
    if out is None:
        raise WmnetError("this result has no run folder: export needs a run written with Simulation.run(out=...)")
    return Path(out)


def _data_end_ms(path: Path, dt_ms: float) -> float:
    """The last time the files of a run still being written hold (ms)."""
    end = 0.0
    if (path / "spikes.h5").exists():
        with h5py.File(path / "spikes.h5", "r", locking=False) as f:
            for g in f["spikes"].values():
                n = min(g["timestamps"].shape[0], g["node_ids"].shape[0])
                if n:
                    end = max(end, float(g["timestamps"][n - 1]) + dt_ms)
    for file in [*(path / "reports").glob("*.h5"), path / "rates.h5", path / "synapses.h5"]:
        if file.exists():
            with h5py.File(file, "r", locking=False) as f:
                times = [g["mapping/time"][()] for g in f["report"].values()] if "report" in f else [f["time"][()]]
                end = max([end, *(float(t[1]) for t in times)])
    return end


def open_run(result_or_dir: RunResult | str | Path, partial: bool = False) -> Run:
    """Check that a folder holds a wmnet run, complete unless `partial`, and read its metadata."""
    path = run_folder(result_or_dir)
    if not path.is_dir():
        raise WmnetError(f"{path}: not a folder")
    if not (path / "run.json").exists():
        raise WmnetError(f"{path}: not a wmnet run folder (no run.json)")
    try:
        info = read_json(path / "run.json")
        config = info["config"]
        n_e, n_i = (int(config["populations"][p]["size"]) for p in ("E", "I"))
        dt_ms = float(config["dt"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WmnetError(f"{path / 'run.json'}: not a readable wmnet run.json ({e})") from None
    status = str(info.get("status", "unknown"))
    if status != "complete" and not partial:
        why = {
            "running": "is still running, or its process died",
            "interrupted": "was interrupted (`wmnet resume` completes it)",
            "failed": f"failed ({info.get('error', 'see run.json')})",
        }.get(status, f"has status {status!r}")
        raise WmnetError(
            f"{path}: the run {why}; only part of it is on disk: export that part with --partial (partial=True)"
        )
    cfg_file = path / "config.yaml"
    config_yaml = cfg_file.read_text() if cfg_file.exists() else yaml.safe_dump(config, sort_keys=False)
    end_ms = float(info.get("simulated_ms") or 0.0)
    if status != "complete":  # the files may hold more (written after the last run.json update)
        end_ms = max(end_ms, _data_end_ms(path, dt_ms))
    groups: dict[str, np.ndarray] = {}
    if (path / "node_sets.json").exists():
        groups = {k: v for k, v in read_groups(path / "node_sets.json", n_e, n_e + n_i).items() if k not in ("E", "I")}
    return Run(path, info, config, config_yaml, status, n_e, n_e + n_i, dt_ms, end_ms, groups)
