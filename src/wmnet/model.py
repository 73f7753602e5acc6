"""The model's vocabulary as data: state variables, projections and the packed parameter vector.

Everything that names a state variable or a projection reads it from here: the config (which
trace variables and protocol projections it accepts), connectivity, protocols (receptor
scales), monitors, plots, SONATA units and the three engines. The step equations themselves
are in `wmnet.dynamics` (and docs/model.md).

    from wmnet import model
    model.VARIABLES                    # ("v", "i_s", "i_f", "x", "a")
    model.UNITS["i_s"]                 # "mV/ms"
    model.projection("E->I").post      # "I"
    model.parameter_values(cfg, scales)["E->E_p_slow"]   # J_p of the slow channel, scaled

Adding a state variable or a projection means adding it here and to the engines' arithmetic;
tests/test_schema.py checks that everything else follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # config imports this module: no runtime import back
    from wmnet.config import Config, PlasticProjection, StaticProjection


@dataclass(frozen=True)
class StateVariable:
    """One per-neuron state variable, as engines hold it at t_k."""

    name: str
    unit: str  # SONATA/UCUM-style: "1" for dimensionless
    description: str
    initial: float  # value of a neuron at rest (a fresh network)


STATE_VARIABLES: tuple[StateVariable, ...] = (
    StateVariable("v", "mV", "membrane potential", 0.0),
    StateVariable("i_s", "mV/ms", "slow synaptic current", 0.0),
    StateVariable("i_f", "mV/ms", "fast synaptic current", 0.0),
    StateVariable("x", "1", "presynaptic resources (fraction, 0..1)", 1.0),
    StateVariable("a", "1", "pulse counter: 0 at rest, grows by dt/τ_ref per pulse step", 0.0),
)
VARIABLES: tuple[str, ...] = tuple(s.name for s in STATE_VARIABLES)
UNITS: dict[str, str] = {s.name: s.unit for s in STATE_VARIABLES}
DEFAULT_TRACES: tuple[str, ...] = ("v", "i_s", "i_f", "x")  # recorded unless the config says otherwise

CHANNELS: tuple[str, ...] = ("slow", "fast")  # receptor channels: NMDA-like, AMPA/GABA-like
POPULATIONS: tuple[str, ...] = ("E", "I")  # in index order: E neurons first


@dataclass(frozen=True)
class ProjectionSpec:
    """One projection pre → post (matrices are post × pre)."""

    name: str  # "pre->post", as configs and outputs spell it
    pre: str
    post: str
    plastic: bool  # bistable efficacies J ∈ {J_d, J_p} driven by L (else one fixed efficacy)
    field: str  # attribute of config.Projections (the name is its alias)
    description: str

    def efficacy_names(self) -> tuple[str, ...]:
        """Its entries of the parameter vector: per channel (slow, fast), J_d then J_p if plastic."""
        if self.plastic:
            return tuple(f"{self.name}_{level}_{ch}" for ch in CHANNELS for level in ("d", "p"))
        return tuple(f"{self.name}_{ch}" for ch in CHANNELS)


PROJECTIONS: tuple[ProjectionSpec, ...] = (
    ProjectionSpec("E->E", "E", "E", True, "EE", "excitatory to excitatory, plastic"),
    ProjectionSpec("E->I", "E", "I", False, "EI", "excitatory to inhibitory"),
    ProjectionSpec("I->E", "I", "E", False, "IE", "inhibitory to excitatory"),
    ProjectionSpec("I->I", "I", "I", False, "II", "inhibitory to inhibitory"),
)
PROJECTION_NAMES: tuple[str, ...] = tuple(p.name for p in PROJECTIONS)
PLASTIC: ProjectionSpec = next(p for p in PROJECTIONS if p.plastic)  # the engines' lazy L: exactly one
STATIC: tuple[ProjectionSpec, ...] = tuple(p for p in PROJECTIONS if not p.plastic)
if sum(p.plastic for p in PROJECTIONS) != 1:
    raise AssertionError("the engines implement exactly one plastic projection")


def projection(name: str) -> ProjectionSpec:
    """The projection called `name` (e.g. "E->I"); KeyError for an unknown one."""
    for p in PROJECTIONS:
        if p.name == name:
            return p
    raise KeyError(f"unknown projection {name!r} (known: {', '.join(PROJECTION_NAMES)})")


def projection_config(cfg: Config, proj: ProjectionSpec) -> PlasticProjection | StaticProjection:
    """The config section of `proj` (cfg.projections.EE for E->E, ...)."""
    out: PlasticProjection | StaticProjection = getattr(cfg.projections, proj.field)
    return out


# --- the packed parameter vector -------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One scalar of the packed parameter vector that the CPU and GPU kernels read by index."""

    name: str
    unit: str
    description: str


