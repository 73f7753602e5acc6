"""What every engine provides. An engine owns the evolving state of one network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from wmnet.config import Config
from wmnet.connectivity import SynapseState
from wmnet.dynamics import NeuronState
from wmnet.errors import WmnetError
from wmnet.protocol import Scales

NEURON_FIELDS = ("v", "i_s", "i_f", "x", "a")


def channel_efficacies(cfg: Config, scales: Scales) -> dict[str, tuple[Any, Any]]:
    """Per projection, its (slow, fast) efficacies (mV/ms) with the receptor scales applied, as
    Python floats (each engine rounds them once to its dtype); E->E gives (J_d, J_p) pairs."""
    pr = cfg.projections
    ee_slow, ee_fast = scales["E->E"]
    out: dict[str, tuple[Any, Any]] = {
        "E->E": ((ee_slow * pr.EE.J_d, ee_slow * pr.EE.J_p), (ee_fast * pr.EE.J_d, ee_fast * pr.EE.J_p))
    }
    for name, spec in (("E->I", pr.EI), ("I->E", pr.IE), ("I->I", pr.II)):
        slow, fast = scales[name]
        out[name] = (slow * spec.efficacy, fast * spec.efficacy)
    return out


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
    return {name: neurons[name] for name in NEURON_FIELDS}


class Engine(Protocol):
    name: str
    neurons: NeuronState  # state at t_k, k = self.k
    k: int  # index of the next step to run
    switches: SwitchLog
    scales: Scales  # receptor scales in force: (slow, fast) multiplier per projection

    def set_scales(self, scales: Scales) -> None:
        """Use these receptor scales from the next step on."""
        ...

    def step(self, i_ext: torch.Tensor) -> torch.Tensor:
        """Run step k → k+1 with external current i_ext; return σ at t_k (bool, one per neuron)."""
        ...

    def synapses(self) -> SynapseState:
        """E→E state at t_k in canonical order (lazy engines bring every synapse up to date)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bitwise from t_k (CPU copies; see `state_of`)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict` of an engine of the same kind on the same network."""
        ...
