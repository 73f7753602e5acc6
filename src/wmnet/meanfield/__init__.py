"""Mean-field theory of a wmnet config: its stationary states, predicted (docs/meanfield.md).

from wmnet.config import load_config
from wmnet import meanfield
cfg = load_config("configs/working_memory_cpu.yaml")
for fp in meanfield.solve(cfg, g_in=0.6):
    print(fp.kind, fp.rates_hz, fp.stable)
sc = meanfield.scan(cfg, "g_in", np.linspace(0.2, 1, 41))
sc.boundary  # the smallest g_in where a stable selective state coexists with a stable spontaneous one
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from wmnet.config import Config, _format_validation_error, apply_override
from wmnet.errors import WmnetError
from wmnet.meanfield.build import (
    Potentiation,
    build_model,
    potentiation_matrix,
    snapshot_potentiation,
    synapses_potentiation,
)
from wmnet.meanfield.fixed_points import FixedPoint
from wmnet.meanfield.fixed_points import solve as solve_model  # noqa: F401 (used by report)
from wmnet.meanfield.theory import SLOW_NOISE, Model, Release, SlowNoise, pulse_steps, siegert, spread_rate

__all__ = [
    "FixedPoint",
    "Model",
    "Potentiation",
    "Release",
    "SLOW_NOISE",
    "Scan",
    "SlowNoise",
    "build",
    "measured_potentiation",
    "potentiation_matrix",
    "pulse_steps",
    "scan",
    "siegert",
    "solve",
    "spread_rate",
]

POTENTIATION_KEYS = ("g_in", "g_between", "g_to_nonselective", "g_from_nonselective", "g_nonselective")


def measured_potentiation(
    cfg: Config, connectivity: str | Path | None = None, synapses: str | Path | None = None
) -> np.ndarray | None:
    """g[post, pre] per E unit pair from a snapshot .npz or a run's synapses.h5 (or None)."""
    if connectivity is not None and synapses is not None:
        raise WmnetError("give --connectivity or --synapses, not both")
    if connectivity is not None:
        if not Path(connectivity).is_file():
            raise WmnetError(f"{connectivity}: no such file (expected a connectivity snapshot .npz)")
        return snapshot_potentiation(cfg, connectivity)
    if synapses is not None:
        return synapses_potentiation(cfg, synapses)
    return None


def build(
    cfg: Config,
    g_in: float | None = None,
    g_between: float | None = None,
    g_to_nonselective: float | None = None,
    g_from_nonselective: float | None = None,
    g_nonselective: float | None = None,
    measured: np.ndarray | None = None,
    slow_noise: SlowNoise = "fourcaud-brunel",
) -> Model:
    """The Model of `cfg`; the g_* (probabilities that an E→E synapse of that kind is potentiated)
    override `measured` (see measured_potentiation), which overrides the config's structure.
    `slow_noise`: how the slow current's noise enters the rate (theory.SLOW_NOISE)."""
    if slow_noise not in SLOW_NOISE:
        raise WmnetError(f"slow_noise {slow_noise!r}: one of {', '.join(SLOW_NOISE)}")
    pot = Potentiation(g_in, g_between, g_to_nonselective, g_from_nonselective, g_nonselective)
    return replace(build_model(cfg, pot, measured), slow_noise=slow_noise)


def solve(
    cfg: Config,
    *,
    max_active: int = 2,
    connectivity: str | Path | None = None,
    synapses: str | Path | None = None,
    slow_noise: SlowNoise = "fourcaud-brunel",
    **g: float | None,
) -> list[FixedPoint]:
    """Every fixed point of `cfg` with up to `max_active` groups active. Keywords g_in, g_between,
    g_to_nonselective, g_from_nonselective, g_nonselective set potentiated fractions."""
    _check_g(g)
    measured = measured_potentiation(cfg, connectivity, synapses)
    return solve_model(build(cfg, measured=measured, slow_noise=slow_noise, **g), max_active)


def _check_g(g: dict[str, Any]) -> None:
    for k in g:
        if k not in POTENTIATION_KEYS:
            raise WmnetError(f"unknown potentiation {k!r} (known: {', '.join(POTENTIATION_KEYS)})")


def with_value(cfg: Config, key: str, value: float) -> Config:
    """`cfg` with the dotted config field `key` set to `value` (validated; WmnetError names it)."""
    data = cfg.to_dict()
    data.pop("duration", None)  # a protocol sets it again
    apply_override(data, f"{key}={value!r}")
    try:
        new = Config.model_validate(data)
    except ValidationError as e:
        raise WmnetError(_format_validation_error(e, f"--scan {key}")) from None
    return new


def _get(d: dict[str, Any], key: str) -> Any:
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_scan_key(cfg: Config, key: str) -> None:
    """Raise WmnetError unless `key` is a g_* potentiation or a numeric config field."""
    if key in POTENTIATION_KEYS:
        return
    value = _get(cfg.to_dict(), key)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        known = ", ".join(POTENTIATION_KEYS)
        raise WmnetError(
            f"--scan {key}: not a numeric config field (a dotted key such as projections.E->E.J_p, or one of {known})"
        )


@dataclass
class Scan:
    """Fixed points along one parameter."""

    key: str
    values: np.ndarray
    points: list[list[FixedPoint]]
    bistable: np.ndarray = field(init=False)  # a stable selective state next to a stable spontaneous one

    def __post_init__(self) -> None:
        self.bistable = np.array(
            [
                any(fp.stable and fp.kind.startswith("selective") for fp in fps)
                and any(fp.stable and fp.kind == "spontaneous" for fp in fps)
                for fps in self.points
            ]
        )

    @property
    def boundaries(self) -> list[float]:
        """Parameter values where bistability starts or ends (midway between scan points)."""
        b = self.bistable.astype(int)
        idx = np.flatnonzero(np.diff(b))
        return [float((self.values[i] + self.values[i + 1]) / 2) for i in idx]

    @property
    def boundary(self) -> float | None:
        """The first boundary along the scan (None if bistability never starts or ends)."""
        return self.boundaries[0] if self.boundaries else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "values": self.values.tolist(),
            "bistable": self.bistable.tolist(),
            "boundaries": self.boundaries,
            "points": [
                {"value": float(v), "fixed_points": [fp.to_dict() for fp in fps]}
                for v, fps in zip(self.values, self.points)
            ],
        }


def scan(
    cfg: Config,
    key: str,
    values: np.ndarray | list[float],
    *,
    max_active: int = 1,
    connectivity: str | Path | None = None,
    synapses: str | Path | None = None,
    slow_noise: SlowNoise = "fourcaud-brunel",
    **g: float | None,
) -> Scan:
    """solve() at each value of `key` (a dotted config field or a g_* potentiation)."""
    _check_g(g)
    check_scan_key(cfg, key)
    values = np.asarray(values, dtype=float)
    measured = measured_potentiation(cfg, connectivity, synapses)
    points = []
    warm: dict[str, np.ndarray] = {}  # continuation from one value to the next
    for v in values:
        if key in POTENTIATION_KEYS:
            model = build(cfg, measured=measured, slow_noise=slow_noise, **{**g, key: float(v)})
        else:
            model = build(with_value(cfg, key, float(v)), measured=measured, slow_noise=slow_noise, **g)
        points.append(solve_model(model, max_active, warm=warm))
    return Scan(key, values, points)
