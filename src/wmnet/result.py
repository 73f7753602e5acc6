"""What a run produced: `RunResult`, in memory (returned by `Simulation.run`) or reloaded from a run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wmnet.config import Config
    from wmnet.engines import Engine
    from wmnet.monitors import RateMonitor, SpikeMonitor, StateMonitor, SynapseMonitor


@dataclass
class RunResult:
    """What a run produced. With an output folder, the files hold the same data."""

    config: Config
    spikes: SpikeMonitor
    traces: StateMonitor
    summary: dict[str, Any]
    engine: Engine
    out: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    rates: RateMonitor | None = None  # result.rates["E"] (Hz per bin), result.rates.t (bin starts, ms)
    synapse_stats: SynapseMonitor | None = None  # result.synapse_stats["synapses/E->E/mean_L"], .t (ms)
