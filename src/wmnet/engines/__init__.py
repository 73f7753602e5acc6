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


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(name: str, net: Network) -> str:
    """The concrete engine for `name` on this network's device and dtype."""
    gpu = net.device.type == "cuda"
    if name == "auto":
        sparse_ok = net.dtype.itemsize >= 4 and (not gpu or triton_available())
        return "sparse" if sparse_ok else "reference"
    if name == "sparse" and gpu and not triton_available():
        raise WmnetError("engine: the sparse engine on CUDA needs Triton (it comes with CUDA builds of torch)")
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
    if kind == "reference":
        return ReferenceEngine(net, neurons, synapses.clone(), keep_switch_events)
    if net.device.type == "cuda":
        from wmnet.engines.gpu import GpuSparseEngine  # imports Triton

        return GpuSparseEngine(net, neurons, synapses.clone(), keep_switch_events)
    return SparseEngine(net, neurons, synapses.clone(), keep_switch_events)
