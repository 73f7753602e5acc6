"""The views of a `RunResult` (result.py): `Spikes`, `Traces`, `Rates` and `SynapseStats`.

Each view reads the run's monitor when it kept its data in memory (`Simulation.run()` without `out`, or
`keep_in_memory=True`), else the run's files (docs: README, "Outputs"), afresh at every call, so a folder
that a run is still writing shows what has been flushed so far. Other attributes of a monitor (e.g.
`result.spikes.count`, `result.traces.v`) are passed through to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wmnet import model
from wmnet.io.sonata import PopulationRange

if TYPE_CHECKING:
    import pandas as pd

    from wmnet.monitors import RateMonitor, SpikeMonitor, StateMonitor, SynapseMonitor


class _View:
    """Passes unknown attributes through to the monitor (the API before these views existed)."""

    _monitor: Any

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or self.__dict__.get("_monitor") is None:
            raise AttributeError(name)
        return getattr(self._monitor, name)

    def _kept(self) -> bool:
        """Whether to read the monitor (it kept its data) rather than the files."""
        return self._monitor is not None and bool(self._monitor.keep)


class Spikes(_View):
    """Pulse onsets (ms, the first step of each pulse): `i` (global index, E first) and `t`, sorted by time."""

    def __init__(
        self, populations: list[PopulationRange], monitor: SpikeMonitor | None = None, path: Path | None = None
    ) -> None:
        self._populations, self._monitor, self._path = populations, monitor, path

    def by_population(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{population: (times_ms, local node ids)}, each sorted by time."""
        if self._kept():
            i, t = self._monitor.i, self._monitor.t
            out = {}
            for pop in self._populations:
                m = (i >= pop.offset) & (i < pop.offset + pop.size)
                out[pop.name] = (t[m], (i[m] - pop.offset).astype(np.int64))
            return out
        read: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self._path is not None and self._path.exists():
            from wmnet.io.sonata import read_spikes

            read = read_spikes(self._path)
        empty = (np.zeros(0), np.zeros(0, dtype=np.int64))
        return {
            p.name: (read[p.name][0], read[p.name][1].astype(np.int64)) if p.name in read else empty
            for p in self._populations
        }

    def _global(self) -> tuple[np.ndarray, np.ndarray]:
        if self._kept():
            return self._monitor.i, self._monitor.t
        parts = self.by_population()
        offsets = {p.name: p.offset for p in self._populations}
        i = np.concatenate([ids + offsets[name] for name, (_, ids) in parts.items()])
        t = np.concatenate([ts for ts, _ in parts.values()])
        order = np.lexsort((i, t))  # by time, then index: the monitor's order
        return i[order], t[order]

    @property
    def i(self) -> np.ndarray:
        """Global neuron index of each spike (E first)."""
        return self._global()[0]

    @property
    def t(self) -> np.ndarray:
        """Spike times (ms)."""
        return self._global()[1]

    def trains(self) -> dict[str, dict[int, np.ndarray]]:
        """Per population, every neuron's spike times (ms, sorted): {"E": {node_id: times}, "I": ...}; node ids
        are local to the population, and a silent neuron has an empty array."""
        sizes = {p.name: p.size for p in self._populations}
        out: dict[str, dict[int, np.ndarray]] = {}
        for name, (t, ids) in self.by_population().items():
            order = np.argsort(ids, kind="stable")  # stable: each train stays sorted by time
            ends = np.cumsum(np.bincount(ids, minlength=sizes[name]))
            out[name] = dict(enumerate(np.split(t[order], ends[:-1])))
        return out

    def to_pandas(self) -> pd.DataFrame:
        """One row per spike, sorted by time: population (categorical), node_id (local), t_ms."""
        import pandas as pd

        parts = self.by_population()
        names = [p.name for p in self._populations]
        frame = pd.DataFrame(
            {
                "population": pd.Categorical(np.repeat(names, [parts[n][0].size for n in names]), categories=names),
                "node_id": np.concatenate([parts[n][1] for n in names]),
                "t_ms": np.concatenate([parts[n][0] for n in names]),
            }
        )
        return frame.sort_values("t_ms", kind="stable", ignore_index=True)

    def __len__(self) -> int:
        return int(self.t.size)

    def __repr__(self) -> str:
        counts = ", ".join(f"{name} {t.size:,}" for name, (t, _) in self.by_population().items())
        return f"Spikes({counts})"