_EFFICACY_UNIT = "mV/ms"
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("dt", "ms", "time step"),
    Parameter("neg_alpha", "1/ms", "−α: drift of L at or below θ_X"),
    Parameter("beta", "1/ms", "β: drift of L at or above θ_X"),
    Parameter("zero", "1", "0 in the working dtype"),
    Parameter("theta_X", "1", "θ_X: L threshold of the efficacy switch"),
    Parameter("L_min", "1", "lower bound of L (0 when unbounded)"),
    Parameter("L_max", "1", "upper bound of L (0 when unbounded)"),
    Parameter("a_H", "1/ms", "Hebbian LTP rate"),
    Parameter("b_H", "1/ms", "Hebbian LTD rate"),
    Parameter("theta_LTP", "mV", "lower end of the LTP window of v"),
    Parameter("theta_LTD", "mV", "LTD gate: v at or below it"),
    *(
        Parameter(name, _EFFICACY_UNIT, f"{p.name} efficacy ({name.split('_', 1)[1]}), receptor scale applied")
        for p in PROJECTIONS
        for name in p.efficacy_names()
    ),
    Parameter("U", "1", "fraction of resources released per pulse step"),
    Parameter("tau_rec", "ms", "resource recovery time constant τ_rec"),
    Parameter("one", "1", "1 in the working dtype"),
)
PARAMETER_NAMES: tuple[str, ...] = tuple(p.name for p in PARAMETERS)
PARAMETER_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAMETER_NAMES)}

Scales = dict[str, tuple[float, float]]  # projection name → (slow_scale, fast_scale)


def efficacies(cfg: Config, scales: Mapping[str, tuple[float, float]]) -> dict[str, tuple[Any, Any]]:
    """Per projection, its (slow, fast) efficacies (mV/ms) with the receptor scales applied, as
    Python floats (each engine rounds them once to its dtype); plastic ones give (J_d, J_p) pairs."""
    out: dict[str, tuple[Any, Any]] = {}
    for p in PROJECTIONS:
        spec = projection_config(cfg, p)
        slow, fast = scales[p.name]
        if p.plastic:
            J_d, J_p = spec.J_d, spec.J_p  # type: ignore[union-attr]
            out[p.name] = ((slow * J_d, slow * J_p), (fast * J_d, fast * J_p))
        else:
            out[p.name] = (slow * spec.efficacy, fast * spec.efficacy)  # type: ignore[union-attr]
    return out


def parameter_values(cfg: Config, scales: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Every entry of the parameter vector by name, as Python floats (float64)."""
    pl = cfg.plasticity
    lo, hi = pl.bounds if pl.bounds is not None else (0.0, 0.0)
    values: dict[str, float] = {
        "dt": cfg.dt,
        "neg_alpha": -pl.alpha,
        "beta": pl.beta,
        "zero": 0.0,
        "theta_X": pl.theta_X,
        "L_min": lo,
        "L_max": hi,
        "a_H": pl.a_H,
        "b_H": pl.b_H,
        "theta_LTP": pl.theta_LTP,
        "theta_LTD": pl.theta_LTD,
        "U": cfg.stp.U,
        "tau_rec": cfg.stp.tau_rec,
        "one": 1.0,
    }
    eff = efficacies(cfg, scales)
    for p in PROJECTIONS:
        flat = [x for ch in eff[p.name] for x in (ch if p.plastic else (ch,))]
        values.update(zip(p.efficacy_names(), flat))
    return values


def pack_parameters(values: Mapping[str, float], dtype: np.dtype | type) -> np.ndarray:
    """The vector in PARAMETERS order, each value rounded once to `dtype` (as torch and numba
    round a Python float constant), so kernels compute with the same constants as dynamics.py."""
    missing = set(PARAMETER_NAMES) - set(values)
    if missing:
        raise KeyError(f"parameter vector: no value for {sorted(missing)}")
    return np.array([values[name] for name in PARAMETER_NAMES], dtype=np.float64).astype(dtype)


def unpack_parameters(vector: np.ndarray) -> dict[str, float]:
    """The inverse of `pack_parameters` (values as Python floats of the vector's dtype)."""
    if vector.shape != (len(PARAMETERS),):
        raise ValueError(f"parameter vector: shape {vector.shape}, expected ({len(PARAMETERS)},)")
    return {name: float(x) for name, x in zip(PARAMETER_NAMES, vector)}
