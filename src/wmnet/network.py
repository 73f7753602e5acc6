"""A built network: config, per-neuron parameters and sparse connectivity, on one device."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from wmnet.config import Config
from wmnet.connectivity import Connectivity
from wmnet.dynamics import NeuronParams
from wmnet.errors import WmnetError
from wmnet.io.connectivity_files import load_connectivity
from wmnet.wiring import generate

DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present. An unavailable device is a WmnetError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise WmnetError(f"device: unknown device {name!r} (expected auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise WmnetError(f"device: {name!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise WmnetError(f"device: {name!r} does not exist ({torch.cuda.device_count()} GPU(s))")
    elif dev.type != "cpu":
        raise WmnetError(f"device: unsupported device type {dev.type!r} (expected cpu or cuda)")
    return dev


@dataclass
class Network:
    """Everything that defines the model for one run, before any state evolves."""

    config: Config
    device: torch.device
    dtype: torch.dtype
    params: NeuronParams
    connectivity: Connectivity
    build_seconds: float

    @property
    def n(self) -> int:
        return self.connectivity.n

    @property
    def n_E(self) -> int:
        return self.connectivity.n_E

    def __repr__(self) -> str:  # a few lines (display.py)
        from wmnet.display import network_lines

        return "\n".join(network_lines(self))

    def _repr_html_(self) -> str:
        from wmnet.display import html_table, network_lines

        return html_table(network_lines(self))

    @classmethod
    def build(
        cls,
        config: Config,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        connectivity: Connectivity | str | Path | None = None,
    ) -> Network:
        """Build on `device` (default: config.device) in `dtype` (default: config.dtype).

        `connectivity` may be a prebuilt Connectivity, a run's snapshot .npz, or an .npz of dense matrices;
        by default it is generated from the config's seed.
        """
        dev = resolve_device(config.device if device is None else str(device))
        dt = DTYPES[config.dtype] if dtype is None else dtype
        t0 = time.perf_counter()
        if connectivity is None:
            conn = generate(config, dev, dt)
        elif isinstance(connectivity, Connectivity):
            if (connectivity.n_E, connectivity.n_I) != (config.populations.E.size, config.populations.I.size):
                raise WmnetError("connectivity: population sizes differ from the config")
            conn = connectivity.to(dev, dt)
        else:
            conn = load_connectivity(connectivity, config, dev, dt)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        return cls(config, dev, dt, NeuronParams.from_config(config, dev, dt), conn, seconds)
