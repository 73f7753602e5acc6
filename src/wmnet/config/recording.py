"""What a run records: spikes, state traces, rates, E→E synapse statistics, checkpoints and
connectivity snapshots."""

from __future__ import annotations

from pydantic import Field

from wmnet import model
from wmnet.config.base import PositiveMs, StateVariableName, _Strict
from wmnet.config.steps import _period_steps


class Traces(_Strict):
    """State traces written as SONATA reports."""

    variables: list[StateVariableName] = Field(
        default_factory=lambda: list(model.DEFAULT_TRACES), description="state variables to record"
    )
    neurons: list[int] = Field(
        default_factory=lambda: [0, 1, 2, -3, -2, -1],
        description="global neuron indices (E first; negative counts from the end)",
    )
    every: int = Field(10, gt=0, description="record every k-th step")


class Rates(_Strict):
    """Rates (Hz) of the populations and of every neuron group (`groups`), binned from pulse
    onsets and written to rates.h5."""

    bin: PositiveMs = Field(10.0, description="bin width (ms), a multiple of dt")


class SynapseStats(_Strict):
    """E→E synapse statistics sampled every `every` ms, written to synapses.h5."""

    every: PositiveMs | None = Field(
        100.0,
        description="sampling period (ms), a multiple of dt; null = off. A sample brings every E→E "
        "synapse up to date, which costs about 20 steps on a 2-core CPU: 100 ms keeps that near 2%",
    )
    groups: list[tuple[str, str]] = Field(
        default_factory=lambda: [("E", "E")],
        description="[pre, post] pairs of neuron groups (`groups`); their E neurons are used",
    )


class Record(_Strict):
    """What a run records."""

    spikes: bool = Field(True, description="record the pulse onsets of all neurons")
    traces: Traces = Field(default_factory=Traces, description="state traces (SONATA reports)")
    flush_every: float = Field(100.0, gt=0, description="write buffered records every this many ms")
    checkpoint_every: float | None = Field(
        None,
        gt=0,
        description="write checkpoint.pt (state to resume from) every this many ms, a multiple of dt; "
        "null: only when a run is interrupted (and at its end, see checkpoint_at_end)",
    )
    checkpoint_at_end: bool = Field(
        True,
        description="write checkpoint.pt when a run completes, so that `wmnet extend` can continue it "
        "(about 9 bytes per E→E synapse: turn off for huge networks)",
    )
    rates: Rates | None = Field(default_factory=Rates, description="population rates (rates.h5); null = off")
    synapses: SynapseStats | None = Field(
        default_factory=SynapseStats, description="E→E synapse statistics (synapses.h5); null = off"
    )
    snapshots: list[float] = Field(
        default_factory=list,
        description="times (ms from the run's start, multiples of dt) at which to save the whole connectivity "
        "with the E→E state as snapshots/connectivity_<t>ms.npz, loadable with --connectivity",
    )

    def check(self, dt: float, groups: list[str]) -> None:
        """Raise ValueError naming the field if a period is off the dt grid or a group is unknown."""
        for what, ms in (
            ("record.checkpoint_every", self.checkpoint_every),
            ("record.rates.bin", self.rates.bin if self.rates else None),
            ("record.synapses.every", self.synapses.every if self.synapses else None),
            *(("record.snapshots", t) for t in self.snapshots),
        ):
            if ms is not None:
                _period_steps(ms, dt, what)
        for pair in self.synapses.groups if self.synapses and self.synapses.every else []:
            for name in pair:
                if name not in groups:
                    raise ValueError(f"record.synapses.groups: unknown group {name!r} (known: {', '.join(groups)})")
