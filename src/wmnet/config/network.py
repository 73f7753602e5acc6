"""The network's part of the config: populations, projections and their initial E→E structure,
short-term depression and long-term plasticity."""

from __future__ import annotations

from pydantic import Field, field_validator

from wmnet.config.base import PositiveMs, Probability, _Strict


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
