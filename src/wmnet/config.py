"""Validated configuration: every parameter of MODEL.md, with the seed notebook's defaults.

One `Config` object is the single source of a run's parameters. It loads from YAML, takes
dotted `key=value` overrides, rejects unknown keys, and dumps back to YAML/JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wmnet.errors import WmnetError

PositiveMs = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class Population(_Strict):
    """One LIF population. Potentials in mV, times in ms."""

    size: int = Field(gt=0, description="number of neurons")
    tau_m: PositiveMs = Field(description="membrane time constant τ_m (ms)")
    theta: float = Field(20.0, description="firing threshold θ (mV)")
    v_reset: float = Field(description="reset potential after a pulse (mV)")
    tau_ref: PositiveMs = Field(2.0, description="pulse (refractory) duration τ_ref (ms)")
    tau_s: PositiveMs = Field(10.0, description="slow synaptic current time constant τ_s (ms)")


def _default_e() -> Population:
    return Population(size=8000, tau_m=20.0, v_reset=15.0)


def _default_i() -> Population:
    return Population(size=2000, tau_m=10.0, v_reset=10.0)


class Populations(_Strict):
    """The excitatory (E) and inhibitory (I) populations. E neurons are indexed first."""

    E: Population = Field(default_factory=_default_e, description="excitatory population")
    I: Population = Field(default_factory=_default_i, description="inhibitory population")  # noqa: E741


class _Connector(_Strict):
    p: Probability = Field(0.2, description="connection probability per (pre, post) pair")
    k_in: int | None = Field(
        None, ge=0, description="fixed in-degree per post neuron; replaces p when set"
    )
    slow_fraction: Probability = Field(description="fraction r of connections that are slow (NMDA-like)")


class StaticProjection(_Connector):
    """A projection with one fixed efficacy (mV/ms per unit of released resource)."""

    efficacy: float = Field(description="synaptic efficacy J (mV/ms); negative for inhibition")


class PlasticProjection(_Connector):
    """The E→E projection: bistable synapses, J ∈ {J_p, J_d}."""

    J_p: float = Field(0.21, description="potentiated efficacy J_p (mV/ms)")
    J_d: float = Field(0.03, description="depressed efficacy J_d (mV/ms)")
    p_potentiated: Probability = Field(0.2, description="probability a synapse starts potentiated (L=1)")


class Projections(_Strict):
    """Projections, named pre->post. Matrices are post × pre."""

    EE: PlasticProjection = Field(
        default_factory=lambda: PlasticProjection(slow_fraction=0.5), alias="E->E",
        description="excitatory to excitatory, plastic",
    )
    EI: StaticProjection = Field(
        default_factory=lambda: StaticProjection(slow_fraction=0.0, efficacy=0.08), alias="E->I",
        description="excitatory to inhibitory",
    )
    IE: StaticProjection = Field(
        default_factory=lambda: StaticProjection(slow_fraction=0.0, efficacy=-0.18), alias="I->E",
        description="inhibitory to excitatory",
    )
    II: StaticProjection = Field(
        default_factory=lambda: StaticProjection(slow_fraction=0.1, efficacy=-0.18), alias="I->I",
        description="inhibitory to inhibitory",
    )


class ShortTermDepression(_Strict):
    """Presynaptic resources x: x' = x + dt(1−x)/τ_rec − U·x·σ."""

    U: Probability = Field(0.45, description="fraction of resources used per pulse step")
    tau_rec: PositiveMs = Field(200.0, description="resource recovery time constant τ_rec (ms)")


class Plasticity(_Strict):
    """Long-term plasticity of E→E synapses through the hidden variable L."""

    enabled: bool = Field(True, description="update L and switch efficacies")
    bounds: tuple[float, float] | None = Field(
        (0.0, 1.0), description="[L_min, L_max] clip for L; null = unbounded (as the seed)"
    )
    alpha: float = Field(0.0147, ge=0, description="downward drift rate α of L below θ_X (1/ms)")
    beta: float = Field(0.01, ge=0, description="upward drift rate β of L above θ_X (1/ms)")
    theta_X: float = Field(0.4, description="switch threshold θ_X of L (dimensionless)")
    a_H: float = Field(0.25, ge=0, description="Hebbian potentiation rate a_H (1/ms)")
    b_H: float = Field(0.17, ge=0, description="Hebbian depression rate b_H (1/ms)")
    theta_LTP: float = Field(17.5, description="post potential above which LTP acts, θ_LTP (mV)")
    theta_LTD: float = Field(15.5, description="post potential below which LTD acts, θ_LTD (mV)")

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, b: tuple[float, float] | None) -> tuple[float, float] | None:
        if b is not None and not b[0] < b[1]:
            raise ValueError(f"must be [L_min, L_max] with L_min < L_max, got {list(b)}")
        return b


