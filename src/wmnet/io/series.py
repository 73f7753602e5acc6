"""Regularly sampled series (HDF5), written incrementally: rates.h5 and synapses.h5.

Every series of a file has one row per sample; `/time` = [start, stop, step] (ms, stop
exclusive) gives their times, start + j·step. Constant datasets (node ids) sit beside them.
Like the SONATA writers, each append is flushed, the file is opened without HDF5 file locking
(other processes may read it during the run), and a resumed run reopens the file and truncates
it to a checkpoint's position. `read_series` reads one, also while a run writes it.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from wmnet.io.hdf5 import append_rows, appendable, open_for_writing, read_live, reopened, truncate_rows


class SeriesWriter:
    """Appends rows to the 1-D datasets `series` {path: (dtype, units)}; `constants` {path: array}."""

    def __init__(
        self,
        path: Path,
        series: dict[str, tuple[type, str]],
        constants: dict[str, np.ndarray],
        t_start: float,
        t_step: float,
        append: bool = False,
    ):
        self.path = path
        self.file = open_for_writing(path, append)
        if append:
            with reopened(path, self.file):
                self._time = self.file["time"]
                self._ds = {name: self.file[name] for name in series}
            return
        self._time = self.file.create_dataset("time", data=np.array([t_start, t_start, t_step], dtype=np.float64))
        self._time.attrs["units"] = "ms"
        for name, values in constants.items():
            self.file.create_dataset(name, data=values)
        self._ds = {}
        for name, (dtype, units) in series.items():
            self._ds[name] = appendable(self.file.require_group(str(Path(name).parent)), Path(name).name, dtype)
            self._ds[name].attrs["units"] = units
        self.file.flush()

    def append(self, rows: dict[str, np.ndarray]) -> None:
        """The same number of new rows for every series."""
        for name, ds in self._ds.items():
            append_rows(ds, np.asarray(rows[name], dtype=ds.dtype))
        self._set_stop(self.positions())

    def positions(self) -> int:
        """Rows written so far."""
        return int(next(iter(self._ds.values())).shape[0]) if self._ds else 0

    def truncate(self, n: int) -> None:
        """Drop every row after the first n."""
        for ds in self._ds.values():
            truncate_rows(ds, n)
        self._set_stop(n)

    def _set_stop(self, n: int) -> None:
        self._time[1] = self._time[0] + n * self._time[2]
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_series(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(times_ms, {path: values}) of every dataset of a series file: constants whole, series cut
    to the rows that all of them and `/time` hold (consistent while a run writes), and "time" =
    [start, stop, step] of those rows."""

    def read(f: h5py.File) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        start, stop, step = (float(v) for v in f["time"][()])
        values: dict[str, np.ndarray] = {}
        appendable: set[str] = set()  # the series (the rest are constants)

        def visit(name: str, obj: h5py.Group | h5py.Dataset) -> None:
            if isinstance(obj, h5py.Dataset) and name != "time":
                values[name] = obj[()]
                if obj.ndim and obj.maxshape[0] is None:
                    appendable.add(name)

        f.visititems(visit)
        n = min([round((stop - start) / step), *(values[k].shape[0] for k in appendable)])
        out = {k: v[:n] if k in appendable else v for k, v in values.items()}
        out["time"] = np.array([start, start + n * step, step])
        return start + step * np.arange(n), out

    return read_live(path, read)
