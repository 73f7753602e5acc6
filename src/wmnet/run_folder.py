"""A run folder while a run writes it: the lock, the writers, run.json, node sets, events,
snapshots, the checkpoint and a pending extension. Nothing here knows the run loop; the
simulation (simulation.py) and `resume_run` (checkpoint.py) drive it.

Files (docs/outputs.md): config.yaml, run.json, spikes.h5, reports/<variable>.h5, rates.h5,
synapses.h5, node_sets.json, events.tsv, snapshots/connectivity_<t>ms.npz, checkpoint.pt and,
while a `wmnet extend` is under way, extension.json.

checkpoint.pt (torch.save of a dict, written atomically) holds:
- `engine`: the engine's `state_dict()` (neuron state, E→E synapses, lazy clocks, step k,
  switch counts);
- `positions`: how many spike rows (per population) and trace samples (per variable) the
  SONATA files held when it was written; a resumed run truncates them there, so whatever
  was written after the checkpoint is dropped, never duplicated;
- `monitors`: the same for rates.h5 and synapses.h5 (`rows`), plus what the files do not
  hold: the partial rate bin's onset counts and the switch counts at the last synapse sample;
- `k_start`: the folder's first step; the run ends at k_start + config duration;
- `count`, `sigma_sum`, `steps_done`: the summary's running sums;
- `config` and `seed`.
The stimulus needs no state: every stimulus is a pure function of k (stimuli.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import torch

from wmnet.config import Config, Group, group_ids, load_config
from wmnet.errors import WmnetError
from wmnet.io.nodesets import write_node_sets
from wmnet.io.runinfo import lock_folder, read_json, write_json
from wmnet.io.series import SeriesWriter
from wmnet.io.sonata import PopulationRange, ReportWriter, SpikeWriter

if TYPE_CHECKING:
    from wmnet.connectivity import Connectivity, SynapseState
    from wmnet.protocol import Schedule

CHECKPOINT = "checkpoint.pt"
EXTENSION = "extension.json"  # a `wmnet extend` under way: {"from_ms": old duration, "to_ms": new}
VERSION = 2  # 2: monitor positions (rates, synapses)

# What every checkpoint holds (see the module docstring); a file without one of them is refused.
_KEYS = ("engine", "positions", "monitors", "k_start", "steps_done", "count", "sigma_sum", "config", "seed")

Writer = SpikeWriter | ReportWriter | SeriesWriter


def save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    """torch.save to path.tmp, fsync, rename: a crash leaves the previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"version": VERSION, **data}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's dict; one WmnetError naming the file if it is truncated, random bytes,
    not a dict, of another version or missing a key."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or random bytes raise anything from zip, pickle or torch
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WmnetError(
            f"{path}: cannot read checkpoint, the file is damaged or not a wmnet checkpoint "
            f"({type(e).__name__}: {first[:200]})"
        ) from None
    if not isinstance(data, dict):
        raise WmnetError(f"{path}: not a wmnet checkpoint (it holds a {type(data).__name__}, not a dict)")
    if data.get("version") != VERSION:
        raise WmnetError(f"{path}: checkpoint version {data.get('version')}, expected {VERSION}")
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise WmnetError(f"{path}: incomplete checkpoint: missing {', '.join(missing)}")
    return data


