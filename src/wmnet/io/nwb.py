"""A run folder as one NWB file (pynwb), written in bounded memory (issue 16).

What goes where (times in seconds in the NWB file; wmnet's files are in ms):

- spikes.h5 -> the Units table: one unit per neuron that spiked (every neuron with
  `all_units`), id = the global neuron index, columns `population`, `node_id` (local to the
  population), `groups` ("+"-joined group names) and one boolean `in_<group>` per group of
  node_sets.json; spike times in each unit sorted by time.
- reports/<var>.h5 -> processing module "traces": a TimeSeries per variable (samples × recorded
  neurons; unit mV, mV/ms or dimensionless; starting_time and rate), and the table
  "recorded_neurons" whose row j is column j of every trace (id = global index).
- rates.h5, synapses.h5 -> processing modules "rates" and "synapses": one TimeSeries per series
  (its name is the file's dataset path with "/" replaced by "."; `comments` holds the path), and
  the table "constants" with the file's constant datasets (group node ids, synapse counts).
- events.tsv -> the epochs table (tags = trial_type; columns trial_type, stimulus, group, block,
  repetition (-1 for n/a), start_step, stop_step); start/stop times exact from the steps.
- config.yaml (whole) -> experiment_description; run.json (seed, versions, status, summary) and
  the exporting versions -> notes (JSON); source_script says how to rerun it.

The Units table needs each neuron's spikes together, while spikes.h5 is sorted by time: a
counting pass gives every neuron's spike count; runs with at most `max_spikes_in_memory`
spikes are then sorted by neuron in memory, larger ones are first split (one sequential pass)
into buckets of consecutive neurons, each at most that many spikes, in a temporary HDF5 file
beside the output, and each bucket is sorted and written in turn through an hdmf data-chunk
iterator. Traces are copied in row blocks the same way. The NWB file is written to a temporary
name and renamed at the end: a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
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
    from tqdm import tqdm

    from wmnet.result import RunResult

READ_CHUNK = 1 << 20  # spikes (or trace rows) read from a source file at a time
MAX_SPIKES_IN_MEMORY = 8 << 20  # spikes sorted in memory at once (16 bytes each with their ids)
TRACE_VARIABLES = tuple(UNITS)  # the model's state variables, in the order of wmnet's reports


def unit_name(unit: str) -> str:
    """NWB unit text of a wmnet unit attribute ("1" is a pure number)."""
    return "dimensionless" if unit == "1" else unit


# --- reading a run folder -------------------------------------------------------------------


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


def spike_chunks(file: h5py.File, pop: str, chunk: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(timestamps_ms, local node_ids) of one population of an open spikes.h5, `chunk` (default
    READ_CHUNK) at a time (the rows both datasets hold)."""
    chunk = chunk or READ_CHUNK
    if f"spikes/{pop}" not in file:
        return
    g = file[f"spikes/{pop}"]
    ts, ids = g["timestamps"], g["node_ids"]
    n = min(ts.shape[0], ids.shape[0])
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        yield ts[a:b], ids[a:b].astype(np.int64)


# --- writing ---------------------------------------------------------------------------------


