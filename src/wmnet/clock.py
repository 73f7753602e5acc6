"""One clock for the run loop: where the next block ends, which receptor scales hold in it, and
whether a snapshot or a checkpoint is due at its end.

A block ends at the first of: the engine's block length, the next synapse sample, the next
snapshot, the end of the protocol's epoch (where receptor scales may change), and the end of the
run. Checkpoints do not cut blocks: one is due after the block that crosses a multiple of
`checkpoint_every` steps (so the engine keeps its full blocks, and a GPU replays one graph).

Steps k are counted from the start of the simulation (the stimulus's and the protocol's clock);
synapse samples and snapshots from `k_start`, the run folder's first step.
"""

from __future__ import annotations

from dataclasses import dataclass

from wmnet.protocol import Scales, Schedule


@dataclass(frozen=True)
class Clock:
    """Block boundaries of a run from step `k_start` (see the module docstring)."""

    block_steps: int  # longest block (steps): one engine call
    k_start: int  # the run folder's first step: synapse samples and snapshots count from it
    outside: Scales  # receptor scales outside the protocol's epochs
    schedule: Schedule | None = None
    sample_every: int = 0  # steps between synapse samples (0: none)
    snapshots: tuple[int, ...] = ()  # absolute steps of the snapshots, sorted
    checkpoint_every: int = 0  # steps between checkpoints (0: none)

    def block_end(self, k: int, end: int) -> int:
        """The step at which the block starting at step k ends (exclusive), at most `end`."""
        stop = min(k + self.block_steps, end)
        if self.sample_every:
            # Samples at k_start + j·every whatever the block grid (a resumed run's may be shifted).
            stop = min(stop, k + self.sample_every - (k - self.k_start) % self.sample_every)
        later = [s for s in self.snapshots if s > k]
        if later:
            stop = min(stop, later[0])
        epoch = self.schedule.at(k) if self.schedule is not None else None
        if epoch is not None:
            stop = min(stop, epoch.stop)
        return stop

    def scales(self, k: int) -> Scales:
        """The receptor scales in force at step k: its epoch's, or those outside the protocol."""
        epoch = self.schedule.at(k) if self.schedule is not None else None
        return epoch.scales if epoch is not None else self.outside

    def snapshot_due(self, k: int) -> bool:
        """Whether a snapshot is taken at step k (the end of a block)."""
        return k in self.snapshots

    def checkpoint_due(self, k0: int, k1: int) -> bool:
        """Whether the block k0..k1−1 crossed a multiple of checkpoint_every steps."""
        return bool(self.checkpoint_every) and k1 // self.checkpoint_every > k0 // self.checkpoint_every
