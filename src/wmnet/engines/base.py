"""What every engine provides: one base class, the contract every engine meets.

An engine owns the evolving state of one network. Public contract (tests/test_engines_contract.py):

- `step(i_ext)` runs t_k → t_{k+1}; `run_block(i_ext, trace)` runs many steps (the base class
  steps one at a time; the GPU engine replays a captured graph);
- `state` is the neuron state at t_k as a value (copies on the engine's device, never a live
  buffer), on every engine; `set_state(...)` replaces some or all of it;
- `synapses()` is the E→E state at t_k (a copy, lazily updated synapses brought up to date);
- `state_dict()` / `load_state_dict()` continue bitwise from t_k (checkpoints);
- `stored_L()` is the E→E L as stored, for finiteness checks.

Engines are looked up by kind and device in `wmnet.engines` (the registry).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from wmnet import model
from wmnet.config import Config
from wmnet.connectivity import SynapseState
from wmnet.dynamics import NeuronState
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.protocol import Scales, base_scales

NEURON_FIELDS = model.VARIABLES


def channel_efficacies(cfg: Config, scales: Scales) -> dict[str, tuple[Any, Any]]:
    """Per projection, its (slow, fast) efficacies (mV/ms) with the receptor scales applied
    (model.efficacies: Python floats; each engine rounds them once to its dtype)."""
    return model.efficacies(cfg, scales)


@dataclass
class SwitchLog:
    """Efficacy switch events (step k of the transition t_k → t_{k+1}, global pre, post, +1/−1).

    Counting is always on; the per-event list only when `keep_events` (tests, small runs).
    """

    keep_events: bool = False
    n_up: int = 0
    n_down: int = 0
    events: list[np.ndarray] = field(default_factory=list)  # each (m, 4) int64

    def add(self, events: np.ndarray, n_up: int | None = None, n_down: int | None = None) -> None:
        """Add events (m, 4); the counts default to those of `events` (give them if truncated)."""
        self.n_up += int((events[:, 3] > 0).sum()) if n_up is None else n_up
        self.n_down += int((events[:, 3] < 0).sum()) if n_down is None else n_down
        if self.keep_events and events.size:
            self.events.append(events)

    def table(self) -> np.ndarray:
        """All kept events, sorted by (step, pre, post)."""
        if not self.events:
            return np.zeros((0, 4), dtype=np.int64)
        ev = np.concatenate(self.events)
        return ev[np.lexsort((ev[:, 2], ev[:, 1], ev[:, 0]))]


@dataclass(frozen=True)
class TraceRequest:
    """State variables of some neurons to sample at t_k for every k divisible by `every`."""

    variables: tuple[str, ...]
    neurons: torch.Tensor  # int64 global indices, on the engine's device
    every: int

    def rows(self, k0: int, n_steps: int) -> tuple[int, ...]:
        """Offsets t in 0..n_steps−1 of the sampled steps k0 + t."""
        return tuple(range((-k0) % self.every, n_steps, self.every))


def run_block_stepwise(
    engine: Engine, i_ext: torch.Tensor, trace: TraceRequest | None = None
) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
    """`run_block` for engines that only step: the same outputs, one `step` at a time."""
    n_steps, n = i_ext.shape
    dev = i_ext.device
    flags = torch.empty(n_steps, n, dtype=torch.uint8, device=dev)
    rows = trace.rows(engine.k, n_steps) if trace is not None else ()
    samples = None
    if trace is not None and rows:
        samples = torch.empty(len(rows), len(trace.variables), trace.neurons.numel(), dtype=i_ext.dtype, device=dev)
    steps = [engine.k + r for r in rows]
    r = 0
    for t in range(n_steps):
        state = engine.neurons
        if r < len(rows) and rows[r] == t:
            assert trace is not None and samples is not None
            samples[r] = torch.stack([state[v][trace.neurons] for v in trace.variables])
            r += 1
        resting = state.a == 0  # before the step: engines may update state in place
        sigma = engine.step(i_ext[t])
        flags[t] = sigma.to(torch.uint8) | ((sigma & resting).to(torch.uint8) << 1)
    return flags, steps, samples


def state_of(engine: Engine, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """An engine's state_dict: its kind, step k, switch counts and CPU copies of `tensors`."""
    return {
        "kind": type(engine).__name__,
        "k": engine.k,
        "n_up": engine.switches.n_up,
        "n_down": engine.switches.n_down,
        "tensors": {name: t.detach().to("cpu", copy=True) for name, t in tensors.items()},
    }