def _chunk_iterator(blocks: Iterator[np.ndarray], shape: tuple[int, ...], dtype: np.dtype, chunk_rows: int) -> Any:
    """An hdmf data-chunk iterator over consecutive row blocks of an array of `shape` (written in
    turn by pynwb's HDF5 backend, so only one block is in memory). Empty arrays are returned as such
    (HDF5 cannot chunk a dataset of length 0)."""
    from hdmf.data_utils import AbstractDataChunkIterator, DataChunk

    if shape[0] == 0:
        return np.zeros(shape, dtype=dtype)

    class Chunks(AbstractDataChunkIterator):
        def __init__(self) -> None:
            self.pos = 0

        def __iter__(self) -> Chunks:
            return self

        def __len__(self) -> int:  # hdmf's VectorIndex sizes its dtype from its target's length
            return shape[0]

        def __next__(self) -> DataChunk:
            block = next(blocks)
            while len(block) == 0:
                block = next(blocks)
            a, self.pos = self.pos, self.pos + len(block)
            if self.pos > shape[0]:
                raise WmnetError(f"internal error: {self.pos} rows written to an array of {shape[0]}")
            return DataChunk(
                data=np.ascontiguousarray(block, dtype=dtype),
                selection=(slice(a, self.pos), *(slice(0, d) for d in shape[1:])),
            )

        def recommended_chunk_shape(self) -> tuple[int, ...]:
            return (max(1, min(chunk_rows, shape[0])), *shape[1:])

        def recommended_data_shape(self) -> tuple[int, ...]:
            return shape

        @property
        def dtype(self) -> np.dtype:
            return np.dtype(dtype)

        @property
        def maxshape(self) -> tuple[int, ...]:
            return shape

    return Chunks()


def _unit_spike_times(
    spikes: h5py.File, run: Run, counts: np.ndarray, budget: int, scratch: Path, bar: tqdm, stack: contextlib.ExitStack
) -> Iterator[np.ndarray]:
    """Every spike time (s), grouped by neuron in global order and in time order within a neuron."""
    total = int(counts.sum())
    if total <= budget:
        gids, times = [], []
        for pop, offset, _ in run.populations:
            for ts, ids in spike_chunks(spikes, pop):
                gids.append(ids + offset)
                times.append(ts)
                bar.update(ts.size)
        gid, t = (np.concatenate(x) if x else np.zeros(0) for x in (gids, times))
        order = np.argsort(gid, kind="stable")  # stable: each neuron's spikes stay in time order
        t = t[order] / 1000.0
        del gid, order
        for a in range(0, total, READ_CHUNK):
            yield t[a : a + READ_CHUNK]
        return
    # Buckets of consecutive neurons, each with at most `budget` spikes (a neuron with more is
    # a bucket on its own): one pass over spikes.h5 appends each chunk's spikes to their buckets.
    cum = np.cumsum(counts)
    starts = [0]
    while cum[-1] - (cum[starts[-1] - 1] if starts[-1] else 0) > budget:
        base = cum[starts[-1] - 1] if starts[-1] else 0
        nxt = int(np.searchsorted(cum, base + budget, side="right"))
        starts.append(max(nxt, starts[-1] + 1))
    edges = np.asarray(starts + [run.n])
    tmp = stack.enter_context(h5py.File(scratch, "w", rdcc_nbytes=0))
    stack.callback(scratch.unlink, missing_ok=True)
    buckets = [
        (
            tmp.create_dataset(f"t{b}", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(65536,)),
            tmp.create_dataset(f"i{b}", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(65536,)),
        )
        for b in range(len(starts))
    ]
    for pop, offset, _ in run.populations:
        for ts, ids in spike_chunks(spikes, pop):
            gid = ids + offset
            which = np.searchsorted(edges, gid, side="right") - 1
            order = np.argsort(which, kind="stable")
            bounds = np.searchsorted(which[order], np.arange(len(buckets) + 1))
            for b, (dt_, di) in enumerate(buckets):
                sel = order[bounds[b] : bounds[b + 1]]
                if sel.size:
                    n0 = dt_.shape[0]
                    dt_.resize(n0 + sel.size, axis=0)
                    di.resize(n0 + sel.size, axis=0)
                    dt_[n0:], di[n0:] = ts[sel], gid[sel]
            bar.update(ts.size)
    for dt_, di in buckets:
        t, gid = dt_[()], di[()]
        t = t[np.argsort(gid, kind="stable")] / 1000.0
        del gid
        for a in range(0, t.size, READ_CHUNK):
            yield t[a : a + READ_CHUNK]
            bar.update(min(READ_CHUNK, t.size - a))


