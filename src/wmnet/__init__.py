"""wmnet: fast simulation of spiking working-memory networks with plastic E→E synapses.

    from wmnet import load_config, Network, Simulation
    net = Network.build(load_config("configs/seed.yaml"))
    result = Simulation(net).run(duration=1000.0, out="runs/demo")

Names are imported on first use, so `wmnet config show` does not pay for torch and numba.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Config": "wmnet.config",
    "load_config": "wmnet.config",
    "WmnetError": "wmnet.errors",
    "Connectivity": "wmnet.connectivity",
    "SynapseState": "wmnet.connectivity",
    "NeuronState": "wmnet.dynamics",
    "Network": "wmnet.network",
    "Simulation": "wmnet.simulation",
    "RunResult": "wmnet.result",
    "sweep": "wmnet.sweep",  # wmnet.sweep(SWEEP, out=DIR) -> DataFrame (docs/sweeps.md)
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'wmnet' has no attribute {name!r}")
