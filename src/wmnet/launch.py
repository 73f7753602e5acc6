"""A fresh run into a folder, as `wmnet run` does it and a sweep's point does it: validate and
build everything first, then claim the folder, write config.yaml and run under the folder's lock.

    device, reason = plan(cfg)                        # refuses a network that does not fit
    sim = build(cfg, device, connectivity, input_path)
    folder = claim_run_folder(out, overwrite, inputs)  # or claim_owned_folder(point folder)
    result = run_in(folder, sim, progress=True, info={"input": input_path})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from wmnet.config import Config

if TYPE_CHECKING:
    from wmnet.result import RunResult
    from wmnet.run_folder import RunFolder
    from wmnet.simulation import Simulation


def plan(cfg: Config) -> tuple[torch.device, str | None]:
    """The device the config resolves to, and why `engine: auto` chose the dense engine (None if
    it did not); a WmnetError, with both numbers, if the network's estimated memory exceeds the
    device's. Nothing is allocated."""
    from wmnet.memory import check_fits, planned_engine
    from wmnet.network import resolve_device

    device = resolve_device(cfg.device)
    engine, reason = planned_engine(cfg, device)
    check_fits(cfg, device, engine)
    return device, reason


def build(
    cfg: Config, device: torch.device, connectivity: str | None = None, input_path: str | None = None
) -> Simulation:
    """The network, the stimulus (an input file is checked against the run's length) and the
    simulation; every config error (record.traces.neurons too) is raised here, before any write."""
    from wmnet.network import Network
    from wmnet.recorders import trace_neurons
    from wmnet.simulation import Simulation
    from wmnet.stimuli import make_stimulus

    net = Network.build(cfg, device=device, connectivity=connectivity)
    sim = Simulation(net, stimulus=make_stimulus(cfg, net.device, net.dtype, input_path))
    trace_neurons(cfg)
    return sim


def run_in(folder: RunFolder, sim: Simulation, progress: bool, info: dict[str, Any]) -> RunResult:
    """The run in the claimed `folder` (it writes config.yaml first; the folder is closed at the
    end, its lock released). An interrupted run raises KeyboardInterrupt(result), as on the
    command line."""
    try:
        return sim.run(out=folder, progress=progress, info=info, on_interrupt="raise")
    finally:
        folder.close()