class Traces(_View):
    """Recorded state variables: `t` (ms), `neurons` (global indices), `traces[var]` of shape (samples, neurons)."""

    def __init__(
        self, populations: list[PopulationRange], monitor: StateMonitor | None = None, folder: Path | None = None
    ) -> None:
        self._populations, self._monitor, self._folder = populations, monitor, folder

    def _read(self, only: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """{variable: (times_ms, global neuron ids, data[time, neuron])} from reports/*.h5 (`only` one)."""
        from wmnet.io.sonata import read_report

        out = {}
        offsets = {p.name: p.offset for p in self._populations}
        for var in model.VARIABLES if only is None else (only,):
            path = None if self._folder is None else self._folder / f"{var}.h5"
            if path is None or not path.exists():
                continue
            pops = read_report(path)
            if not pops:
                continue
            n = min(t.size for t, _, _ in pops.values())
            t = next(iter(pops.values()))[0][:n]
            ids = np.concatenate([ids.astype(np.int64) + offsets[name] for name, (_, ids, _) in pops.items()])
            out[var] = (t, ids, np.concatenate([d[:n] for _, _, d in pops.values()], axis=1))
        return out

    @property
    def variables(self) -> list[str]:
        if self._kept():
            return list(self._monitor.variables)
        return list(self._read())

    @property
    def neurons(self) -> np.ndarray:
        """Global indices of the recorded neurons (the columns)."""
        if self._kept():
            return np.asarray(self._monitor.neurons)
        read = self._read()
        return next(iter(read.values()))[1] if read else np.zeros(0, dtype=np.int64)

    @property
    def t(self) -> np.ndarray:
        """Sample times (ms)."""
        if self._kept():
            return np.asarray(self._monitor.t)
        read = self._read()
        return next(iter(read.values()))[0] if read else np.zeros(0)

    def samples(self, var: str) -> tuple[np.ndarray, np.ndarray]:
        """(times_ms, samples of `var` as float64, shape (samples, recorded neurons)), from one read: consistent
        while a run appends to the files."""
        if self._kept():
            return np.asarray(self._monitor.t), np.asarray(self._monitor[var])
        read = self._read(var)
        if var not in read:
            raise KeyError(f"{var!r} was not recorded (recorded: {', '.join(self.variables) or 'none'})")
        return read[var][0], read[var][2].astype(np.float64)

    def __getitem__(self, var: str) -> np.ndarray:
        """Samples of `var` (float64), shape (samples, recorded neurons)."""
        return self.samples(var)[1]

    def to_pandas(self, var: str) -> pd.DataFrame:
        """One variable: one column per recorded neuron (global index), indexed by t_ms."""
        import pandas as pd

        t, data = self.samples(var)
        return pd.DataFrame(data, index=pd.Index(t, name="t_ms"), columns=pd.Index(self.neurons, name="neuron"))

    def __repr__(self) -> str:
        return f"Traces({', '.join(self.variables) or 'none'} of {self.neurons.size} neurons, {self.t.size} samples)"


class Rates(_View):
    """Group rates (Hz per bin, float32): `rates["E"]`, `rates.t` (bin starts, ms), `rates.names`."""

    def __init__(self, monitor: RateMonitor | None = None, path: Path | None = None, order: list[str] | None = None):
        self._monitor, self._path, self._order = monitor, path, order or []

    def _read(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from wmnet.io.series import read_series

        assert self._path is not None
        t, s = read_series(self._path)
        found = [k.split("/")[1] for k in s if k.startswith("rates/") and k.endswith("/rate_hz")]
        # HDF5 lists groups alphabetically: the run's own order is node_sets.json's.
        names = [n for n in self._order if n in found] + [n for n in found if n not in self._order]
        return t, {n: s[f"rates/{n}/rate_hz"] for n in names}

    @property
    def names(self) -> list[str]:
        return list(self._monitor.groups) if self._kept() else list(self._read()[1])

    @property
    def t(self) -> np.ndarray:
        """Start time (ms) of each bin."""
        return np.asarray(self._monitor.t) if self._kept() else self._read()[0]

    @property
    def bin_ms(self) -> float:
        """Bin width (ms)."""
        if self._kept():
            return float(self._monitor.bin_steps * self._monitor.dt)
        from wmnet.io.series import read_series

        assert self._path is not None
        return float(read_series(self._path)[1]["time"][2])

    def sizes(self) -> dict[str, int]:
        """Neurons per group."""
        if self._kept():
            from wmnet.config import group_ids

            return {name: int(group_ids(g).size) for name, g in self._monitor.groups.items()}
        from wmnet.io.series import read_series

        assert self._path is not None
        s = read_series(self._path)[1]
        return {name: int(s[f"rates/{name}/node_ids"].size) for name in self._read()[1]}

    def __getitem__(self, name: str) -> np.ndarray:
        if self._kept():
            return np.asarray(self._monitor[name])
        rates = self._read()[1]
        if name not in rates:
            raise KeyError(f"no rates of group {name!r} (recorded: {', '.join(rates)})")
        return rates[name]

    def to_pandas(self) -> pd.DataFrame:
        """One column per group (Hz), indexed by the bin start t_ms."""
        import pandas as pd

        t, rates = (self.t, {n: self[n] for n in self.names}) if self._kept() else self._read()
        return pd.DataFrame(rates, index=pd.Index(t, name="t_ms"))

    def __repr__(self) -> str:
        return f"Rates({', '.join(self.names)}; {self.t.size} bins)"


class SynapseStats(_View):
    """E→E learning statistics by synapses.h5 path ("synapses/E->E/mean_L", "switches/up"), `t` (ms)."""

    def __init__(self, monitor: SynapseMonitor | None = None, path: Path | None = None):
        self._monitor, self._path = monitor, path

    def _read(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from wmnet.io.series import read_series

        assert self._path is not None
        t, s = read_series(self._path)
        return t, {k: v for k, v in s.items() if k.startswith("switches/") or k.count("/") == 2 and v.ndim == 1}

    def keys(self) -> list[str]:
        if self._kept():
            return list(self._monitor.series())
        return [k for k in self._read()[1] if not k.endswith(("/n_synapses", "/n_slow"))]

    @property
    def t(self) -> np.ndarray:
        """Sample times (ms)."""
        return np.asarray(self._monitor.t) if self._kept() else self._read()[0]

    def __getitem__(self, key: str) -> np.ndarray:
        return np.asarray(self._monitor[key]) if self._kept() else self._read()[1][key]

    def to_pandas(self) -> pd.DataFrame:
        """One column per series, indexed by the sample time t_ms."""
        import pandas as pd

        if self._kept():
            return pd.DataFrame({k: self[k] for k in self.keys()}, index=pd.Index(self.t, name="t_ms"))
        t, series = self._read()  # one read: consistent while a run appends
        keep = [k for k in series if not k.endswith(("/n_synapses", "/n_slow"))]
        return pd.DataFrame({k: series[k] for k in keep}, index=pd.Index(t, name="t_ms"))

    def __repr__(self) -> str:
        return f"SynapseStats({len(self.keys())} series, {self.t.size} samples)"
