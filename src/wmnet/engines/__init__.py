"""Simulation engines, looked up by kind and device in one registry.

    make_engine("sparse", net)          # SparseEngine on the CPU, GpuSparseEngine on CUDA
    engine_class("sparse", "cuda")      # the class, without making one
    KINDS                               # ("reference", "sparse"); "auto" picks one of them

Every engine derives from `engines.base.Engine` (the contract: step, run_block, state,
set_state, synapses, state_dict).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from wmnet.connectivity import SynapseState
from wmnet.dynamics import NeuronState
from wmnet.engines.base import Engine, SwitchLog
from wmnet.engines.reference import ReferenceEngine
from wmnet.engines.sparse import SparseEngine
from wmnet.errors import WmnetError
from wmnet.network import Network

__all__ = [
    "KINDS",
    "REGISTRY",
    "Engine",
    "ReferenceEngine",
    "SparseEngine",
    "SwitchLog",
    "engine_class",
    "make_engine",
    "resolve_engine",
]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


# Every engine class is made as cls(net, neurons, synapses, keep_switch_events).
EngineFactory = Callable[[Network, NeuronState, SynapseState, bool], Engine]


def _gpu_sparse() -> type[Engine]:
    from wmnet.engines.gpu import GpuSparseEngine  # imports Triton: only when asked for

    return GpuSparseEngine


@dataclass(frozen=True)
class Entry:
    """One engine class for one device type; `load` imports it (the GPU engine needs Triton)."""

    kind: str
    device: str  # torch device type: "cpu" | "cuda"
    load: Callable[[], type[Engine]]


REGISTRY: MappingProxyType[tuple[str, str], Entry] = MappingProxyType(
    {
        (e.kind, e.device): e
        for e in (
            Entry("reference", "cpu", lambda: ReferenceEngine),
            Entry("reference", "cuda", lambda: ReferenceEngine),
            Entry("sparse", "cpu", lambda: SparseEngine),
            Entry("sparse", "cuda", _gpu_sparse),
        )
    }
)
KINDS: tuple[str, ...] = tuple(dict.fromkeys(kind for kind, _ in REGISTRY))


def _unavailable(kind: str, net: Network) -> str | None:
    """Why engine `kind` cannot run this network (None: it can)."""
    gpu = net.device.type == "cuda"
    if (kind, net.device.type) not in REGISTRY:
        return f"engine: no {kind} engine on {net.device.type}"
    if kind == "sparse" and gpu and not triton_available():
        return "engine: the sparse engine on CUDA needs Triton (it comes with CUDA builds of torch)"
    if kind == "sparse" and net.dtype.itemsize < 4:
        return "engine: the sparse engine needs float32 or float64; use --engine reference for float16"
    return None


def resolve_engine(name: str, net: Network) -> str:
    """The concrete engine kind for `name` (auto or one of KINDS) on this network's device and dtype."""
    if name == "auto":
        return "sparse" if _unavailable("sparse", net) is None else "reference"
    if name not in KINDS:
        raise WmnetError(f"engine: unknown engine {name!r} (known: auto, {', '.join(KINDS)})")
    why = _unavailable(name, net)
    if why is not None:
        raise WmnetError(why)
    return name


def engine_class(kind: str, device: str) -> type[Engine]:
    """The engine class registered for `kind` on device type `device` ("cpu" or "cuda")."""
    entry = REGISTRY.get((kind, device))
    if entry is None:
        known = ", ".join(f"{k} on {d}" for k, d in REGISTRY)
        raise WmnetError(f"engine: no engine {kind!r} for device {device!r} (known: {known})")
    return entry.load()


def make_engine(
    name: str,
    net: Network,
    neurons: NeuronState | None = None,
    synapses: SynapseState | None = None,
    keep_switch_events: bool = False,
) -> Engine:
    """Create engine `name` (auto | reference | sparse) holding the given (or initial) state."""
    neurons = NeuronState.initial(net.n, net.device, net.dtype) if neurons is None else neurons
    synapses = net.connectivity.initial if synapses is None else synapses
    make = cast(EngineFactory, engine_class(resolve_engine(name, net), net.device.type))
    return make(net, neurons, synapses.clone(), keep_switch_events)
