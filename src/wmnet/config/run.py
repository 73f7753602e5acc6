"""`Config`, the whole run: its top-level settings, its sections, and the checks across sections."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from wmnet.config.base import PositiveMs, _Strict
from wmnet.config.groups import Group, Groups
from wmnet.config.inputs import BackgroundInput, Selective, Sinusoid, Stimulus, Sum
from wmnet.config.network import Plasticity, Populations, Projections, ShortTermDepression
from wmnet.config.recording import Record
from wmnet.config.schedule import Epoch, Protocol
from wmnet.config.steps import TooManySteps, _period_steps, steps_in


class Config(_Strict):
    """A whole wmnet run."""

    seed: int = Field(0, ge=0, description="master seed: connectivity, initial state and stimulus")
    dt: PositiveMs = Field(0.1, description="Euler time step (ms)")
    duration: PositiveMs | None = Field(
        None,
        description="simulated time (ms); default 1000 ms, or with a protocol its total length (a longer "
        "duration continues with `stimulus` after the protocol, as `wmnet extend` does)",
    )
    dtype: Literal["float16", "float32", "float64"] = Field("float32", description="working dtype")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    engine: Literal["auto", "reference", "sparse"] = Field("auto", description="simulation engine")
    threads: int = Field(
        2,
        ge=1,
        le=256,
        description="CPU work chunks of the sparse engine (run in parallel); results are bitwise "
        "reproducible for a given value, whatever the machine's core count",
    )
    deterministic: bool = Field(
        False,
        description="GPU sparse engine: sum synaptic input in 64-bit fixed point (2^-44 units), so runs are "
        "bitwise reproducible; otherwise float atomics, whose summation order varies. The CPU is always "
        "deterministic",
    )
    populations: Populations = Field(default_factory=Populations, description="E and I populations")
    projections: Projections = Field(default_factory=Projections, description="the four projections")
    stp: ShortTermDepression = Field(default_factory=ShortTermDepression, description="short-term depression")
    plasticity: Plasticity = Field(default_factory=Plasticity, description="long-term E→E plasticity")
    stimulus: Stimulus = Field(
        default_factory=Sinusoid, description="external input (outside a protocol's epochs that set their own)"
    )
    background: BackgroundInput = Field(
        default_factory=BackgroundInput, description="parameters of the background and selective stimuli"
    )
    groups: Groups = Field(default_factory=Groups, description="named neuron groups")
    protocol: Protocol | None = Field(None, description="stimulus protocol; sets the duration")
    record: Record = Field(default_factory=Record, description="what is recorded")

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        # A model-level error has no field location, so each message names its fields
        # (otherwise the CLI would report the field as `<root>`).
        total = self._check_protocol() if self.protocol is not None else None
        if self.duration is None:
            # Filled in place (an assignment would validate the model again).
            self.__dict__["duration"] = total * self.dt if total is not None else 1000.0
        elif total is not None and round(self.duration / self.dt) < total:
            raise ValueError(
                f"duration: {self.duration} ms is shorter than the protocol's length "
                f"{total * self.dt:g} ms (leave duration out: the protocol sets it)"
            )
        try:
            self.n_steps  # noqa: B018  (validates: raises TooManySteps)
        except TooManySteps as e:
            raise ValueError(f"dt, {e}") from None
        except ValueError:
            raise ValueError(
                f"dt, duration: dt = {self.dt} ms does not divide duration = {self.duration} ms "
                "(expected duration to be a whole number of steps)"
            ) from None
        _period_steps(self.background.grain, self.dt, "background.grain")
        if self.projections.EE.structure is not None and self.groups.prototypes is None:
            raise ValueError(
                "projections.E->E.structure: needs groups.prototypes (the kinds of synapse are "
                "defined by the prototype groups)"
            )
        groups = self.resolve_groups()
        self.record.check(self.dt, list(groups))
        for pair in self.record.synapses.groups if self.record.synapses and self.record.synapses.every else []:
            for name in pair:
                g = groups[name]
                if g[0] >= self.populations.E.size:  # (start, stop) or sorted indices
                    raise ValueError(
                        f"record.synapses.groups: group {name!r} has no E neurons; E→E statistics need them"
                    )
        self._check_stimulus(self.stimulus, "stimulus", {})
        return self

    def resolve_groups(self) -> dict[str, Group]:
        """Every neuron group (groups.resolve with this run's seed and sizes)."""
        return self.groups.resolve(self.seed, self.populations.E.size, self.populations.I.size)

    def _check_stimulus(self, stim: Any, where: str, placeholders: dict[str, str]) -> None:
        """Unknown groups and placeholders are errors; `placeholders` maps $names to a group."""
        if isinstance(stim, Sum):
            for i, term in enumerate(stim.terms):
                self._check_stimulus(term, f"{where}.terms.{i}", placeholders)
        elif isinstance(stim, Selective):
            name = placeholders.get(stim.group, stim.group)
            if name.startswith("$"):
                raise ValueError(
                    f"{where}.group: {name} is only defined in a block with {'groups' if name == '$group' else 'pairs'}"
                )
            known = self.groups.names()
            if name not in known:
                raise ValueError(f"{where}.group: unknown group {name!r} (known: {', '.join(known)})")

    def _check_protocol(self) -> int:
        """Check every epoch; return the protocol's length in steps."""
        assert self.protocol is not None
        known = self.groups.names()

        def steps(ms: float, where: str) -> int:
            return _period_steps(ms, self.dt, where)

        total = steps(self.protocol.initial_rest, "protocol.initial_rest") if self.protocol.initial_rest else 0
        for i, item in enumerate(self.protocol.epochs):
            where = f"protocol.epochs.{i}"
            if isinstance(item, Epoch):
                total += steps(item.duration, f"{where}.duration")
                self._check_stimulus(item.stimulus, f"{where}.stimulus", {})
                continue
            cases = item.cases()
            for case in cases:
                for name in case.values():
                    if name not in known:
                        raise ValueError(f"{where}: unknown group {name!r} (known: {', '.join(known)})")
                for j, ep in enumerate(item.epochs):
                    self._check_stimulus(ep.stimulus, f"{where}.epochs.{j}.stimulus", case)
            trial = sum(steps(ep.duration, f"{where}.epochs.{j}.duration") for j, ep in enumerate(item.epochs))
            total += item.repeat * len(cases) * trial
        return total

    @property
    def n_steps(self) -> int:
        assert self.duration is not None  # set by the validator (from the protocol or 1000 ms)
        return steps_in(self.duration, self.dt, "duration")

    @property
    def n_neurons(self) -> int:
        return self.populations.E.size + self.populations.I.size

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def __repr__(self) -> str:  # a few lines (display.py); to_yaml() gives every field
        from wmnet.display import config_lines

        return "\n".join(config_lines(self))

    __str__ = __repr__  # print(cfg): the same lines, not pydantic's one-line dump of every field

    def _repr_html_(self) -> str:
        from wmnet.display import config_lines, html_table

        return html_table(config_lines(self))
