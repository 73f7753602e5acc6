"""SONATA spike files and state reports (HDF5), written incrementally.

Spikes:   /spikes/<population>/{timestamps (float64, ms), node_ids (uint64)}, attribute
          `sorting` = "by_time"; node ids are local to each population.
Reports:  /report/<population>/data (time × recorded neurons; float64 for a float64 run,
          float32 otherwise: a float16 run's samples are stored exactly as float32), with
          mapping/{node_ids, index_pointer, element_ids, time = [start, stop, step] (ms)}.

Files are flushed after every append, so they stay readable if the process dies. A resumed
run reopens them (`append=True`) and truncates them to a checkpoint's positions (`truncate`).

Reading while a run writes: the writers open their files without HDF5's file locking
(`locking=False`), so another process can open them, with a plain `h5py.File(path, "r")` too
(a writer that held HDF5's lock would make that fail with "unable to lock file"; the
environment variable HDF5_USE_FILE_LOCKING=TRUE or BEST_EFFORT overrides `locking=False` and
brings that back, for the writer's and for a reader's own process alike). HDF5 gives
such a reader no isolation from the writer (that would take SWMR, whose files a plain reader
cannot open after a crash and a resumed run cannot reopen): a read that overlaps a flush can
fail ("addr overflow") or see one dataset a flush ahead of its sibling. `read_spikes` and
`read_report` therefore retry failed reads and return the consistent prefix (equal lengths,
the rows that `mapping/time` covers); other readers should do the same, or retry.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from wmnet.errors import WmnetError

UNITS = {"v": "mV", "i_s": "mV/ms", "i_f": "mV/ms", "x": "1", "a": "1"}
T = TypeVar("T")


def open_for_writing(path: Path, append: bool) -> h5py.File:
    """A new file ("w") or an existing one ("r+"), without HDF5 file locking: readers in other
    processes may open it while the run writes (see the module's docstring).

    No chunk cache (rdcc_nbytes=0): an append goes straight to the file. With HDF5's default
    chunk cache (8 MiB per dataset in HDF5 2.0, 1 MiB in 1.x) each appendable dataset kept up to
    8 MiB of chunks it had written in memory, so a run's RSS kept growing for minutes of simulated
    time (towards 8 MiB × its ~20 datasets), and every flush rewrote each partial chunk whole
    (about 20 times the bytes in a test of 1000 neurons). The writers only append and never
    read data back, so the cache bought nothing (docs/performance.md, "Memory over long runs")."""
    if not append:
        return h5py.File(path, "w", locking=False, rdcc_nbytes=0)
    try:
        return h5py.File(path, "r+", locking=False, rdcc_nbytes=0)
    except FileNotFoundError:
        raise WmnetError(f"{path}: missing, cannot continue the run's output") from None
    except OSError as e:  # h5py's error for a truncated or overwritten file
        raise WmnetError(
            f"{path}: cannot continue the run's output: not a readable HDF5 file, damaged ({_first_line(e)})"
        ) from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


@contextmanager
def reopened(path: Path, file: h5py.File) -> Iterator[None]:
    """Around the lookups of a reopened file: a missing or wrong dataset is one WmnetError naming
    the file (and the file is closed), not a KeyError."""
    try:
        yield
    except (KeyError, OSError, ValueError, TypeError) as e:
        file.close()
        raise WmnetError(
            f"{path}: cannot continue the run's output: the file is damaged or was not written by "
            f"wmnet ({_first_line(e)})"
        ) from None


def read_live(
    path: Path, read: Callable[[h5py.File], T], ok: Callable[[T], bool] = lambda _: True, tries: int = 8
) -> T:
    """read(file) of a file that a run may be writing: opened without taking HDF5's lock (so a
    writer holding it does not block this), retried while the read raises or its result is not
    `ok` (a read that overlapped the writer's flush). A missing file, or one
    that still fails after `tries` attempts (about 1.3 s of waits), raises; a result still not
    `ok` is returned."""
    for attempt in range(tries):
        last = attempt == tries - 1
        try:
            with h5py.File(path, "r", locking=False) as f:
                out = read(f)
        except FileNotFoundError:
            raise
        except Exception:  # h5py raises OSError, KeyError, RuntimeError... for a half-written object
            if last:
                e = sys.exc_info()[1]
                assert e is not None
                if isinstance(e, WmnetError):
                    raise
                raise WmnetError(
                    f"{path}: cannot read it: the file is damaged or was not written by wmnet "
                    f"({type(e).__name__}: {_first_line(e)})"
                ) from None
        else:
            if last or ok(out):
                return out
        time.sleep(0.01 * 2 ** min(attempt, 6))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class PopulationRange:
    name: str
    offset: int  # global index of the first neuron
    size: int


def _appendable(group: h5py.Group, name: str, dtype: np.dtype | type, width: int | None = None) -> h5py.Dataset:
    shape = (0,) if width is None else (0, width)
    maxshape = (None,) if width is None else (None, width)
    chunks = (65536,) if width is None else (max(1, 65536 // max(width, 1)), width)
    return group.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks)


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + values.shape[0], axis=0)
    ds[n:] = values


def _truncate(ds: h5py.Dataset, n: int) -> None:
    if not 0 <= n <= ds.shape[0]:
        raise WmnetError(f"{ds.file.filename}: {ds.name} holds {ds.shape[0]} rows, the checkpoint expects {n} or more")
    ds.resize(n, axis=0)


class SpikeWriter:
    """Appends pulse onsets to a SONATA spike file, in time order (`append`: reopen one)."""

    def __init__(self, path: Path, populations: list[PopulationRange], append: bool = False):
        self.path, self.populations = path, populations
        self.file = open_for_writing(path, append)
        self._ds: dict[str, tuple[h5py.Dataset, h5py.Dataset]] = {}
        if append:
            with reopened(path, self.file):
                for pop in populations:
                    g = self.file[f"spikes/{pop.name}"]
                    self._ds[pop.name] = (g["timestamps"], g["node_ids"])
            return
        root = self.file.create_group("spikes")
        for pop in populations:
            g = root.create_group(pop.name)
            g.attrs["sorting"] = "by_time"
            ts = _appendable(g, "timestamps", np.float64)
            ts.attrs["units"] = "ms"
            self._ds[pop.name] = (ts, _appendable(g, "node_ids", np.uint64))
        self.file.flush()

    def append(self, times_ms: np.ndarray, global_ids: np.ndarray) -> None:
        """Spikes sorted by time (then id), with global neuron indices."""
        for pop in self.populations:
            m = (global_ids >= pop.offset) & (global_ids < pop.offset + pop.size)
            ts, ids = self._ds[pop.name]
            _append(ts, times_ms[m].astype(np.float64))
            _append(ids, (global_ids[m] - pop.offset).astype(np.uint64))
        self.file.flush()

    def positions(self) -> dict[str, int]:
        """Spikes written so far, per population."""
        return {name: int(ts.shape[0]) for name, (ts, _) in self._ds.items()}

    def truncate(self, positions: dict[str, int]) -> None:
        """Drop every spike after the first positions[pop] of each population."""
        for name, (ts, ids) in self._ds.items():
            _truncate(ts, positions[name])
            _truncate(ids, positions[name])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class ReportWriter:
    """Appends samples of one state variable for selected neurons to a SONATA report.

    With `append`, reopens an existing report (t_start and t_step are then the file's own, and
    so is its dtype). `dtype`: the run's working dtype; the data is stored in it (float16 as
    float32, which holds it exactly), so a float64 run's traces keep every digit.
    """

    def __init__(
        self,
        path: Path,
        variable: str,
        populations: list[PopulationRange],
        neurons: np.ndarray,
        t_start: float,
        t_step: float,
        append: bool = False,
        dtype: np.dtype | type = np.float32,
    ):
        self.path, self.variable = path, variable
        self.dtype = np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)
        self.file = open_for_writing(path, append)
        self._cols: list[tuple[h5py.Dataset, h5py.Dataset, np.ndarray]] = []
        for pop in populations:
            cols = np.nonzero((neurons >= pop.offset) & (neurons < pop.offset + pop.size))[0]
            if cols.size == 0:
                continue
            if append:
                with reopened(path, self.file):
                    g = self.file[f"report/{pop.name}"]
                    self._cols.append((g["data"], g["mapping/time"], cols))
                continue
            g = self.file.create_group(f"report/{pop.name}")
            data = _appendable(g, "data", self.dtype, width=int(cols.size))
            data.attrs["units"] = UNITS[variable]
            data.attrs["variable_name"] = variable
            m = g.create_group("mapping")
            m.create_dataset("node_ids", data=(neurons[cols] - pop.offset).astype(np.uint64))
            m.create_dataset("index_pointer", data=np.arange(cols.size + 1, dtype=np.uint64))
            m.create_dataset("element_ids", data=np.zeros(cols.size, dtype=np.uint32))
            time = m.create_dataset("time", data=np.array([t_start, t_start, t_step], dtype=np.float64))
            time.attrs["units"] = "ms"
            self._cols.append((data, time, cols))
        self.file.flush()

    def append(self, samples: np.ndarray) -> None:
        """samples: (n_samples, n_recorded) for all recorded neurons, in `neurons` order."""
        for data, time, cols in self._cols:
            _append(data, samples[:, cols].astype(data.dtype))
            time[1] = time[0] + data.shape[0] * time[2]  # stop is exclusive
        self.file.flush()

    def positions(self) -> int:
        """Samples written so far (the same for every population)."""
        return int(self._cols[0][0].shape[0]) if self._cols else 0

    def truncate(self, n: int) -> None:
        """Drop every sample after the first n."""
        for data, time, _ in self._cols:
            _truncate(data, n)
            time[1] = time[0] + n * time[2]
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_spikes(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{population: (timestamps_ms, local node_ids)} from a SONATA spike file (also while a run
    writes it: each population's spikes up to the last complete flush that the read saw)."""

    def read(f: h5py.File) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for name, g in f["spikes"].items():
            ts, ids = g["timestamps"][()], g["node_ids"][()]
            n = min(ts.shape[0], ids.shape[0])
            out[name] = (ts[:n], ids[:n])
        return out

    def ok(out: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
        # Sorted by time, as written: a tail read from chunks not yet indexed would not be.
        return all(bool(np.all(np.diff(ts) >= 0)) for ts, _ in out.values())

    return read_live(path, read, ok)


def read_report(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{population: (times_ms, local node_ids, data[time, neuron])} from a SONATA report (also
    while a run writes it: the samples that every population and `mapping/time` hold)."""

    def read(f: h5py.File) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        parts = {}
        if "report" not in f:  # a report of no neurons (record.traces.neurons: []) has no population
            return {}
        for name, g in f["report"].items():
            start, stop, step = (float(v) for v in g["mapping/time"][()])
            data = g["data"][()]
            parts[name] = (
                start,
                step,
                min(data.shape[0], round((stop - start) / step)),
                g["mapping/node_ids"][()],
                data,
            )
        n = min((p[2] for p in parts.values()), default=0)
        return {
            name: (start + step * np.arange(n), ids, data[:n]) for name, (start, step, _, ids, data) in parts.items()
        }

    return read_live(path, read)
