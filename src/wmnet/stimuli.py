"""External input I_ext(t_k) (mV/ms) for every neuron, one step at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from wmnet.config import Config, Constant, Sinusoid
from wmnet.errors import WmnetError
from wmnet.rng import generator


class Stimulus(Protocol):
    def __call__(self, k: int) -> torch.Tensor:
        """External current of every neuron during step k (t_k = k·dt)."""
        ...

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        """Currents of steps k0..k0+n_steps−1, shape (n_steps, N); row t equals self(k0 + t)."""
        ...


class SinusoidStimulus:
    """I_n(t) = A_n sin(t/F_n + φ_n) + A_n with A ~ U(0, A_max), φ ~ U(0, φ_max), F ~ U(F_min, F_max).

    The draws come from the run's seed on the CPU, so every device sees the same stimulus.
    """

    def __init__(self, spec: Sinusoid, n: int, seed: int, dt: float, device: torch.device, dtype: torch.dtype):
        g = generator(seed, "stimulus")
        amp = spec.amplitude_max * torch.rand(n, generator=g, dtype=torch.float64)
        phase = spec.phase_max * torch.rand(n, generator=g, dtype=torch.float64)
        period = (spec.F_max - spec.F_min) * torch.rand(n, generator=g, dtype=torch.float64) + spec.F_min
        self.amplitude = amp.to(device, dtype)
        self.phase = phase.to(device, dtype)
        self.period = period.to(device, dtype)
        self.dt = dt

    def __call__(self, k: int) -> torch.Tensor:
        t = k * self.dt
        return self.amplitude * torch.sin(t / self.period + self.phase) + self.amplitude

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        if self.amplitude.device.type == "cpu":
            # CPU sin takes vectorised and scalar paths depending on an element's position, which
            # can differ in the last bit: build rows exactly as single steps are built.
            return torch.stack([self(k) for k in range(k0, k0 + n_steps)])
        # GPU: every element runs the same scalar code, so one launch gives the same values.
        # t_k computed in float64 as k·dt, then rounded to the dtype: as the scalar path does.
        ks = torch.arange(k0, k0 + n_steps, dtype=torch.float64, device=self.amplitude.device)
        t = (ks * self.dt).to(self.amplitude.dtype)[:, None]
        # `scalar / tensor` in torch is reciprocal(tensor) · scalar: the same product here.
        return self.amplitude * torch.sin(torch.reciprocal(self.period) * t + self.phase) + self.amplitude


class ConstantStimulus:
    """A constant current per population."""

    def __init__(self, spec: Constant, n_e: int, n_i: int, device: torch.device, dtype: torch.dtype):
        self.current = torch.cat([torch.full((n_e,), spec.E, dtype=torch.float64),
                                  torch.full((n_i,), spec.I, dtype=torch.float64)]).to(device, dtype)

    def __call__(self, k: int) -> torch.Tensor:
        return self.current

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        return self.current.expand(n_steps, -1)


class ArrayStimulus:
    """A user array of shape (N, steps): element [n, k] is the current into neuron n in step k.

    The file is memory-mapped and copied to the device in blocks of steps.
    """

    BLOCK = 1000

    def __init__(self, path: str | Path, n: int, n_steps: int, device: torch.device, dtype: torch.dtype):
        path = Path(path)
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise WmnetError(f"{path}: cannot read input array ({e})") from None
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < n_steps:
            raise WmnetError(
                f"{path}: input has shape {arr.shape}, expected ({n}, {n_steps}) = (neurons, steps); extra steps are ignored"
            )
        if not np.issubdtype(arr.dtype, np.number):
            raise WmnetError(f"{path}: input must be numeric, got dtype {arr.dtype}")
        for start in range(0, n_steps, 4096):  # check without loading it whole
            bad = ~np.isfinite(arr[:, start:start + 4096])
            if bad.any():
                # Name the first bad element, not just the block it is in, so the user can find it.
                row, col = (int(i) for i in np.argwhere(bad)[0])
                raise WmnetError(f"{path}: input holds NaN or infinite values (first at neuron {row}, "
                                 f"step {start + col}); expected finite currents in mV/ms")
        self.array, self.device, self.dtype = arr, device, dtype
        self._start, self._block = -1, torch.empty(0)

    def __call__(self, k: int) -> torch.Tensor:
        if not (0 <= k - self._start < self._block.shape[0]):
            self._start = k
            blk = np.ascontiguousarray(self.array[:, k:k + self.BLOCK].T)  # (steps, N)
            self._block = torch.from_numpy(blk).to(self.device, self.dtype)
        return self._block[k - self._start]

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        return torch.stack([self(k) for k in range(k0, k0 + n_steps)])


def make_stimulus(
    cfg: Config, device: torch.device, dtype: torch.dtype, input_path: str | Path | None = None
) -> Stimulus:
    if input_path is not None:
        return ArrayStimulus(input_path, cfg.n_neurons, cfg.n_steps, device, dtype)
    spec = cfg.stimulus
    if isinstance(spec, Sinusoid):
        return SinusoidStimulus(spec, cfg.n_neurons, cfg.seed, cfg.dt, device, dtype)
    return ConstantStimulus(spec, cfg.populations.E.size, cfg.populations.I.size, device, dtype)