class Sinusoid(_Strict):
    """The seed's stimulus: I_n(t) = A_n sin(t/F_n + φ_n) + A_n, per neuron."""

    kind: Literal["sinusoid"] = Field("sinusoid", description="stimulus type")
    amplitude_max: float = Field(5.0, ge=0, description="A_n ~ U(0, amplitude_max) (mV/ms)")
    phase_max: float = Field(10.0, ge=0, description="φ_n ~ U(0, phase_max) (rad)")
    F_min: PositiveMs = Field(5.0, description="F_n ~ U(F_min, F_max): time scale of t/F_n (ms)")
    F_max: PositiveMs = Field(10.0, description="upper bound of F_n (ms)")


class Constant(_Strict):
    """A constant current per population."""

    kind: Literal["constant"] = Field("constant", description="stimulus type")
    E: float = Field(0.0, description="current into every E neuron (mV/ms)")
    I: float = Field(0.0, description="current into every I neuron (mV/ms)")  # noqa: E741


Stimulus = Annotated[Sinusoid | Constant, Field(discriminator="kind")]


class Traces(_Strict):
    """State traces written as SONATA reports."""

    variables: list[Literal["v", "i_s", "i_f", "x", "a"]] = Field(
        default_factory=lambda: ["v", "i_s", "i_f", "x"], description="state variables to record"
    )
    neurons: list[int] = Field(
        default_factory=lambda: [0, 1, 2, -3, -2, -1],
        description="global neuron indices (E first; negative counts from the end)",
    )
    every: int = Field(10, gt=0, description="record every k-th step")


class IndexRange(_Strict):
    """Global neuron indices start, start+1, …, stop−1."""

    start: int = Field(ge=0, description="first global neuron index")
    stop: int = Field(description="one past the last global neuron index")

    @model_validator(mode="after")
    def _nonempty(self) -> IndexRange:
        if self.stop <= self.start:
            raise ValueError(f"stop = {self.stop} must exceed start = {self.start}")
        return self