def read_extension(run_dir: Path) -> dict[str, float] | None:
    """The pending `wmnet extend` of a run folder (EXTENSION), or None if there is none."""
    path = run_dir / EXTENSION
    if not path.exists():
        return None
    try:
        data = read_json(path)
        return {"from_ms": float(data["from_ms"]), "to_ms": float(data["to_ms"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WmnetError(f"{path}: cannot read the pending extension ({e})") from None


def require_continuable(run_dir: Path) -> None:
    """A WmnetError unless `run_dir` holds what a run continues from (checked before locking)."""
    for name in (CHECKPOINT, "run.json", "config.yaml"):
        if not (run_dir / name).is_file():
            raise WmnetError(f"{run_dir}: no {name} to continue from")


def populations(cfg: Config) -> list[PopulationRange]:
    return [
        PopulationRange("E", 0, cfg.populations.E.size),
        PopulationRange("I", cfg.populations.E.size, cfg.populations.I.size),
    ]


class RunFolder:
    """One run folder, locked while this object is open (see the module docstring).

    `lock`: the folder's lock (`lock_folder`) if the caller already holds it; it then stays the
    caller's to close, unless `owns_lock` (a claimed folder: io/claim.py). Without `lock` it
    is taken here, and released by `close`.
    """

    def __init__(self, path: str | Path, lock: IO[str] | None = None, owns_lock: bool | None = None):
        self.path = Path(path)
        self._own_lock = lock is None if owns_lock is None else owns_lock
        self.lock = lock_folder(self.path) if lock is None else lock
        self._writers: list[Writer] = []

    def close(self) -> None:
        """Close the writers (their last flush is what the files hold) and a lock taken here."""
        self.close_writers()
        if self._own_lock:
            self.lock.close()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # run.json, node sets, events, config.yaml

    def begin(
        self, cfg: Config, info: dict[str, Any], groups: dict[str, Group], n_E: int, schedule: Schedule | None
    ) -> None:
        """What a run writes before its first step: config.yaml (unless the folder has one: a
        resumed or extended run keeps its own), run.json (status running), node_sets.json and,
        with a protocol, events.tsv. So a folder written from Python resumes as a CLI one does."""
        if not (self.path / "config.yaml").exists():
            self.write_config(cfg)
        self.write_info({**info, "status": "running"})
        write_node_sets(self.path / "node_sets.json", groups, n_E)
        if schedule is not None:
            schedule.write_events(self.path / "events.tsv")

    def write_info(self, info: dict[str, Any]) -> None:
        write_json(self.path / "run.json", info)

    def read_info(self) -> dict[str, Any]:
        return read_json(self.path / "run.json")

    def config(self, overrides: list[str] | None = None) -> Config:
        """config.yaml, with `key=value` overrides."""
        return load_config(self.path / "config.yaml", overrides)

    def write_config(self, cfg: Config) -> None:
        """config.yaml, replaced atomically."""
        tmp = self.path / "config.yaml.tmp"
        tmp.write_text(cfg.to_yaml())
        os.replace(tmp, self.path / "config.yaml")

    # writers

    def spike_writer(self, cfg: Config, append: bool) -> SpikeWriter:
        w = SpikeWriter(self.path / "spikes.h5", populations(cfg), append)
        self._writers.append(w)
        return w

    def report_writers(
        self, cfg: Config, neurons: np.ndarray, t0: float, dtype: torch.dtype, append: bool
    ) -> dict[str, ReportWriter]:
        """One reports/<variable>.h5 per traced variable; `t0` (ms): the first sample's time.
        The reports folder is made even when nothing is traced (every run folder has one)."""
        (self.path / "reports").mkdir(parents=True, exist_ok=True)
        rec = cfg.record
        # Traces in the run's dtype (float16 ones as float32): a float64 run keeps every digit.
        report_dtype = np.float64 if dtype == torch.float64 else np.float32
        out = {}
        for v in rec.traces.variables:
            out[v] = ReportWriter(
                self.path / "reports" / f"{v}.h5",
                v,
                populations(cfg),
                neurons,
                t0,
                rec.traces.every * cfg.dt,
                append,
                dtype=report_dtype,
            )
            self._writers.append(out[v])
        return out

    def rates_writer(self, groups: dict[str, Group], t0: float, bin_ms: float, append: bool) -> SeriesWriter:
        """rates.h5: one rate series per group, bins of `bin_ms` ms from `t0` ms."""
        w = SeriesWriter(
            self.path / "rates.h5",
            {f"rates/{g}/rate_hz": (np.float32, "Hz") for g in groups},
            {f"rates/{g}/node_ids": group_ids(ids).astype(np.uint64) for g, ids in groups.items()},
            t0,
            bin_ms,
            append,
        )
        self._writers.append(w)
        return w

    def synapses_writer(
        self,
        series: dict[str, tuple[type, str]],
        constants: dict[str, np.ndarray],
        t0: float,
        every_ms: float,
        append: bool,
    ) -> SeriesWriter:
        """synapses.h5: the synapse monitor's series, a sample every `every_ms` ms from `t0` ms."""
        w = SeriesWriter(self.path / "synapses.h5", series, constants, t0, every_ms, append)
        self._writers.append(w)
        return w

    def close_writers(self) -> None:
        for w in self._writers:
            try:
                w.close()
            except OSError:
                pass  # already reported; the file holds what its last flush wrote
        self._writers = []

    # snapshots, checkpoint, extension

    def snapshot(self, conn: Connectivity, synapses: SynapseState, t_ms: float, step: int, seed: int) -> None:
        """snapshots/connectivity_<t>ms.npz: every projection and the E→E state at this step."""
        from wmnet.io.connectivity_files import save_snapshot

        folder = self.path / "snapshots"
        folder.mkdir(exist_ok=True)
        save_snapshot(
            folder / f"connectivity_{t_ms:g}ms.npz", conn, synapses, {"t_ms": t_ms, "step": step, "seed": seed}
        )

    def save_checkpoint(self, data: dict[str, Any]) -> None:
        save_checkpoint(self.path / CHECKPOINT, data)

    def load_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint(self.path / CHECKPOINT)

    def extension(self) -> dict[str, float] | None:
        """The pending `wmnet extend`, or None."""
        return read_extension(self.path)

    def start_extension(self, pending: dict[str, float]) -> None:
        """Record an extension before config.yaml changes (atomically): `resume` can finish it."""
        write_json(self.path / EXTENSION, pending)

    def finish_extension(self) -> None:
        (self.path / EXTENSION).unlink(missing_ok=True)
