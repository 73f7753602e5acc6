"""Regularly sampled series (HDF5), written incrementally: rates.h5 and synapses.h5.

Every series of a file has one row per sample; `/time` = [start, stop, step] (ms, stop
exclusive) gives their times, start + j·step. Constant datasets (node ids) sit beside them.
Like the SONATA writers, each append is flushed, and a resumed run reopens the file and
truncates it to a checkpoint's position.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from wmnet.io.sonata import _append, _appendable, _truncate


class SeriesWriter:
    """Appends rows to the 1-D datasets `series` {path: (dtype, units)}; `constants` {path: array}."""

    def __init__(self, path: Path, series: dict[str, tuple[type, str]], constants: dict[str, np.ndarray],
                 t_start: float, t_step: float, append: bool = False):
        self.path = path
        self.file = h5py.File(path, "r+" if append else "w")
        if append:
            self._time = self.file["time"]
            self._ds = {name: self.file[name] for name in series}
            return
        self._time = self.file.create_dataset("time", data=np.array([t_start, t_start, t_step], dtype=np.float64))
        self._time.attrs["units"] = "ms"
        for name, values in constants.items():
            self.file.create_dataset(name, data=values)
        self._ds = {}
        for name, (dtype, units) in series.items():
            self._ds[name] = _appendable(self.file.require_group(str(Path(name).parent)), Path(name).name, dtype)
            self._ds[name].attrs["units"] = units
        self.file.flush()

    def append(self, rows: dict[str, np.ndarray]) -> None:
        """The same number of new rows for every series."""
        for name, ds in self._ds.items():
            _append(ds, np.asarray(rows[name], dtype=ds.dtype))
        self._set_stop(self.positions())

    def positions(self) -> int:
        """Rows written so far."""
        return int(next(iter(self._ds.values())).shape[0]) if self._ds else 0

    def truncate(self, n: int) -> None:
        """Drop every row after the first n."""
        for ds in self._ds.values():
            _truncate(ds, n)
        self._set_stop(n)

    def _set_stop(self, n: int) -> None:
        self._time[1] = self._time[0] + n * self._time[2]
        self.file.flush()

    def close(self) -> None:
        self.file.close()
