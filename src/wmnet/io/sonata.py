"""SONATA spike files and state reports (HDF5), written incrementally.

Spikes:   /spikes/<population>/{timestamps (float64, ms), node_ids (uint64)}, attribute
          `sorting` = "by_time"; node ids are local to each population.
Reports:  /report/<population>/data (time × recorded neurons; float64 for a float64 run,
          float32 otherwise: a float16 run's samples are stored exactly as float32), with
          mapping/{node_ids, index_pointer, element_ids, time = [start, stop, step] (ms)}.

Files are flushed after every append, so they stay readable if the process dies. A resumed
run reopens them (`append=True`) and truncates them to a checkpoint's positions (`truncate`).

Reading while a run writes: the writers take no HDF5 file lock, so other processes may open the
files during the run (io/hdf5.py says what that gives a reader); `read_spikes` and `read_report`
retry failed reads and return the consistent prefix (equal lengths, the rows that `mapping/time`
covers); other readers should do the same, or retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from wmnet import model
from wmnet.io.hdf5 import append_rows, appendable, open_for_writing, read_live, reopened, truncate_rows

UNITS = model.UNITS  # per state variable, for the reports' units attribute


@dataclass(frozen=True)
class PopulationRange:
    name: str
    offset: int  # global index of the first neuron
    size: int


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
            ts = appendable(g, "timestamps", np.float64)
            ts.attrs["units"] = "ms"
            self._ds[pop.name] = (ts, appendable(g, "node_ids", np.uint64))
        self.file.flush()

    def append(self, times_ms: np.ndarray, global_ids: np.ndarray) -> None:
        """Spikes sorted by time (then id), with global neuron indices."""
        for pop in self.populations:
            m = (global_ids >= pop.offset) & (global_ids < pop.offset + pop.size)
            ts, ids = self._ds[pop.name]
            append_rows(ts, times_ms[m].astype(np.float64))
            append_rows(ids, (global_ids[m] - pop.offset).astype(np.uint64))
        self.file.flush()

    def positions(self) -> dict[str, int]:
        """Spikes written so far, per population."""
        return {name: int(ts.shape[0]) for name, (ts, _) in self._ds.items()}

    def truncate(self, positions: dict[str, int]) -> None:
        """Drop every spike after the first positions[pop] of each population."""
        for name, (ts, ids) in self._ds.items():
            truncate_rows(ts, positions[name])
            truncate_rows(ids, positions[name])
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
            data = appendable(g, "data", self.dtype, width=int(cols.size))
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
            append_rows(data, samples[:, cols].astype(data.dtype))
            time[1] = time[0] + data.shape[0] * time[2]  # stop is exclusive
        self.file.flush()

    def positions(self) -> int:
        """Samples written so far (the same for every population)."""
        return int(self._cols[0][0].shape[0]) if self._cols else 0

    def truncate(self, n: int) -> None:
        """Drop every sample after the first n."""
        for data, time, _ in self._cols:
            truncate_rows(data, n)
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
