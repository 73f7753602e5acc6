"""External input I_ext(t_k) (mV/ms) for every neuron, one step at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from wmnet.config import (
    ArrayInput,
    Background,
    BackgroundInput,
    Config,
    Constant,
    Group,
    Selective,
    Sinusoid,
    Sum,
    group_ids,
    steps_in,
)
from wmnet.errors import WmnetError
from wmnet.protocol import EpochRun, Schedule
from wmnet.rng import generator, stream_seed


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
        self.current = torch.cat(
            [torch.full((n_e,), spec.E, dtype=torch.float64), torch.full((n_i,), spec.I, dtype=torch.float64)]
        ).to(device, dtype)

    def __call__(self, k: int) -> torch.Tensor:
        return self.current

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        return self.current.expand(n_steps, -1)


class ArrayStimulus:
    """A user array of shape (N, steps): element [n, k] is the current into neuron n in step k.

    The file is memory-mapped and copied to the device in blocks of steps.
    """

    BLOCK = 1000

    def __init__(
        self, path: str | Path, n: int, n_steps: int, device: torch.device, dtype: torch.dtype, offset: int = 0
    ):
        """Column c drives step offset + c (`offset`: the first step of the epoch it is for)."""
        path = Path(path)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except EOFError:
            raise WmnetError(f"{path}: cannot read input array (the file is empty)") from None
        except (OSError, ValueError) as e:
            raise WmnetError(f"{path}: cannot read input array ({getattr(e, 'strerror', None) or e})") from None
        if not isinstance(arr, np.ndarray):  # an .npz archive: np.load ignores mmap_mode and opens it
            arr.close()
            raise WmnetError(f"{path}: an .npz archive; expected a single .npy array of shape (neurons, steps)")
        # Real numbers only: complex would lose its imaginary part, timedelta64 and datetime64 are
        # not currents (numpy counts timedelta64 as an integer type).
        if arr.dtype.kind not in "biuf":
            raise WmnetError(f"{path}: input must hold real numbers (bool, integer or float), got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < n_steps:
            raise WmnetError(
                f"{path}: input has shape {arr.shape}, expected ({n}, {n_steps}) = (neurons, steps); "
                "extra steps are ignored"
            )
        for start in range(0, n_steps, 4096):  # check without loading it whole
            bad = ~np.isfinite(arr[:, start : start + 4096])
            if bad.any():
                # Name the first bad element, not just the block it is in, so the user can find it.
                row, col = (int(i) for i in np.argwhere(bad)[0])
                raise WmnetError(
                    f"{path}: input holds NaN or infinite values (first at neuron {row}, "
                    f"step {start + col}); expected finite currents in mV/ms"
                )
        self.array, self.device, self.dtype, self.offset = arr, device, dtype, offset
        self._start, self._block = -1, torch.empty(0)

    def __call__(self, k: int) -> torch.Tensor:
        k -= self.offset
        if not (0 <= k - self._start < self._block.shape[0]):
            self._start = k
            # (steps, N) in native byte order: torch refuses a big-endian array
            blk = np.ascontiguousarray(self.array[:, k : k + self.BLOCK].T, dtype=self.array.dtype.newbyteorder("="))
            self._block = torch.from_numpy(blk).to(self.device, self.dtype)
        return self._block[k - self._start]

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        return torch.stack([self(k) for k in range(k0, k0 + n_steps)])


class BackgroundStimulus:
    """Per neuron n: c_n·mean_pop(n) + std_pop(n)·z_n(g), with z redrawn every grain g.

    z for grain g (= ⌊k / grain steps⌋) comes from its own stream of the run's seed, so any
    block, a resumed run and every device see the same numbers; it is computed in float64 and
    rounded once to the working dtype. `contrast` (c, default 1) makes it a selective stimulus.
    """

    def __init__(
        self,
        spec: BackgroundInput,
        n_e: int,
        n_i: int,
        seed: int,
        dt: float,
        device: torch.device,
        dtype: torch.dtype,
        contrast: np.ndarray | None = None,
    ):
        mean = np.concatenate([np.full(n_e, spec.E.mean), np.full(n_i, spec.I.mean)])
        self.mean = mean * contrast if contrast is not None else mean
        self.std = np.concatenate([np.full(n_e, spec.E.std), np.full(n_i, spec.I.std)])
        self.noisy = bool(spec.E.std or spec.I.std)
        self.grain = steps_in(spec.grain, dt, "background.grain")
        self.seed, self.device, self.dtype = seed, device, dtype
        self._cache: dict[int, np.ndarray] = {}  # grain → its row (a block spans a few grains)

    def _row(self, g: int) -> np.ndarray:
        row = self._cache.get(g)
        if row is None:
            if len(self._cache) > 64:
                self._cache.clear()
            z = np.random.default_rng([stream_seed(self.seed, "background"), g]).standard_normal(self.mean.size)
            row = self._cache[g] = self.mean + self.std * z
        return row

    def __call__(self, k: int) -> torch.Tensor:
        return self.block(k, 1)[0]

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        if not self.noisy:
            return torch.from_numpy(self.mean).to(self.device, self.dtype).expand(n_steps, -1)
        g = np.arange(k0, k0 + n_steps) // self.grain
        rows = np.stack([self._row(int(i)) for i in range(g[0], g[-1] + 1)])
        return torch.from_numpy(rows[g - g[0]]).to(self.device, self.dtype)


def selective_contrast(spec: Selective, ids: np.ndarray, n_e: int, n: int, seed: int, presentation: int) -> np.ndarray:
    """Contrast per neuron: contrast_E / contrast_I on the (possibly noisy) group, 1 elsewhere.

    With noise q, each neuron's membership flips with probability q (members drop out, others
    join), drawn anew for each presentation from the run's seed.
    """
    member = np.zeros(n, dtype=bool)
    member[ids] = True
    if spec.noise > 0:
        rng = np.random.default_rng([stream_seed(seed, "presentation"), presentation])
        member ^= rng.random(n) < spec.noise
    c = np.ones(n)
    c[:n_e][member[:n_e]] = spec.contrast_E
    c[n_e:][member[n_e:]] = spec.contrast_I
    return c


class SumStimulus:
    """The sum of several stimuli, step by step."""

    def __init__(self, terms: list[Stimulus]):
        self.terms = terms

    def __call__(self, k: int) -> torch.Tensor:
        return self.block(k, 1)[0]

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        out = self.terms[0].block(k0, n_steps).clone()
        for t in self.terms[1:]:
            out += t.block(k0, n_steps)
        return out


def build_stimulus(
    spec: object,
    cfg: Config,
    device: torch.device,
    dtype: torch.dtype,
    start: int = 0,
    presentation: int = 0,
    length: int | None = None,
    groups: dict[str, Group] | None = None,
) -> Stimulus:
    """The stimulus for a config spec; `start` is the first step of its epoch (array columns
    count from it), `length` its steps (default: to the run's end) and `presentation` the
    epoch's index (noisy prototypes draw from it); `groups`: cfg.resolve_groups(), if already drawn."""
    length = cfg.n_steps - start if length is None else length
    n_e, n_i, n = cfg.populations.E.size, cfg.populations.I.size, cfg.n_neurons
    if isinstance(spec, Sinusoid):
        return SinusoidStimulus(spec, n, cfg.seed, cfg.dt, device, dtype)
    if isinstance(spec, Constant):
        return ConstantStimulus(spec, n_e, n_i, device, dtype)
    if isinstance(spec, Background):
        return BackgroundStimulus(cfg.background, n_e, n_i, cfg.seed, cfg.dt, device, dtype)
    if isinstance(spec, Selective):
        ids = group_ids((cfg.resolve_groups() if groups is None else groups)[spec.group])
        c = selective_contrast(spec, ids, n_e, n, cfg.seed, presentation)
        return BackgroundStimulus(cfg.background, n_e, n_i, cfg.seed, cfg.dt, device, dtype, c)
    if isinstance(spec, ArrayInput):
        return ArrayStimulus(spec.path, n, length, device, dtype, offset=start)
    if isinstance(spec, Sum):
        return SumStimulus(
            [build_stimulus(t, cfg, device, dtype, start, presentation, length, groups) for t in spec.terms]
        )
    raise TypeError(f"unknown stimulus spec {spec!r}")


def _has_array(spec: object) -> bool:
    return isinstance(spec, ArrayInput) or (isinstance(spec, Sum) and any(_has_array(t) for t in spec.terms))


class ProtocolStimulus:
    """The input of a protocol run: each epoch's stimulus over its steps; past the protocol's
    end (an extended run), the config's `stimulus`."""

    def __init__(self, cfg: Config, schedule: Schedule, device: torch.device, dtype: torch.dtype):
        self.cfg, self.schedule, self.device, self.dtype = cfg, schedule, device, dtype
        self.groups = cfg.resolve_groups()  # drawn once, not per epoch
        self.default = build_stimulus(cfg.stimulus, cfg, device, dtype)
        self._current: tuple[int, Stimulus] | None = None  # (epoch index, its stimulus)
        for ep in schedule.epochs:  # read every input file now: a bad one fails before the run
            if _has_array(ep.stimulus):
                self._build(ep)

    def _build(self, ep: EpochRun) -> Stimulus:
        # Sized to the epoch: an array input must cover it, not the whole run.
        return build_stimulus(
            ep.stimulus, self.cfg, self.device, self.dtype, ep.start, ep.index, ep.stop - ep.start, self.groups
        )

    def _for_epoch(self, k: int) -> tuple[Stimulus, int]:
        """The stimulus at step k and the first step after its stretch."""
        ep = self.schedule.at(k)
        if ep is None:
            return self.default, k + (1 << 62)
        if ep.stimulus is None:
            return self.default, ep.stop
        if self._current is None or self._current[0] != ep.index:
            self._current = (ep.index, self._build(ep))
        return self._current[1], ep.stop

    def __call__(self, k: int) -> torch.Tensor:
        return self.block(k, 1)[0]

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        parts, k, end = [], k0, k0 + n_steps
        while k < end:
            stim, stop = self._for_epoch(k)
            m = min(stop, end) - k
            parts.append(stim.block(k, m))
            k += m
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def make_stimulus(
    cfg: Config, device: torch.device, dtype: torch.dtype, input_path: str | Path | None = None
) -> Stimulus:
    """The run's input: `input_path` (an .npy array) if given, else the protocol, else `stimulus`."""
    if input_path is not None:
        if cfg.protocol is not None:
            # --input would replace every epoch's stimulus while events.tsv still lists the cues.
            raise WmnetError(
                f"--input {input_path}: cannot be combined with a protocol (it would replace every "
                "epoch's stimulus); use a stimulus {kind: array, path: ...} in the protocol's epochs, "
                "or a sum with it, instead"
            )
        return ArrayStimulus(input_path, cfg.n_neurons, cfg.n_steps, device, dtype)
    if cfg.protocol is not None:
        return ProtocolStimulus(cfg, Schedule.from_config(cfg), device, dtype)
    return build_stimulus(cfg.stimulus, cfg, device, dtype)