def _add_units(
    nwbfile: Any, run: Run, all_units: bool, budget: int, scratch: Path, progress: bool, stack: contextlib.ExitStack
) -> None:
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units
    from tqdm import tqdm

    path = run.path / "spikes.h5"
    if not path.exists():
        return
    spikes = stack.enter_context(h5py.File(path, "r", locking=False))
    counts = np.zeros(run.n, dtype=np.int64)
    for pop, offset, size in run.populations:  # the counting pass
        for _, ids in spike_chunks(spikes, pop):
            if ids.size and (ids.min() < 0 or ids.max() >= size):
                raise WmnetError(f"{path}: spikes/{pop}/node_ids holds ids outside 0..{size - 1}")
            counts[offset : offset + size] += np.bincount(ids, minlength=size)
    total = int(counts.sum())
    passes = 1 if total <= budget else 2
    bar = stack.enter_context(
        tqdm(total=passes * total, unit="spike", unit_scale=True, disable=not progress, desc="units", file=sys.stderr)
    )
    keep = np.arange(run.n) if all_units else np.flatnonzero(counts)
    times = _unit_spike_times(spikes, run, counts, budget, scratch, bar, stack)
    population = np.where(keep < run.n_e, "E", "I")
    spike_times = VectorData(
        name="spike_times",
        description="pulse onsets (s), in time order within each unit",
        data=_chunk_iterator(times, (total,), np.dtype(np.float64), 1 << 16),
    )
    # The index before its target: hdmf's DynamicTable drops chunk-iterator columns from its
    # length check as it meets them, and then would not find the index's target.
    columns = [
        VectorIndex(name="spike_times_index", data=np.cumsum(counts[keep]).astype(np.uint64), target=spike_times),
        spike_times,
        VectorData(name="population", description="the neuron's population (E or I)", data=population.tolist()),
        VectorData(
            name="node_id",
            description="the neuron's index within its population (SONATA node id)",
            data=np.where(keep < run.n_e, keep, keep - run.n_e).astype(np.int64),
        ),
    ]
    member = {name: np.isin(keep, ids) for name, ids in run.groups.items()}
    names = np.array(list(member), dtype=object)
    table = np.stack(list(member.values()), axis=1) if member else np.zeros((keep.size, 0), dtype=bool)
    columns.append(
        VectorData(
            name="groups",
            description="the neuron's groups (node_sets.json), '+'-joined",
            data=["+".join(names[row]) for row in table],
        )
    )
    for name, m in member.items():
        columns.append(
            VectorData(
                name=f"in_{name.replace('/', '_')}", data=m, description=f"member of group {name} (node_sets.json)"
            )
        )
    desc = "wmnet neurons: id = global neuron index (E first). " + (
        "every neuron" if all_units else "the neurons that spiked at least once"
    )
    nwbfile.units = Units(
        name="units",
        id=ElementIdentifiers(name="id", data=keep.astype(np.int64)),
        columns=columns,
        description=desc,
        resolution=run.dt / 1000.0,
    )


