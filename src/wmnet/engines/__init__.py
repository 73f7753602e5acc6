"""Simulation engines. `make_engine` picks one by name; `auto` picks the sparse engine."""

from __future__ import annotations

from wmnet.connectivity import SynapseState
from wmnet.dynamics import NeuronState
from wmnet.engines.base import Engine, SwitchLog
from wmnet.engines.reference import ReferenceEngine
from wmnet.engines.sparse import SparseEngine
from wmnet.errors import WmnetError
from wmnet.network import Network

__all__ = ["Engine", "ReferenceEngine", "SparseEngine", "SwitchLog", "make_engine", "resolve_engine"]


def resolve_engine(name: str, net: Network) -> str:
    """The concrete engine for `name` on this network's device and dtype."""
    if name == "auto":
        sparse_ok = net.device.type == "cpu" and net.dtype.is_floating_point and net.dtype.itemsize >= 4
        return "sparse" if sparse_ok else "reference"
    if name == "sparse" and net.device.type != "cpu":
        raise WmnetError("engine: the sparse engine runs on the CPU only so far; use --engine reference on CUDA")
    if name == "sparse" and net.dtype.itemsize < 4:
        raise WmnetError("engine: the sparse engine needs float32 or float64; use --engine reference for float16")
    return name


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
    kind = resolve_engine(name, net)
    cls = ReferenceEngine if kind == "reference" else SparseEngine
    return cls(net, neurons, synapses.clone(), keep_switch_events)
