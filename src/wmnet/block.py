"""One block of simulated steps: what the engine produced, as the recorders and `Simulation.iterate` see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch


@dataclass
class Block:
    """Steps k0..k1−1 of one run: per step and neuron, σ and the pulse onsets, and the trace samples.

    `flags` (steps, N) uint8: bit 0 is σ at t_k, bit 1 a pulse onset (σ at t_k with the neuron at
    rest before the step). `samples` (s, variables, neurons) in the run's dtype, taken at t_k for
    each k in `sample_steps` (the trace request's grid); None when nothing is traced.
    """

    k0: int
    flags: torch.Tensor
    dt: float  # ms
    sample_steps: list[int] = field(default_factory=list)
    samples: torch.Tensor | None = None
    variables: tuple[str, ...] = ()  # the traced variables, in the samples' order

    @property
    def steps(self) -> int:
        return int(self.flags.shape[0])

    @property
    def k1(self) -> int:
        """The step after the block: the engine's step when the block ends."""
        return self.k0 + self.steps

    @property
    def t(self) -> float:
        """Simulated time (ms) at the block's end, t_k1."""
        return self.k1 * self.dt

    @property
    def t0(self) -> float:
        """Simulated time (ms) at the block's first step, t_k0."""
        return self.k0 * self.dt

    @cached_property
    def onsets(self) -> torch.Tensor:
        """(steps, N) bool: pulse onsets, the spikes of this model."""
        return (self.flags >> 1).bool()

    @cached_property
    def sigma(self) -> torch.Tensor:
        """(steps, N) uint8: σ, 1 while a neuron emits its pulse."""
        return self.flags & 1

    def spikes(self) -> tuple[np.ndarray, np.ndarray]:
        """(neuron ids, times in ms) of the block's onsets, sorted by time then id."""
        steps, ids = self.onsets.nonzero(as_tuple=True)
        return ids.cpu().numpy(), (steps + self.k0).cpu().numpy() * self.dt

    def trace(self, var: str) -> np.ndarray:
        """Samples of `var`, (samples, traced neurons), as float64."""
        if self.samples is None:
            return np.zeros((0, 0))
        return self.samples[:, self.variables.index(var), :].to(torch.float64).cpu().numpy()

    @property
    def sample_t(self) -> np.ndarray:
        """Times (ms) of the trace samples."""
        return np.asarray(self.sample_steps, dtype=np.float64) * self.dt

    def __repr__(self) -> str:
        n_spikes = int(self.onsets.sum())
        return (
            f"Block(t {self.t0:g}–{self.t:g} ms, {self.steps} steps, {n_spikes} onsets, "
            f"{len(self.sample_steps)} trace samples)"
        )

    @staticmethod
    def join(blocks: list[Block]) -> Block:
        """Consecutive blocks as one."""
        if len(blocks) == 1:
            return blocks[0]
        samples = [b.samples for b in blocks if b.samples is not None]
        return Block(
            blocks[0].k0,
            torch.cat([b.flags for b in blocks]),
            blocks[0].dt,
            [k for b in blocks for k in b.sample_steps],
            torch.cat(samples) if samples else None,
            blocks[0].variables,
        )
