"""Validated configuration: every parameter of docs/model.md, with the seed notebook's defaults.

One `Config` object is the single source of a run's parameters. It loads from YAML, takes
dotted `key=value` overrides, rejects unknown keys, and dumps back to YAML/JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from wmnet import model
from wmnet.errors import WmnetError
from wmnet.rng import stream_seed

# Names from the model schema, as Literal types: pydantic rejects others and lists the schema's in
# JSON schemas and errors. (mypy cannot evaluate a Literal over a runtime tuple: str for it.)
if TYPE_CHECKING:
    StateVariableName = str
    ProjectionName = str
else:
    StateVariableName = Literal[model.VARIABLES]
    ProjectionName = Literal[model.PROJECTION_NAMES]

PositiveMs = Annotated[float, Field(gt=0)]
Group = tuple[int, int] | list[int]  # global neuron indices: [start, stop) or a sorted list


def group_ids(group: Group) -> np.ndarray:
    """Global neuron indices of a group (int64)."""
    return np.arange(*group, dtype=np.int64) if isinstance(group, tuple) else np.asarray(group, dtype=np.int64)


Probability = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    # allow_inf_nan=False: every float field (also inside tuples and lists) must be finite; an
    # inf duration or a NaN threshold would otherwise overflow later or run to silently wrong results.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True, allow_inf_nan=False)


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
    k_in: int | None = Field(None, ge=0, description="fixed in-degree per post neuron; replaces p when set")
    slow_fraction: Probability = Field(description="fraction r of connections that are slow (NMDA-like)")
    slow_scale: float = Field(
        1.0,
        ge=0,
        description="multiplies every slow-channel (NMDA-like) efficacy of the projection; a protocol "
        "epoch may set its own value",
    )
    fast_scale: float = Field(
        1.0,
        ge=0,
        description="multiplies every fast-channel (AMPA/GABA-like) efficacy of the projection; a "
        "protocol epoch may set its own value",
    )


class StaticProjection(_Connector):
    """A projection with one fixed efficacy (mV/ms per unit of released resource)."""

    efficacy: float = Field(description="synaptic efficacy J (mV/ms); negative for inhibition")


class Structure(_Strict):
    """Initial E→E structure by prototype group: the probability that a synapse of each kind
    starts potentiated (L=1). A kind left out uses `p_potentiated`. Needs `groups.prototypes`."""

    within: Probability | None = Field(None, description="pre and post in the same prototype group")
    between: Probability | None = Field(None, description="pre and post in different prototype groups")
    to_nonselective: Probability | None = Field(None, description="pre in a group, post nonselective")
    from_nonselective: Probability | None = Field(None, description="pre nonselective, post in a group")
    nonselective: Probability | None = Field(None, description="pre and post both nonselective")


class PlasticProjection(_Connector):
    """The E→E projection: bistable synapses, J ∈ {J_p, J_d}."""

    J_p: float = Field(0.21, description="potentiated efficacy J_p (mV/ms)")
    J_d: float = Field(0.03, description="depressed efficacy J_d (mV/ms)")
    p_potentiated: Probability = Field(0.2, description="probability a synapse starts potentiated (L=1)")
    structure: Structure | None = Field(
        None,
        description="initial potentiated probability per kind of synapse (within/between prototype "
        "groups, to/from nonselective); needs groups.prototypes. None: p_potentiated for all",
    )


class Projections(_Strict):
    """Projections, named pre->post. Matrices are post × pre.

    One field per `model.PROJECTIONS` (its `field`, aliased by its name; tests/test_schema.py
    checks that they agree): each projection has its own parameters, so this list is written out."""

    EE: PlasticProjection = Field(
        default_factory=lambda: PlasticProjection(slow_fraction=0.5),
        alias="E->E",
        description="excitatory to excitatory, plastic",
    )
    EI: StaticProjection = Field(
        default_factory=lambda: StaticProjection(slow_fraction=0.0, efficacy=0.08),
        alias="E->I",
        description="excitatory to inhibitory",
    )
    IE: StaticProjection = Field(
        default_factory=lambda: StaticProjection(slow_fraction=0.0, efficacy=-0.18),
        alias="I->E",
        description="inhibitory to excitatory",
    )
    II: StaticProjection = Field(
        default_factory=lambda: StaticProjection(slow_fraction=0.1, efficacy=-0.18),
        alias="I->I",
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


class IndexRange(_Strict):
    """Global neuron indices start, start+1, …, stop−1."""

    start: int = Field(ge=0, description="first global neuron index")
    stop: int = Field(description="one past the last global neuron index")

    @model_validator(mode="after")
    def _nonempty(self) -> IndexRange:
        if self.stop <= self.start:
            raise ValueError(f"stop = {self.stop} must exceed start = {self.start}")
        return self


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


class Background(_Strict):
    """The background input: per population, its mean plus Gaussian noise redrawn every `grain` ms.

    I_n(t) = c_n·mean_pop(n) + std_pop(n)·z_n(g), z ~ N(0, 1) drawn from the run's seed for each
    grain g = ⌊t / grain⌋ (the same realisation whatever the epoch); c_n is a selective stimulus's
    contrast (1 elsewhere).
    """

    kind: Literal["background"] = Field("background", description="stimulus type")


class Selective(_Strict):
    """The background, with the mean of one group's E and I neurons multiplied by contrasts.

    With `noise` > 0, a noisy prototype: for each presentation (epoch), every neuron of the group
    drops out, and every neuron outside it joins, with probability `noise`, drawn from the seed.
    """

    kind: Literal["selective"] = Field("selective", description="stimulus type")
    group: str = Field(description="neuron group (see `groups`); in a protocol block also $group, $A or $B")
    contrast_E: float = Field(1.0, ge=0, description="multiplies the background mean of the group's E neurons")
    contrast_I: float = Field(1.0, ge=0, description="multiplies the background mean of the group's I neurons")
    noise: Probability = Field(0.0, description="probability that a neuron's membership flips, per presentation")


class ArrayInput(_Strict):
    """Currents from a .npy array of shape (N, steps) (mV/ms): element [n, k] drives neuron n in
    step k, counted from the start of the epoch (or of the run, outside a protocol)."""

    kind: Literal["array"] = Field("array", description="stimulus type")
    path: str = Field(
        description=".npy file (N × steps); extra steps are ignored. A relative path is resolved "
        "against the working folder when the config is loaded, and stored absolute"
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, p: str) -> str:
        # Stored resolved: `wmnet resume` may run from another folder than the run did.
        return str(Path(p).expanduser().absolute()) if p else p


class Sum(_Strict):
    """The sum of several stimuli."""

    kind: Literal["sum"] = Field("sum", description="stimulus type")
    terms: list[Stimulus] = Field(min_length=1, description="the stimuli to add")


Stimulus = Annotated[Sinusoid | Constant | Background | Selective | ArrayInput | Sum, Field(discriminator="kind")]
Sum.model_rebuild()


class PopulationNoise(_Strict):
    """Background input into one population."""

    mean: float = Field(0.0, description="mean current (mV/ms)")
    std: float = Field(0.0, ge=0, description="standard deviation of the noise (mV/ms)")


class BackgroundInput(_Strict):
    """Parameters of the `background` and `selective` stimuli."""

    E: PopulationNoise = Field(default_factory=PopulationNoise, description="into each E neuron")
    I: PopulationNoise = Field(default_factory=PopulationNoise, description="into each I neuron")  # noqa: E741
    grain: PositiveMs = Field(1.0, description="the noise is piecewise constant over this many ms (a multiple of dt)")


class Prototypes(_Strict):
    """P random "prototype" groups named <prefix>1 … <prefix>P, drawn from the run's seed."""

    count: int = Field(gt=0, description="number of groups P")
    fraction: float = Field(gt=0, le=1, description="E neurons per group, as a fraction f of N_E")
    fraction_I: Probability = Field(0.0, description="I neurons per group, as a fraction of N_I (0: none)")
    prefix: str = Field("P", min_length=1, description="group names are the prefix and 1 … P")


