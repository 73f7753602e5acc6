"""Everything one run records, as one `Recorder` (monitors.py): the monitors the config asks for,
with writers in the run folder if there is one, and the running sums of the run's summary.

The run loop hands every block to `Recorders.record`; `state` and `load` are the checkpoint's
recording part (positions in the files, partial bins, running sums: run_folder.py lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wmnet.block import Block
from wmnet.config import Config, Group, steps_in
from wmnet.engines import Engine
from wmnet.errors import WmnetError
from wmnet.monitors import RateMonitor, Recorder, SpikeMonitor, StateMonitor, SynapseMonitor
from wmnet.network import Network
from wmnet.run_folder import RunFolder


def trace_neurons(cfg: Config) -> np.ndarray:
    """Recorded neuron indices, negative ones counted from the end, deduplicated, sorted."""
    n = cfg.n_neurons
    idx = [i + n if i < 0 else i for i in cfg.record.traces.neurons]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise WmnetError(f"record.traces.neurons: index {bad[0]} outside 0..{n - 1}")
    return np.unique(np.asarray(idx, dtype=np.int64))


def potentiated_fraction(bits: torch.Tensor) -> float:
    """Fraction of set bits, without a float copy of a possibly huge tensor (NaN if empty)."""
    return bits.sum(dtype=torch.int64).item() / bits.numel() if bits.numel() else float("nan")


def flush_block(cfg: Config, n: int) -> int:
    """Steps buffered on the device between writes: record.flush_every, at most 64 Mi neuron-steps."""
    return max(1, min(round(cfg.record.flush_every / cfg.dt), max(1, (1 << 26) // max(n, 1))))


@dataclass
class SigmaCounter:
    """Neuron-steps with σ = 1, per population (E, I): the summary's σ fraction."""

    n_E: int
    device: torch.device
    sums: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.sums = torch.zeros(2, dtype=torch.int64, device=self.device)

    def record(self, block: Block) -> None:
        sigma = block.sigma
        # count_nonzero over a whole block: a plain sum of uint8 is many times slower.
        self.sums[0] += torch.count_nonzero(sigma[:, : self.n_E])
        self.sums[1] += torch.count_nonzero(sigma[:, self.n_E :])

    def flush(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"sigma_sum": self.sums.cpu()}

    def load(self, state: dict[str, Any], k: int) -> None:
        self.sums += state["sigma_sum"].to(self.device)


@dataclass
class Recorders:
    """The monitors of one run and its summary's running sums (see the module docstring)."""

    spikes: SpikeMonitor
    traces: StateMonitor
    rates: RateMonitor | None
    synapses: SynapseMonitor | None
    sigma: SigmaCounter

    @classmethod
    def create(
        cls,
        net: Network,
        engine: Engine,
        groups: dict[str, Group],
        k_start: int,
        folder: RunFolder | None,
        keep: bool,
        append: bool,
    ) -> Recorders:
        """Monitors for a run whose grids start at step `k_start` (writers in `folder` if given,
        reopened for appending with `append`); `keep`: keep the records in memory too."""
        cfg, rec = net.config, net.config.record
        neurons = trace_neurons(cfg)
        block = flush_block(cfg, net.n)
        reports = {} if folder is None else folder.report_writers(cfg, neurons, engine.k * cfg.dt, net.dtype, append)
        spike_writer = folder.spike_writer(cfg, append) if folder is not None and rec.spikes else None
        spikes = SpikeMonitor(net.n, cfg.dt, net.device, block, spike_writer, keep)
        traces = StateMonitor(
            list(rec.traces.variables),
            neurons,
            rec.traces.every,
            cfg.dt,
            net.device,
            max(1, block // rec.traces.every),
            reports,
            keep,
        )
        rates = syn = None
        if rec.rates is not None:
            b = steps_in(rec.rates.bin, cfg.dt, "record.rates.bin")
            writer = None if folder is None else folder.rates_writer(groups, k_start * cfg.dt, b * cfg.dt, append)
            rates = RateMonitor(groups, b, cfg.dt, k_start, net.device, block, writer, keep)
        if rec.synapses is not None and rec.synapses.every is not None:
            s = steps_in(rec.synapses.every, cfg.dt, "record.synapses.every")
            ee = cfg.projections.EE
            syn = SynapseMonitor(
                list(rec.synapses.groups),
                groups,
                net.connectivity,
                ee.J_p,
                ee.J_d,
                s,
                cfg.dt,
                k_start,
                max(1, block // s),
                None,
                keep,
                last_switches=(engine.switches.n_up, engine.switches.n_down),
                engine=engine,
            )
            if folder is not None:
                syn.writer = folder.synapses_writer(syn.series(), syn.constants(), k_start * cfg.dt, s * cfg.dt, append)
        return cls(spikes, traces, rates, syn, SigmaCounter(net.n_E, net.device))

    def all(self) -> list[Recorder]:
        return [r for r in (self.spikes, self.traces, self.rates, self.synapses, self.sigma) if r is not None]

    def start(self) -> None:
        """Before the first block: the synapse sample at the grid's first step."""
        if self.synapses is not None:
            self.synapses.start()

    def record(self, block: Block) -> None:
        for r in self.all():
            r.record(block)

    def flush(self) -> None:
        for r in self.all():
            r.flush()

    def state(self) -> dict[str, Any]:
        """The recording part of a checkpoint (flushes first: the files and the positions agree)."""
        spikes, traces = self.spikes.state(), self.traces.state()
        # Their state() adds what is not in the files (the partial rate bin, the last switch counts).
        monitors = {key: m.state() for key, m in (("rates", self.rates), ("synapses", self.synapses)) if m is not None}
        return {
            "positions": {"spikes": spikes["positions"], "reports": traces["positions"]},
            "monitors": monitors,
            "count": spikes["count"],
            **self.sigma.state(),
        }

    def load(self, ck: dict[str, Any], k: int) -> None:
        """Continue from checkpoint `ck` at step k: the files are cut back to its positions."""
        self.spikes.load({"positions": ck["positions"]["spikes"], "count": ck["count"]}, k)
        self.traces.load({"positions": ck["positions"]["reports"]}, k)
        for key, m in (("rates", self.rates), ("synapses", self.synapses)):
            if m is not None:
                m.load(ck["monitors"][key], k)
        self.sigma.load(ck, k)

    def summary(self, cfg: Config, engine: Engine, steps: int, initial_potentiated: float) -> dict[str, Any]:
        """run.json's summary after `steps` steps in all: rates, σ fractions, E→E potentiation."""
        n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
        seconds = steps * cfg.dt / 1000
        counts = self.spikes.count.cpu()
        x = engine.neurons.x.double().cpu()
        ss = self.sigma.sums.cpu().double()
        pot_end = potentiated_fraction(engine.synapses().potentiated)
        per = {}
        for name, sl, size, j in (("E", slice(0, n_e), n_e, 0), ("I", slice(n_e, None), n_i, 1)):
            per[name] = {
                "rate_hz": float(counts[sl].sum()) / (size * seconds) if seconds else 0.0,
                "sigma_fraction": float(ss[j]) / (size * steps) if steps else 0.0,
                "mean_x_end": float(x[sl].mean()),
            }
        return {
            "populations": per,
            "sigma_fraction": float(ss.sum()) / (cfg.n_neurons * steps) if steps else 0.0,
            "ee_potentiated_fraction": {"start": initial_potentiated, "end": pot_end},
            "ee_switches": {"up": engine.switches.n_up, "down": engine.switches.n_down},
            "spikes": int(counts.sum()),
        }
