"""Monitors: what a run records, buffered on the device and flushed in blocks.

`SpikeMonitor` and `StateMonitor` follow Brian2's names: `.i`/`.t`/`.count` for spikes,
`.t` and one array per variable for states. With a writer attached they stream each block
to disk and keep nothing, so memory does not grow with the duration. `RateMonitor` and
`SynapseMonitor` record learning dynamics: group rates and E→E synapse statistics.

All four are `Recorder`s: the run loop hands each block to `record`, and `flush`, `state` (for a
checkpoint: what the files hold and what they do not yet) and `load` (continue from a checkpoint)
are the same calls for every one of them (recorders.py drives them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from wmnet import model
from wmnet.block import Block
from wmnet.config import Group, group_ids
from wmnet.connectivity import Connectivity
from wmnet.engines.base import Engine
from wmnet.errors import WmnetError
from wmnet.io.series import SeriesWriter
from wmnet.io.sonata import ReportWriter, SpikeWriter


class Recorder(Protocol):
    """What the run loop needs of a monitor."""

    def record(self, block: Block) -> None:
        """Take what this monitor records from one block (blocks come in order, contiguous)."""
        ...

    def flush(self) -> None:
        """Write (and keep) what is buffered."""
        ...

    def state(self) -> dict[str, Any]:
        """For a checkpoint (flushes first): the files' positions and what they do not hold."""
        ...

    def load(self, state: dict[str, Any], k: int) -> None:
        """Continue from `state`, a checkpoint's at step k: cut the files back to it."""
        ...


@dataclass
class SpikeMonitor:
    """Pulse onsets (the first step of each pulse) of all neurons."""

    n: int
    dt: float
    device: torch.device
    block_steps: int
    writer: SpikeWriter | None = None
    keep: bool = True  # keep spikes in memory (for the Python API)
    count: torch.Tensor = field(init=False)  # onsets per neuron
    _buf: torch.Tensor = field(init=False)
    _row: int = 0
    _first_step: int = 0
    _i: list[np.ndarray] = field(default_factory=list)
    _t: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.count = torch.zeros(self.n, dtype=torch.int64, device=self.device)
        self._buf = torch.zeros(self.block_steps, self.n, dtype=torch.bool, device=self.device)

    def record(self, block: Block) -> None:
        self.record_block(block.k0, block.onsets)

    def record_block(self, k0: int, onsets: torch.Tensor) -> None:
        """Onsets (n, N) bool of steps k0..k0+n−1."""
        t = 0
        while t < onsets.shape[0]:
            if self._row == 0:
                self._first_step = k0 + t
            take = min(onsets.shape[0] - t, self.block_steps - self._row)
            self._buf[self._row : self._row + take] = onsets[t : t + take]
            self._row += take
            t += take
            if self._row == self.block_steps:
                self.flush()

    def flush(self) -> None:
        if self._row == 0:
            return
        block = self._buf[: self._row]
        self.count += block.sum(dim=0)
        rows, cols = block.nonzero(as_tuple=True)  # row-major: sorted by time, then id
        steps = (rows + self._first_step).cpu().numpy()
        ids = cols.cpu().numpy()
        t = steps * self.dt
        if self.writer is not None:
            self.writer.append(t, ids)
        if self.keep:
            self._i.append(ids)
            self._t.append(t)
        self._row = 0

    def state(self) -> dict[str, Any]:
        """The spike file's rows per population, and the onset counts so far."""
        self.flush()
        return {"positions": self.writer.positions() if self.writer is not None else {}, "count": self.count.cpu()}

    def load(self, state: dict[str, Any], k: int) -> None:
        if self.writer is not None:
            self.writer.truncate(state["positions"])
        self.count += state["count"].to(self.device)

    @property
    def i(self) -> np.ndarray:
        """Global neuron index of each spike (E first)."""
        return np.concatenate(self._i) if self._i else np.zeros(0, dtype=np.int64)

    @property
    def t(self) -> np.ndarray:
        """Spike times (ms): t_k of the first step of each pulse."""
        return np.concatenate(self._t) if self._t else np.zeros(0)