def load_state(engine: Engine, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Copy a `state_of` dict into the engine's live `tensors`, in place, and set k and the counts.

    In place, because a captured CUDA graph holds the buffers' addresses. Shapes and dtypes
    must match exactly: a checkpoint of another network, engine or dtype is an error.
    """
    kind = type(engine).__name__
    if state["kind"] != kind:
        raise WmnetError(f"checkpoint: written by the {state['kind']}, cannot load into the {kind}")
    saved = state["tensors"]
    if set(saved) != set(tensors):
        raise WmnetError(f"checkpoint: holds {sorted(saved)}, the {kind} needs {sorted(tensors)}")
    for name, t in tensors.items():
        s = saved[name]
        if s.shape != t.shape or s.dtype != t.dtype:
            raise WmnetError(
                f"checkpoint: {name} is {tuple(s.shape)} {s.dtype}, the engine's is {tuple(t.shape)} {t.dtype}"
            )
    for name, t in tensors.items():
        t.copy_(saved[name])
    engine.k = int(state["k"])
    engine.switches.n_up, engine.switches.n_down = int(state["n_up"]), int(state["n_down"])


def neuron_tensors(neurons: NeuronState) -> dict[str, torch.Tensor]:
    return {name: neurons[name] for name in model.VARIABLES}


class Engine(ABC):
    """The base of every engine: the shared contract and the stepwise fallback.

    Subclasses set `name` (the kind) and `devices` (device types they run on, for the registry),
    implement `step`, `set_scales`, `synapses`, `stored_L`, `_buffers` and the `neurons`
    attribute (the live state at t_k, which engines may update in place: read `state`)."""

    name: ClassVar[str]
    devices: ClassVar[tuple[str, ...]]
    neurons: NeuronState  # live state at t_k, k = self.k (engine-internal; `state` is the copy)

    def __init__(self, net: Network, keep_switch_events: bool = False) -> None:
        self.net, self.cfg, self.k = net, net.config, 0  # k: index of the next step to run
        self.switches = SwitchLog(keep_switch_events)
        self.scales: Scales = base_scales(net.config)  # receptor scales in force

    # --- stepping ------------------------------------------------------------------------

    @abstractmethod
    def set_scales(self, scales: Scales) -> None:
        """Use these receptor scales ((slow, fast) multiplier per projection) from the next step on."""

    @abstractmethod
    def step(self, i_ext: torch.Tensor) -> torch.Tensor:
        """Run step k → k+1 with external current i_ext (mV/ms); return σ at t_k (bool, one per neuron)."""

    def run_block(
        self, i_ext: torch.Tensor, trace: TraceRequest | None = None
    ) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        """Steps k..k+n−1 with i_ext (n, N). Returns flags (n, N) uint8 (bit 0 σ, bit 1 pulse
        onset), the steps sampled for `trace` and the samples (s, variables, neurons)."""
        return run_block_stepwise(self, i_ext, trace)

    # --- state ---------------------------------------------------------------------------

    @property
    def state(self) -> NeuronState:
        """Neuron state at t_k, as a copy on the engine's device (never a live buffer)."""
        return self.neurons.clone()

    def set_state(self, neurons: NeuronState | Mapping[str, Any] | None = None, **variables: Any) -> None:
        """Replace the neuron state at t_k: a whole `NeuronState`, or some variables by name
        (tensors of N values or scalars, broadcast), e.g. `set_state(v=torch.rand(n) * 20)`.

        Values are copied and converted to the engine's device and dtype; variables not given
        keep their values. The next step starts from the new state."""
        given = dict(variables)
        if isinstance(neurons, NeuronState):
            given = {**neuron_tensors(neurons), **given}
        elif neurons is not None:
            given = {**dict(neurons), **given}
        unknown = set(given) - set(model.VARIABLES)
        if unknown:
            raise WmnetError(f"set_state: unknown variables {sorted(unknown)} (known: {', '.join(model.VARIABLES)})")
        current = self.neurons
        n, dev, dtype = self.net.n, self.net.device, self.net.dtype
        new = {}
        for name in model.VARIABLES:
            if name not in given:
                new[name] = current[name].clone()
                continue
            value = torch.as_tensor(given[name]).to(device=dev, dtype=dtype)
            if value.numel() not in (1, n) or value.dim() > 1:
                raise WmnetError(f"set_state: {name} has shape {tuple(value.shape)}, expected ({n},) or a scalar")
            new[name] = value.expand(n).clone().contiguous()
        self._write_neurons(NeuronState(**new))

    def _write_neurons(self, neurons: NeuronState) -> None:
        """Make `neurons` (fresh tensors, the engine's device and dtype) the state at t_k."""
        self.neurons = neurons

    @abstractmethod
    def synapses(self) -> SynapseState:
        """E→E state at t_k in canonical order, a copy (lazy engines bring every synapse up to date)."""

    @abstractmethod
    def stored_L(self) -> torch.Tensor:
        """The E→E L values as stored (no copy, no catch-up: lazily updated synapses hold their
        value at their last update). For checks such as finiteness; do not modify."""

    # --- checkpoints ---------------------------------------------------------------------

    @abstractmethod
    def _buffers(self) -> dict[str, torch.Tensor]:
        """Every live tensor a step reads from the previous one (the state_dict's tensors)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bitwise from t_k (CPU copies; see `state_of`)."""
        return state_of(self, self._buffers())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict` of an engine of the same kind on the same network."""
        self.neurons = self.neurons.clone()  # fresh tensors: the current ones may be aliased
        load_state(self, state, self._buffers())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.net.device}, N={self.net.n}, k={self.k}>"