class Groups(_Strict):
    """Named neuron sets, for stimuli and monitors. E and I (the populations) always exist; with
    prototypes, `nonselective` holds the E neurons in no prototype group."""

    prototypes: Prototypes | None = Field(None, description="random prototype groups")
    sets: dict[str, list[int] | IndexRange] = Field(
        default_factory=dict, description="explicit groups: global neuron indices, as a list or {start, stop}"
    )
    overlap: bool = Field(False, description="allow groups to share neurons (prototypes are then drawn independently)")

    @field_validator("sets", mode="before")
    @classmethod
    def _ranges(cls, sets: Any) -> Any:
        # Check {start, stop} here: the union's own error would list both alternatives.
        for name, g in sets.items() if isinstance(sets, dict) else ():
            if isinstance(g, dict):
                try:
                    IndexRange.model_validate(g)
                except ValidationError as e:
                    raise ValueError(f"{name}: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        return sets

    def names(self) -> list[str]:
        """Every group name, in order: E, I, prototypes, nonselective, sets."""
        out = ["E", "I"]
        if self.prototypes is not None:
            out += [f"{self.prototypes.prefix}{i + 1}" for i in range(self.prototypes.count)] + ["nonselective"]
        return out + list(self.sets)

    def resolve(self, seed: int, n_e: int, n_i: int) -> dict[str, Group]:
        """Every group as (start, stop) or sorted unique global indices. ValueError on bad groups."""
        n = n_e + n_i
        out: dict[str, Group] = {"E": (0, n_e), "I": (n_e, n)}
        if self.prototypes is None and not self.sets:
            return out  # nothing to draw: allocate nothing (a config of 10^12 neurons stays cheap)
        from wmnet.memory import check_host

        # The membership flags, and with prototypes the permutations of E and I (int64).
        check_host(
            n + (16.0 * n if self.prototypes is not None else 0), f"groups: resolving the groups of {n:,} neurons"
        )
        taken = np.zeros(n, dtype=bool)  # neurons already in a group (overlap checks)
        if self.prototypes is not None:
            pr = self.prototypes
            size_e, size_i = round(pr.fraction * n_e), round(pr.fraction_I * n_i)
            if size_e == 0:
                raise ValueError(f"groups.prototypes.fraction: {pr.fraction} × {n_e} E neurons rounds to 0")
            if not self.overlap and (pr.count * size_e > n_e or pr.count * size_i > n_i):
                raise ValueError(
                    f"groups.prototypes: {pr.count} disjoint groups of {size_e} E and {size_i} I "
                    f"neurons do not fit in {n_e} E and {n_i} I (set groups.overlap: true)"
                )
            rng = np.random.default_rng(stream_seed(seed, "groups"))
            perm_e, perm_i = rng.permutation(n_e), rng.permutation(n_i)
            for i in range(pr.count):
                if self.overlap:  # independent draws: groups share neurons by chance
                    e, inh = rng.permutation(n_e)[:size_e], rng.permutation(n_i)[:size_i]
                else:
                    e, inh = perm_e[i * size_e : (i + 1) * size_e], perm_i[i * size_i : (i + 1) * size_i]
                ids = np.concatenate([e, inh + n_e])
                taken[ids] = True
                out[f"{pr.prefix}{i + 1}"] = sorted(int(j) for j in ids)
            rest = np.flatnonzero(~taken[:n_e])
            if rest.size:
                out["nonselective"] = rest.tolist()
        for name, g in self.sets.items():
            where = f"groups.sets.{name}"
            if name in out or name in ("E", "I", "nonselective") or not name or "/" in name or name.startswith("$"):
                raise ValueError(
                    f"{where}: invalid or repeated name (E, I and nonselective are reserved; "
                    "no '/', no leading '$', not empty)"
                )
            if isinstance(g, list) and not g:
                raise ValueError(f"{where}: empty group")
            lo, hi = (g.start, g.stop) if isinstance(g, IndexRange) else (min(g), max(g) + 1)
            if lo < 0 or hi > n:
                raise ValueError(f"{where}: indices must lie in 0..{n - 1}")
            ids = np.arange(lo, hi) if isinstance(g, IndexRange) else np.unique(np.asarray(g))
            if not self.overlap and taken[ids].any():
                raise ValueError(
                    f"{where}: shares neuron {int(ids[taken[ids]][0])} with another group "
                    "(set groups.overlap: true to allow that)"
                )
            taken[ids] = True
            out[name] = (g.start, g.stop) if isinstance(g, IndexRange) else ids.tolist()
        return out


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


class ScaleOverride(_Strict):
    """Receptor scales of one projection during an epoch; unset ones keep the projection's value."""

    slow_scale: float | None = Field(None, ge=0, description="multiplies the slow-channel efficacies")
    fast_scale: float | None = Field(None, ge=0, description="multiplies the fast-channel efficacies")


class Epoch(_Strict):
    """A stretch of the protocol with one stimulus (and, optionally, its own receptor scales)."""

    name: str = Field(min_length=1, description="epoch name, written to events.tsv (e.g. cue, delay)")
    duration: PositiveMs = Field(description="length (ms), a multiple of dt")
    stimulus: Stimulus | None = Field(None, description="input during the epoch; null: the config's `stimulus`")
    projections: dict[ProjectionName, ScaleOverride] = Field(
        default_factory=dict, description="receptor scales during this epoch, e.g. {E->E: {slow_scale: 0.5}}"
    )


class Block(_Strict):
    """Epochs repeated `repeat` times. With `groups`, each repetition runs the epochs once per
    group ($group in a stimulus names it); with `pairs`, once per pair ($A then $B)."""

    block: str = Field(min_length=1, description="block name, written to events.tsv")
    repeat: int = Field(1, ge=1, description="number of repetitions")
    shuffle: bool = Field(False, description="a new random order of the groups or pairs in each repetition")
    groups: list[str] | None = Field(None, min_length=1, description="groups substituted for $group")
    pairs: list[tuple[str, str]] | None = Field(
        None, min_length=1, description="pair association: [A, B] groups substituted for $A and $B"
    )
    epochs: list[Epoch] = Field(min_length=1, description="the epochs of one trial")

    def cases(self) -> list[dict[str, str]]:
        """One substitution ($group, or $A and $B) per trial of a repetition."""
        if self.groups is not None:
            return [{"$group": g} for g in self.groups]
        if self.pairs is not None:
            return [{"$A": a, "$B": b} for a, b in self.pairs]
        return [{}]

    @model_validator(mode="after")
    def _one_kind(self) -> Block:
        if self.groups is not None and self.pairs is not None:
            raise ValueError(f"block {self.block}: give groups or pairs, not both")
        return self


def _item_kind(v: Any) -> str:
    return "block" if (isinstance(v, dict) and "block" in v) or isinstance(v, Block) else "epoch"


ProtocolItem = Annotated[Annotated[Epoch, Tag("epoch")] | Annotated[Block, Tag("block")], Discriminator(_item_kind)]


class Protocol(_Strict):
    """An ordered list of epochs and blocks; the run's duration is its total length."""

    initial_rest: float = Field(0.0, ge=0, description="rest (ms) before the first epoch, with the config's `stimulus`")
    epochs: list[ProtocolItem] = Field(min_length=1, description="epochs and blocks, in order")


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


# At most 2^48 steps (about 890 years of simulated time at dt = 0.1 ms): beyond that a step
# count overflows the engines' int64 arithmetic on k·dt and the progress/summary float maths.
MAX_STEPS = 1 << 48


class TooManySteps(ValueError):
    """A duration that is a valid multiple of dt but more steps than a run can take."""


def steps_in(duration: float, dt: float, what: str) -> int:
    """Number of dt steps in `duration` (ms); error unless dt divides it (and at most MAX_STEPS)."""
    q = duration / dt
    if not math.isfinite(q):
        raise TooManySteps(f"{what}: {duration} ms is not a finite number of steps of dt = {dt} ms")
    n = round(q)
    if n > MAX_STEPS:
        raise TooManySteps(
            f"{what}: {duration} ms is {n:.3g} steps of dt = {dt} ms, more than the "
            f"{MAX_STEPS:.3g} (2^48) a run can take"
        )
    if n <= 0 or not math.isclose(n * dt, duration, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"{what} {duration} ms is not a whole multiple of dt = {dt} ms")
    return n


def _period_steps(ms: float, dt: float, where: str) -> int:
    """steps_in, with the message naming the field `where`."""
    try:
        return steps_in(ms, dt, where)
    except TooManySteps:
        raise
    except ValueError:
        raise ValueError(f"{where}: {ms} ms is not a whole multiple of dt = {dt} ms") from None


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


def _cyclic(obj: Any, path: tuple[int, ...] = ()) -> bool:
    """True if a YAML document (dicts and lists) contains itself (a self-referencing anchor)."""
    if not isinstance(obj, (dict, list)):
        return False
    if id(obj) in path:
        return True
    inner = (*path, id(obj))
    return any(_cyclic(v, inner) for v in (obj.values() if isinstance(obj, dict) else obj))


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if _cyclic(value):
        raise WmnetError(f"--set {text!r}: a YAML anchor refers to itself; a value must be a tree")
    return value


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
        if isinstance(old, dict) and isinstance(value, dict) and value.get("kind", old.get("kind")) == old.get("kind"):
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
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise WmnetError(f"{path}: cannot read config ({e.strerror})") from None
        except UnicodeDecodeError as e:
            raise WmnetError(
                f"{path}: not a UTF-8 text file (byte {e.object[e.start]:#04x} at offset {e.start}); "
                "save the config as UTF-8"
            ) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise WmnetError(f"{path}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
        if _cyclic(loaded):
            raise WmnetError(f"{path}: a YAML anchor refers to itself (e.g. `a: &x [*x]`); a config must be a tree")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise WmnetError(f"{path}: expected a mapping of config keys at the top level")
        data = loaded
    base = Config().to_dict()
    base.pop("duration")  # unset unless given: a protocol sets it
    if overrides:
        data = json.loads(json.dumps(data))  # private copy
        for assignment in overrides:
            apply_override(data, assignment)
        source += " (with --set)" if path is not None else " --set"
    try:
        return Config.model_validate(_merge(base, data))
    except ValidationError as e:
        raise WmnetError(_format_validation_error(e, source)) from None
