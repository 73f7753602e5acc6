"""Monitors: what a run records, buffered on the device and flushed in blocks.

`SpikeMonitor` and `StateMonitor` follow Brian2's names: `.i`/`.t`/`.count` for spikes,
`.t` and one array per variable for states. With a writer attached they stream each block
to disk and keep nothing, so memory does not grow with the duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from wmnet.dynamics import NeuronState
from wmnet.io.sonata import ReportWriter, SpikeWriter


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

    def record(self, k: int, onset: torch.Tensor) -> None:
        if self._row == 0:
            self._first_step = k
        self._buf[self._row] = onset
        self._row += 1
        if self._row == self.block_steps:
            self.flush()

    def record_block(self, k0: int, onsets: torch.Tensor) -> None:
        """Onsets (n, N) bool of steps k0..k0+n−1."""
        t = 0
        while t < onsets.shape[0]:
            if self._row == 0:
                self._first_step = k0 + t
            take = min(onsets.shape[0] - t, self.block_steps - self._row)
            self._buf[self._row:self._row + take] = onsets[t:t + take]
            self._row += take
            t += take
            if self._row == self.block_steps:
                self.flush()

    def flush(self) -> None:
        if self._row == 0:
            return
        block = self._buf[: self._row]
        self.count += block.sum(dim=0)
        steps, ids = block.nonzero(as_tuple=True)  # row-major: sorted by time, then id
        steps = (steps + self._first_step).cpu().numpy()
        ids = ids.cpu().numpy()
        t = steps * self.dt
        if self.writer is not None:
            self.writer.append(t, ids)
        if self.keep:
            self._i.append(ids)
            self._t.append(t)
        self._row = 0

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

    def record(self, k: int, state: NeuronState) -> None:
        if k % self.every or not self.variables or self._idx.numel() == 0:
            return
        self._buf.append(torch.stack([state[v][self._idx] for v in self.variables]))
        self._steps.append(k)
        if len(self._buf) >= self.block_samples:
            self.flush()

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

    @property
    def t(self) -> np.ndarray:
        """Sample times (ms)."""
        return np.asarray(self._kept_steps, dtype=np.float64) * self.dt

    def __getitem__(self, var: str) -> np.ndarray:
        """Samples of `var`, shape (samples, recorded neurons)."""
        parts = self._kept.get(var, [])
        return np.concatenate(parts) if parts else np.zeros((0, self.neurons.size))

    def __getattr__(self, var: str) -> np.ndarray:
        if var in ("v", "i_s", "i_f", "x", "a"):
            return self[var]
        raise AttributeError(var)