def _add_traces(nwbfile: Any, run: Run, stack: contextlib.ExitStack) -> None:
    from hdmf.common import DynamicTable, ElementIdentifiers, VectorData
    from pynwb import TimeSeries

    files = [run.path / "reports" / f"{v}.h5" for v in TRACE_VARIABLES if (run.path / "reports" / f"{v}.h5").exists()]
    if not files:
        return
    module = nwbfile.create_processing_module("traces", "state variables of the recorded neurons (wmnet reports)")
    neurons: np.ndarray | None = None
    for file in files:
        var = file.stem
        f = stack.enter_context(h5py.File(file, "r", locking=False))
        pops = [(name, g) for name, g in f["report"].items()]
        start, stop, step = (float(x) for x in pops[0][1]["mapping/time"][()])
        n_rows = min([round((stop - start) / step), *(g["data"].shape[0] for _, g in pops)])
        ids = np.concatenate(
            [g["mapping/node_ids"][()].astype(np.int64) + (run.n_e if name == "I" else 0) for name, g in pops]
        )
        if neurons is None:
            neurons = ids
            module.add(
                DynamicTable(
                    name="recorded_neurons",
                    id=ElementIdentifiers(name="id", data=ids),
                    description="row j: the neuron in column j of every trace (id = global neuron index)",
                    columns=[
                        VectorData(
                            name="population", description="E or I", data=np.where(ids < run.n_e, "E", "I").tolist()
                        ),
                        VectorData(
                            name="node_id",
                            description="index within the population",
                            data=np.where(ids < run.n_e, ids, ids - run.n_e),
                        ),
                    ],
                )
            )
        elif not np.array_equal(ids, neurons):
            raise WmnetError(f"{file}: records other neurons than {files[0].name}")
        datasets = [g["data"] for _, g in pops]

        def blocks(datasets: list[h5py.Dataset] = datasets, n_rows: int = n_rows) -> Iterator[np.ndarray]:
            for a in range(0, n_rows, READ_CHUNK // 16):
                b = min(n_rows, a + READ_CHUNK // 16)
                yield np.concatenate([d[a:b] for d in datasets], axis=1)

        unit = unit_name(str(datasets[0].attrs.get("units", UNITS.get(var, ""))))
        module.add(
            TimeSeries(
                name=var,
                data=_chunk_iterator(blocks(), (n_rows, ids.size), np.dtype(np.float32), 4096),
                unit=unit,
                starting_time=start / 1000.0,
                rate=1000.0 / step,
                description=f"{var} ({unit}) of the recorded neurons: column j is row j of "
                "recorded_neurons; sample k at starting_time + k/rate",
                comments=f"reports/{var}.h5",
            )
        )


def _add_series(nwbfile: Any, run: Run, name: str, description: str) -> None:
    from hdmf.common import DynamicTable
    from pynwb import TimeSeries

    from wmnet.io.series import read_series

    path = run.path / f"{name}.h5"
    if not path.exists():
        return
    t, values = read_series(path)
    start, _, step = (float(x) for x in values.pop("time"))
    module = nwbfile.create_processing_module(name, description)
    constants = DynamicTable(name="constants", description=f"constant datasets of {name}.h5 (path, values)")
    constants.add_column(name="path", description="dataset path in the file")
    constants.add_column(name="values", description="the dataset's values (float64; integers exact)", index=True)
    with h5py.File(path, "r", locking=False) as f:
        units = {k: str(f[k].attrs.get("units", "")) for k in values}
    for key, v in values.items():
        if v.ndim == 1 and v.shape[0] == t.size and key.split("/")[-1] not in ("node_ids",):
            module.add(
                TimeSeries(
                    name=key.replace("/", "."),
                    data=v,
                    unit=unit_name(units[key]),
                    starting_time=start / 1000.0,
                    rate=1000.0 / step,
                    comments=f"{name}.h5:/{key}",
                    description=f"{key} ({unit_name(units[key])}); sample k at starting_time + k/rate",
                )
            )
        else:
            constants.add_row(path=key, values=np.atleast_1d(v).astype(np.float64).tolist())
    if len(constants):
        module.add(constants)


def _add_epochs(nwbfile: Any, run: Run) -> None:
    rows = run.events()
    if not rows:
        return
    for col, desc in (
        ("trial_type", "the epoch's name"),
        ("stimulus", "the input during the epoch"),
        ("group", "the trial's group(s)"),
        ("block", "the protocol block (n/a outside blocks)"),
        ("repetition", "the block's repetition (-1: n/a)"),
        ("start_step", "first step of the epoch"),
        ("stop_step", "step after the epoch's last"),
    ):
        nwbfile.add_epoch_column(name=col, description=desc)
    for r in rows:
        k0, k1 = int(r["start_step"]), int(r["stop_step"])
        nwbfile.add_epoch(
            start_time=k0 * run.dt / 1000.0,
            stop_time=k1 * run.dt / 1000.0,
            tags=[r["trial_type"]],
            trial_type=r["trial_type"],
            stimulus=r["stimulus"],
            group=r["group"],
            block=r["block"],
            repetition=-1 if r["repetition"] == "n/a" else int(r["repetition"]),
            start_step=k0,
            stop_step=k1,
        )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("wmnet", "pynwb", "hdmf", "h5py", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _nwbfile(run: Run) -> Any:
    import uuid

    from pynwb import NWBFile

    info = run.info
    try:
        started = dt.datetime.strptime(str(info.get("started")), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        started = dt.datetime.fromtimestamp((run.path / "run.json").stat().st_mtime, dt.UTC)
    seed = info.get("seed", run.config.get("seed"))
    notes = {"run.json": info, "exported_with": _versions(), "run_folder": str(run.path.absolute())}
    return NWBFile(
        session_description=(
            f"wmnet simulation of {run.n} LIF neurons ({run.n_e} E, {run.n - run.n_e} I), "
            f"{run.end_ms:g} ms, seed {seed}, status {run.status}"
        ),
        identifier=str(uuid.uuid4()),
        session_start_time=started,
        session_id=run.path.name,
        experiment_description=run.config_yaml,
        notes=json.dumps(notes, indent=1),
        source_script=(
            f"wmnet run config.yaml --seed {seed}   # config.yaml: this file's experiment_description "
            f"(the whole config); wmnet {info.get('versions', {}).get('wmnet', '?')}"
        ),
        source_script_file_name="wmnet",
        data_collection=(
            f"simulated by wmnet: {info.get('engine')} engine, {info.get('device_name', info.get('device'))}, "
            f"{info.get('dtype')}; input {info.get('input') or 'from the config'}, connectivity "
            f"{info.get('connectivity', 'generated')}"
        ),
        keywords=["wmnet", "simulation", "spiking network", "working memory", "LIF"],
    )


def to_nwb(
    result_or_dir: RunResult | str | Path,
    path: str | Path,
    all_units: bool = False,
    partial: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    max_spikes_in_memory: int = MAX_SPIKES_IN_MEMORY,
) -> Path:
    """Write a run (a RunResult with a folder, or the folder) to the NWB file `path`.

    all_units: a unit for every neuron (default: those that spiked). partial: export a run that
    did not complete (what its files hold). max_spikes_in_memory: spikes sorted at once (about
    24 bytes each); larger runs go through a temporary bucket file beside `path`.
    Returns `path`. Bad input raises WmnetError before anything is written.
    """
    try:
        from pynwb import NWBHDF5IO
    except ImportError:
        raise WmnetError("NWB export needs pynwb: pip install 'wmnet[nwb]'") from None
    out = Path(path)
    if out.is_dir():
        raise WmnetError(f"--nwb {out}: is a folder")
    if out.exists() and not overwrite:
        raise WmnetError(f"--nwb {out}: exists (use --overwrite to replace it)")
    if not out.parent.is_dir():
        raise WmnetError(f"--nwb {out}: no folder {out.parent}")
    if max_spikes_in_memory < 1:
        raise WmnetError(f"max_spikes_in_memory {max_spikes_in_memory}: expected a positive count")
    run = open_run(result_or_dir, partial)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.nwb")  # pynwb warns about names not ending in .nwb
    try:
        with contextlib.ExitStack() as stack:  # the source files stay open until the iterators are written
            nwbfile = _nwbfile(run)
            _add_units(
                nwbfile,
                run,
                all_units,
                max_spikes_in_memory,
                out.with_name(f".{out.name}.{os.getpid()}.spikes.h5"),
                progress,
                stack,
            )
            _add_traces(nwbfile, run, stack)
            _add_series(nwbfile, run, "rates", "population and group rates (Hz) in bins (wmnet rates.h5)")
            _add_series(nwbfile, run, "synapses", "E→E synapse statistics and switch counts (wmnet synapses.h5)")
            _add_epochs(nwbfile, run)
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwbfile)
        os.replace(tmp, out)
    except OSError as e:
        raise WmnetError(f"--nwb {out}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
