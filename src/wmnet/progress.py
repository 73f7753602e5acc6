"""A run's progress: the bar (tqdm.auto: a widget in a notebook, text on a terminal) and the
wall time of its blocks, with the first block's compile time kept out of the speed."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm


@dataclass
class BlockTimer:
    """Wall time of a run's blocks. The first block also pays for kernel compilation (numba on
    the CPU, Triton and CUDA graph capture on the GPU): its excess over what its steps cost at the
    later blocks' speed is reported as compile time and kept out of the speed."""

    first_wall: float | None = None  # s
    first_steps: int = 0
    rest_wall: float = 0.0  # s, every later block
    rest_steps: int = 0
    ema: float | None = None  # wall s per simulated s over recent blocks (exponential moving average)
    weight: float = 0.3  # of the newest block in the average

    def add(self, wall: float, steps: int, dt: float) -> None:
        """One block of `steps` steps of `dt` ms that took `wall` s."""
        per = wall / (steps * dt / 1000) if steps else 0.0
        if self.first_wall is None or self.ema is None:
            self.first_wall, self.first_steps, self.ema = wall, steps, per
            return
        self.rest_wall += wall
        self.rest_steps += steps
        # The first block's compile time is not the engine's speed: start afresh after it.
        self.ema = per if self.rest_steps == steps else (1 - self.weight) * self.ema + self.weight * per

    def compile_seconds(self) -> float:
        """The first block's wall time beyond its steps at the later blocks' mean speed (0 when
        there is no later block to compare with)."""
        if self.first_wall is None or not self.rest_steps:
            return 0.0
        return max(0.0, self.first_wall - self.first_steps * self.rest_wall / self.rest_steps)

    def postfix(self, done: int, n_steps: int, dt: float) -> str:
        """The speed of recent blocks and the time left at that speed."""
        if self.ema is None:
            return ""
        left = self.ema * (n_steps - done) * dt / 1000
        return f"{self.ema:.3g} s per simulated s, {tqdm.format_interval(left)} left"


@dataclass
class Progress:
    """Simulated ms out of the total; the speed and the time left come from recent blocks
    (BlockTimer.postfix), not tqdm's average since the start, which includes compilation."""

    n_steps: int
    dt: float  # ms
    show: bool = True
    timer: BlockTimer = field(default_factory=BlockTimer)
    done: int = 0  # steps
    bar: Any = field(init=False)

    def __post_init__(self) -> None:
        self.bar = tqdm(
            total=round(self.n_steps * self.dt, 6),
            unit="ms",
            disable=not self.show,
            bar_format="{percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} ms simulated [{elapsed} elapsed{postfix}]",
            file=sys.stderr,
        )

    def add(self, steps: int, wall: float) -> None:
        """`steps` more steps done, in `wall` s."""
        self.done += steps
        self.timer.add(wall, steps, self.dt)
        self.bar.update(round(self.done * self.dt - self.bar.n, 6))
        self.bar.set_postfix_str(self.timer.postfix(self.done, self.n_steps, self.dt), refresh=False)

    def close(self) -> None:
        self.bar.close()