@dataclass
class StateMonitor:
    """Chosen state variables of chosen neurons, every `every` steps (sampled at t_k)."""

    variables: list[str]
    neurons: np.ndarray  # global indices
    every: int
    dt: float
    device: torch.device
    block_samples: int
    writers: dict[str, ReportWriter] = field(default_factory=dict)
    keep: bool = True
    _idx: torch.Tensor = field(init=False)
    _buf: list[torch.Tensor] = field(default_factory=list)
    _steps: list[int] = field(default_factory=list)
    _kept: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _kept_steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._idx = torch.as_tensor(self.neurons, dtype=torch.long, device=self.device)

    def record(self, block: Block) -> None:
        self.record_samples(block.sample_steps, block.samples)

    def record_samples(self, steps: list[int], samples: torch.Tensor | None) -> None:
        """Samples (s, variables, neurons) taken at `steps` (the engine picked them by `every`)."""
        if samples is None or not steps:
            return
        self._buf.extend(samples.unbind(0))
        self._steps.extend(steps)
        if len(self._buf) >= self.block_samples:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        block = torch.stack(self._buf).to(torch.float64).cpu().numpy()  # (samples, vars, neurons)
        for j, var in enumerate(self.variables):
            if var in self.writers:
                self.writers[var].append(block[:, j, :])
            if self.keep:
                self._kept.setdefault(var, []).append(block[:, j, :])
        if self.keep:
            self._kept_steps += self._steps
        self._buf, self._steps = [], []

    def state(self) -> dict[str, Any]:
        """The samples each report file holds."""
        self.flush()
        return {"positions": {v: w.positions() for v, w in self.writers.items()}}

    def load(self, state: dict[str, Any], k: int) -> None:
        for v, w in self.writers.items():
            w.truncate(state["positions"][v])

    @property
    def t(self) -> np.ndarray:
        """Sample times (ms)."""
        return np.asarray(self._kept_steps, dtype=np.float64) * self.dt

    def __getitem__(self, var: str) -> np.ndarray:
        """Samples of `var`, shape (samples, recorded neurons)."""
        parts = self._kept.get(var, [])
        return np.concatenate(parts) if parts else np.zeros((0, self.neurons.size))

    def __getattr__(self, var: str) -> np.ndarray:
        if var in model.VARIABLES:
            return self[var]
        raise AttributeError(var)


@dataclass
class RateMonitor:
    """Rates (Hz) of neuron groups: pulse onsets per bin of `bin_steps` steps / (size · bin seconds).

    Bin j covers steps k0 + j·bin_steps … k0 + (j+1)·bin_steps − 1. Counts accumulate on the
    device; only whole bins are written or kept, so a partial bin at the end of a run is dropped
    (a checkpoint carries it on: `state`).
    """

    groups: dict[str, Group]
    bin_steps: int
    dt: float
    k0: int  # first step of bin 0
    device: torch.device
    flush_steps: int  # write whole bins at least this often (steps)
    writer: SeriesWriter | None = None
    keep: bool = True
    bins_done: int = 0  # whole bins written (and kept)
    _first_kept: int = 0
    _k: int = field(init=False)  # next step to record
    _since_flush: int = 0
    _size: np.ndarray = field(init=False)
    _pending: torch.Tensor = field(init=False)  # (bins, groups) int64: bins bins_done, bins_done + 1, …
    _kept: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._k = self.k0
        n = max((g[1] if isinstance(g, tuple) else max(g) + 1) for g in self.groups.values())
        # Membership (neuron × group), so that one gather counts the onsets of every group.
        self._member = torch.zeros(n, len(self.groups), dtype=torch.int32, device=self.device)
        for j, g in enumerate(self.groups.values()):
            self._member[slice(*g) if isinstance(g, tuple) else torch.as_tensor(g, device=self.device), j] = 1
        self._size = np.array([group_ids(g).size for g in self.groups.values()], dtype=np.float64)
        self._pending = torch.zeros(1, len(self.groups), dtype=torch.int64, device=self.device)

    def record(self, block: Block) -> None:
        self.record_block(block.k0, block.onsets)

    def record_block(self, k0: int, onsets: torch.Tensor) -> None:
        """Onsets (n, N) bool of steps k0..k0+n−1 (continuing from the last block)."""
        m = onsets.shape[0]
        if k0 != self._k:  # a real check, not an assert: `python -O` would drop that
            raise WmnetError(f"rate monitor: block starts at step {k0}, expected {self._k} (blocks must be contiguous)")
        # From the few onsets, not the whole (steps × N) block: reductions along a dimension
        # of a bool block are slow on the CPU.
        steps, neurons = onsets.nonzero(as_tuple=True)
        per_step = torch.zeros(m, len(self.groups), dtype=torch.int64, device=self.device)
        per_step.index_add_(0, steps, self._member[neurons].to(torch.int64))
        rel = k0 - self.k0 - self.bins_done * self.bin_steps
        need = (rel + m - 1) // self.bin_steps + 1
        if need > self._pending.shape[0]:
            grow = torch.zeros(need - self._pending.shape[0], len(self.groups), dtype=torch.int64, device=self.device)
            self._pending = torch.cat([self._pending, grow])
        rows = torch.arange(rel, rel + m, device=self.device) // self.bin_steps
        self._pending.index_add_(0, rows, per_step)
        self._k += m
        self._since_flush += m
        if self._since_flush >= self.flush_steps:
            self.flush()

    def flush(self) -> None:
        """Write (and keep) every whole bin; the partial one stays on the device."""
        self._since_flush = 0
        whole = (self._k - self.k0) // self.bin_steps - self.bins_done
        if whole <= 0:
            return
        counts = self._pending[:whole].cpu().numpy()
        rest = self._pending[whole:]
        self._pending = rest.clone() if rest.shape[0] else torch.zeros_like(self._pending[:1])
        rates = (counts / (self._size * self.bin_steps * self.dt / 1000.0)).astype(np.float32)
        if self.writer is not None:
            self.writer.append({f"rates/{name}/rate_hz": rates[:, j] for j, name in enumerate(self.groups)})
        if self.keep:
            self._kept.append(rates)
        self.bins_done += whole

    def state(self) -> dict[str, Any]:
        """Position for a checkpoint: whole bins done and the partial bin's counts (flushes first)."""
        self.flush()
        return {"rows": self.bins_done, "partial": self._pending[0].cpu()}

    def load(self, state: dict[str, Any], k: int) -> None:
        """Continue from `state` at step k (the checkpoint's)."""
        if self.writer is not None:
            self.writer.truncate(int(state["rows"]))
        self.bins_done = self._first_kept = int(state["rows"])
        if (k - self.k0) // self.bin_steps != self.bins_done:
            raise WmnetError(
                f"checkpoint: {self.bins_done} whole rate bins do not match its step {k} "
                f"(bins of {self.bin_steps} steps from step {self.k0})"
            )
        self._pending = state["partial"].to(self.device).reshape(1, -1).clone()
        self._k = k

    def __getitem__(self, name: str) -> np.ndarray:
        """Rates (Hz, float32) of group `name`, one per kept bin."""
        j = list(self.groups).index(name)
        return np.concatenate(self._kept)[:, j] if self._kept else np.zeros(0, dtype=np.float32)

    @property
    def t(self) -> np.ndarray:
        """Start time (ms) of each kept bin."""
        n = sum(r.shape[0] for r in self._kept)
        return (self.k0 + (self._first_kept + np.arange(n)) * self.bin_steps) * self.dt