class Rates(_Strict):
    """Population rates (Hz) binned from pulse onsets, written to rates.h5."""

    bin: PositiveMs = Field(10.0, description="bin width (ms), a multiple of dt")
    groups: dict[str, list[int] | IndexRange] = Field(
        default_factory=dict,
        description="extra named groups of global neuron indices (a list or {start, stop}); "
        "the populations E and I are always recorded",
    )

    @field_validator("groups", mode="before")
    @classmethod
    def _ranges(cls, groups: Any) -> Any:
        # Check {start, stop} here: the union's own error would list both alternatives.
        for name, g in groups.items() if isinstance(groups, dict) else ():
            if isinstance(g, dict):
                try:
                    IndexRange.model_validate(g)
                except ValidationError as e:
                    raise ValueError(f"{name}: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        return groups


class SynapseStats(_Strict):
    """E→E synapse statistics sampled every `every` ms, written to synapses.h5."""

    every: PositiveMs | None = Field(
        100.0, description="sampling period (ms), a multiple of dt; null = off. A sample brings every E→E "
        "synapse up to date, which costs about 15–20 steps on the CPU: 100 ms keeps that near 2%",
    )
    groups: list[tuple[str, str]] = Field(
        default_factory=lambda: [("E", "E")],
        description="[pre, post] pairs of rate groups or populations, all E neurons",
    )


class Record(_Strict):
    """What a run records."""

    spikes: bool = Field(True, description="record the pulse onsets of all neurons")
    traces: Traces = Field(default_factory=Traces, description="state traces (SONATA reports)")
    flush_every: float = Field(100.0, gt=0, description="write buffered records every this many ms")
    checkpoint_every: float | None = Field(
        None, gt=0,
        description="write checkpoint.pt (state to resume from) every this many ms, a multiple of dt; "
        "null: only when a run is interrupted",
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

    def groups(self, n_e: int, n: int) -> dict[str, tuple[int, int] | list[int]]:
        """Rate groups: E, I and the configured ones, as (start, stop) or sorted unique indices."""
        out: dict[str, tuple[int, int] | list[int]] = {"E": (0, n_e), "I": (n_e, n)}
        for name, g in (self.rates.groups if self.rates else {}).items():
            where = f"record.rates.groups.{name}"
            if name in out or not name or "/" in name:
                raise ValueError(f"{where}: invalid name (E and I are the populations; no '/' or empty names)")
            lo, hi = (g.start, g.stop) if isinstance(g, IndexRange) else (min(g, default=0), max(g, default=-1) + 1)
            if isinstance(g, list) and not g:
                raise ValueError(f"{where}: empty group")
            if lo < 0 or hi > n:
                raise ValueError(f"{where}: indices must lie in 0..{n - 1}")
            out[name] = (g.start, g.stop) if isinstance(g, IndexRange) else sorted(set(g))
        return out

    def check(self, dt: float, n_e: int, n: int) -> None:
        """Raise ValueError naming the field if a period is off the dt grid or a group is unknown."""
        for what, ms in (("record.checkpoint_every", self.checkpoint_every),
                         ("record.rates.bin", self.rates.bin if self.rates else None),
                         ("record.synapses.every", self.synapses.every if self.synapses else None),
                         *(("record.snapshots", t) for t in self.snapshots)):
            if ms is not None:
                try:
                    steps_in(ms, dt, "")
                except ValueError:
                    raise ValueError(f"{what}: {ms} ms is not a whole multiple of dt = {dt} ms") from None
        groups = self.groups(n_e, n)
        for pair in self.synapses.groups if self.synapses and self.synapses.every else []:
            for name in pair:
                g = groups.get(name)
                if g is None:
                    raise ValueError(f"record.synapses.groups: unknown group {name!r} (known: {', '.join(groups)})")
                if (max(g) + 1 if isinstance(g, list) else g[1]) > n_e:
                    raise ValueError(f"record.synapses.groups: group {name!r} holds I neurons; "
                                     "E→E statistics need groups of E neurons")


class Config(_Strict):
    """A whole wmnet run."""

    seed: int = Field(0, ge=0, description="master seed: connectivity, initial state and stimulus")
    dt: PositiveMs = Field(0.1, description="Euler time step (ms)")
    duration: PositiveMs = Field(1000.0, description="simulated time (ms)")
    dtype: Literal["float16", "float32", "float64"] = Field("float32", description="working dtype")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    engine: Literal["auto", "reference", "sparse"] = Field("auto", description="simulation engine")
    threads: int = Field(
        2, ge=1, le=256,
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
    stimulus: Stimulus = Field(default_factory=Sinusoid, description="external input")
    record: Record = Field(default_factory=Record, description="what is recorded")

    @model_validator(mode="after")
    def _dt_divides_duration(self) -> Config:
        # A model-level error has no field location, so name both fields in the message
        # (otherwise the CLI would report the field as `<root>`).
        try:
            self.n_steps
        except ValueError:
            raise ValueError(
                f"dt, duration: dt = {self.dt} ms does not divide duration = {self.duration} ms "
                "(expected duration to be a whole number of steps)"
            ) from None
        self.record.check(self.dt, self.populations.E.size, self.n_neurons)
        return self

    @property
    def n_steps(self) -> int:
        return steps_in(self.duration, self.dt, "duration")

    @property
    def n_neurons(self) -> int:
        return self.populations.E.size + self.populations.I.size

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def steps_in(duration: float, dt: float, what: str) -> int:
    """Number of dt steps in `duration` (ms); error unless dt divides it."""
    n = round(duration / dt)
    if n <= 0 or not math.isclose(n * dt, duration, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"{what} {duration} ms is not a whole multiple of dt = {dt} ms")
    return n


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if not loc:  # model-level errors name their fields in the message itself
        return f"{source}: {msg}{more}"
    return f"{source}: {loc}: {msg}{more}"


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Set `dotted.key=value` in a nested dict; the value is parsed as YAML."""
    if "=" not in assignment:
        raise WmnetError(f"--set {assignment!r}: expected dotted.key=value")
    key, _, value = assignment.partition("=")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    parsed = _parse_value(value)
    if parts[-1] == "kind" and node.get("kind", parsed) != parsed:
        node.clear()  # a new kind: the old kind's fields no longer apply
    node[parts[-1]] = parsed


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `update` into a copy of `base`; a mapping whose `kind` changes is replaced."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if (
            isinstance(old, dict)
            and isinstance(value, dict)
            and value.get("kind", old.get("kind")) == old.get("kind")
        ):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults), apply `key=value` overrides, and validate.

    Raises WmnetError with a one-line message naming the file and field on bad input.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise WmnetError(f"{path}: cannot read config ({e.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise WmnetError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise WmnetError(f"{path}: expected a mapping of config keys at the top level")
        data = loaded
    if overrides:
        data = json.loads(json.dumps(data))  # private copy
        for assignment in overrides:
            apply_override(data, assignment)
        source += " (with --set)" if path is not None else " --set"
    try:
        return Config.model_validate(_merge(Config().to_dict(), data))
    except ValidationError as e:
        raise WmnetError(_format_validation_error(e, source)) from None