SYNAPSE_STATS = ("potentiated_fraction", "mean_L", "mean_J_slow", "mean_J_fast")


@dataclass
class SynapseMonitor:
    """E→E synapse statistics per [pre, post] group, sampled at t_k for k = k0 + j·every_steps.

    Per group: fraction potentiated, mean L (summed in L's dtype: about 1e-6 relative error in
    float32), mean efficacy (J_p or J_d) of its slow and of its fast synapses. Switch counts (up,
    down) since the previous sample are whole-network counts (the engines count switches, they
    do not locate them unless asked to keep every event).
    """

    pairs: list[tuple[str, str]]
    groups: dict[str, Group]
    conn: Connectivity
    J_p: float
    J_d: float
    every_steps: int
    dt: float
    k0: int
    flush_samples: int  # write buffered samples at least every this many
    writer: SeriesWriter | None = None
    keep: bool = True
    samples: int = 0  # samples taken so far (written or buffered)
    last_switches: tuple[int, int] = (0, 0)  # engine counts (up, down) at the previous sample
    engine: Engine | None = None  # sampled by `record` and `start`
    _masks: list[tuple[torch.Tensor | None, torch.Tensor]] = field(init=False)
    _n: np.ndarray = field(init=False)  # (groups, 2): synapses, slow synapses
    _buf: list[dict[str, float | int]] = field(default_factory=list)
    _kept: list[dict[str, float | int]] = field(default_factory=list)
    _first_kept: int = 0

    def __post_init__(self) -> None:
        # Masks over the canonical E→E order, built once: (group or None = all, group ∧ slow).
        ee = self.conn.projections["E->E"]
        slow = ee.is_slow()
        post = pre = None
        self._masks, counts = [], []
        for a, b in self.pairs:
            if self.groups[a] == self.groups[b] == (0, self.conn.n_E):
                m = None
            else:
                if post is None:
                    post, pre = self.conn.ee_indices()
                inside = [torch.zeros(self.conn.n_E, dtype=torch.bool, device=slow.device) for _ in "ab"]
                for flag, name in zip(inside, (a, b)):
                    ids = group_ids(self.groups[name])
                    flag[torch.as_tensor(ids[ids < self.conn.n_E], device=slow.device)] = True  # its E neurons
                m = inside[0][pre] & inside[1][post]
            ms = slow if m is None else m & slow
            self._masks.append((m, ms))
            counts.append((ee.n_synapses if m is None else int(m.sum()), int(ms.sum())))
        self._n = np.array(counts, dtype=np.float64).reshape(-1, 2)

    def names(self) -> list[str]:
        return [f"{a}->{b}" for a, b in self.pairs]

    def record(self, block: Block) -> None:
        """The sample at the block's end, if one is due there (the clock ends blocks at samples)."""
        if self.due(block.k1):
            assert self.engine is not None, "a synapse monitor records from its engine"
            self.sample(self.engine)

    def start(self) -> None:
        """The sample at the grid's first step, before the first block (t = 0 of a fresh run)."""
        if self.engine is not None and self.due(self.engine.k):
            self.sample(self.engine)

    def due(self, k: int) -> bool:
        """Whether step k is the next sampling step."""
        return k == self.k0 + self.samples * self.every_steps

    def sample(self, engine: Engine) -> None:
        """Take the sample at t_k, k = engine.k (synapses() brings the lazy L up to date)."""
        syn = engine.synapses()
        pot, L = syn.potentiated, syn.L
        sums = []
        # count_nonzero and sums in L's dtype: on the CPU, torch's integer and float32→float64
        # sums are about 30 times slower (60 ms for the default network's 12.8 million synapses).
        for m, ms in self._masks:
            sums += [
                torch.count_nonzero(pot if m is None else pot & m),
                torch.count_nonzero(pot & ms),
                L.sum() if m is None else torch.where(m, L, 0).sum(),
            ]
        s = torch.stack([x.to(torch.float64) for x in sums]).cpu().numpy().reshape(-1, 3)
        n, n_slow = self._n[:, 0], self._n[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):  # an empty channel gives NaN
            stats = (
                s[:, 0] / n,
                s[:, 2] / n,
                self.J_d + (self.J_p - self.J_d) * s[:, 1] / n_slow,
                self.J_d + (self.J_p - self.J_d) * (s[:, 0] - s[:, 1]) / (n - n_slow),
            )
        up, down = engine.switches.n_up, engine.switches.n_down
        row: dict[str, float | int] = {
            "switches/up": up - self.last_switches[0],
            "switches/down": down - self.last_switches[1],
        }
        for j, name in enumerate(self.names()):
            row.update({f"synapses/{name}/{stat}": float(v[j]) for stat, v in zip(SYNAPSE_STATS, stats)})
        self.last_switches = (up, down)
        self.samples += 1
        self._buf.append(row)
        if len(self._buf) >= self.flush_samples:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        if self.writer is not None:
            self.writer.append({key: np.array([r[key] for r in self._buf]) for key in self._buf[0]})
        if self.keep:
            self._kept += self._buf
        self._buf = []

    def state(self) -> dict[str, Any]:
        """Position for a checkpoint (flushes first)."""
        self.flush()
        return {"rows": self.samples, "last_switches": list(self.last_switches)}

    def load(self, state: dict[str, Any], k: int) -> None:
        """Continue from `state` at step k (the checkpoint's)."""
        if self.writer is not None:
            self.writer.truncate(int(state["rows"]))
        self.samples = self._first_kept = int(state["rows"])
        if not self.k0 + (self.samples - 1) * self.every_steps <= k < self.k0 + self.samples * self.every_steps:
            raise WmnetError(
                f"checkpoint: {self.samples} synapse samples do not match its step {k} "
                f"(one every {self.every_steps} steps from step {self.k0})"
            )
        self.last_switches = (int(state["last_switches"][0]), int(state["last_switches"][1]))

    def series(self) -> dict[str, tuple[type, str]]:
        """The datasets of synapses.h5: {path: (dtype, units)}."""
        out: dict[str, tuple[type, str]] = {"switches/up": (np.int64, "1"), "switches/down": (np.int64, "1")}
        units = {"potentiated_fraction": "1", "mean_L": "1", "mean_J_slow": "mV/ms", "mean_J_fast": "mV/ms"}
        for name in self.names():
            out.update({f"synapses/{name}/{stat}": (np.float64, units[stat]) for stat in SYNAPSE_STATS})
        return out

    def constants(self) -> dict[str, np.ndarray]:
        """Synapses per group in all and in the slow channel."""
        return {
            f"synapses/{name}/{what}": np.array(int(self._n[j, c]), dtype=np.int64)
            for j, name in enumerate(self.names())
            for c, what in enumerate(("n_synapses", "n_slow"))
        }

    def __getitem__(self, key: str) -> np.ndarray:
        """A kept series by its synapses.h5 path, e.g. "synapses/E->E/mean_L" or "switches/up"."""
        return np.array([r[key] for r in self._kept])

    @property
    def t(self) -> np.ndarray:
        """Sample times (ms)."""
        return (self.k0 + (self._first_kept + np.arange(len(self._kept))) * self.every_steps) * self.dt
