"""The sweep file: read it, expand it into points, validate every point's config.

    base: working_memory_cpu.yaml        # optional; relative to the sweep file
    set: {duration: 2000}                # fixed overrides for every point
    grid: {stp.U: [0.05, 0.1]}           # the Cartesian product
    zip: {a: [1, 2], b: [3, 4]}          # lists that vary together
    random: {n: 4, uniform: {k: [lo, hi]}, log_uniform: {k: [lo, hi]}}
    seed: 0                              # the sweep's seed: the random draws
    seeds: [0, 1]                        # replicates of every point (the config's `seed`)

The points are grid × zip × random (each part that is absent counts as one empty point), then
× seeds. Every point is a list of `key=value` overrides applied after `set`, exactly as
`wmnet run BASE --set ...` would apply them. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wmnet.config import Config, load_config
from wmnet.errors import WmnetError

KEYS = ("base", "set", "grid", "zip", "random", "seed", "seeds")
RANDOM_KEYS = ("n", "uniform", "log_uniform")
RANDOM_DIGITS = 6  # significant digits kept of a random draw: readable names, exact configs
NAME_PART_MAX = 120  # characters of a point name's readable part


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its folder name, the swept values and the seed."""

    index: int
    params: dict[str, Any]  # swept key -> value (grid, zip and random keys)
    seed: int | None  # None: the config's own seed (no `seeds` list)

    @property
    def key(self) -> str:
        """Identity of the point across reruns (values and seed, canonical JSON)."""
        return json.dumps({"params": self.params, "seed": self.seed}, sort_keys=True)

    def overrides(self, fixed: dict[str, Any]) -> list[str]:
        """`key=value` assignments: the sweep's `set`, then the swept values, then the seed."""
        out = [f"{k}={_yaml_value(v)}" for k, v in fixed.items()]
        out += [f"{k}={_yaml_value(v)}" for k, v in self.params.items()]
        if self.seed is not None:
            out.append(f"seed={self.seed}")
        return out

    @property
    def name(self) -> str:
        """p0007_stp.U=0.1,projections.E-_E.J_p=0.4,seed=1: an index (unique) and a readable part."""
        readable = ",".join(f"{k}={_short(v)}" for k, v in self.params.items())[:NAME_PART_MAX]
        if self.seed is not None:  # kept whole: the values may be cut, the seed never
            readable += ("," if readable else "") + f"seed={self.seed}"
        readable = re.sub(r"[^A-Za-z0-9._=,+-]", "_", readable)
        return f"p{self.index:04d}" + (f"_{readable}" if readable else "")


@dataclass
class SweepSpec:
    """A parsed sweep file (see the module docstring)."""

    source: str  # the file (or "sweep") for error messages
    base: Path | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # the file's `set`
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zipped: dict[str, list[Any]] = field(default_factory=dict)
    random_n: int = 0
    uniform: dict[str, tuple[float, float]] = field(default_factory=dict)
    log_uniform: dict[str, tuple[float, float]] = field(default_factory=dict)
    seed: int = 0
    seeds: list[int] | None = None

    def canonical(self) -> dict[str, Any]:
        """The spec as plain data (base as an absolute path), written to DIR/sweep.yaml."""
        return {
            "base": None if self.base is None else str(self.base),
            "set": self.fixed,
            "grid": self.grid,
            "zip": self.zipped,
            "random": {
                "n": self.random_n,
                "uniform": {k: list(v) for k, v in self.uniform.items()},
                "log_uniform": {k: list(v) for k, v in self.log_uniform.items()},
            },
            "seed": self.seed,
            "seeds": self.seeds,
        }

    @property
    def swept_keys(self) -> list[str]:
        return [*self.grid, *self.zipped, *self.uniform, *self.log_uniform]

    def points(self) -> list[Point]:
        """grid × zip × random, then × seeds, in that order (the last key varies fastest)."""
        grid = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        n_zip = len(next(iter(self.zipped.values()))) if self.zipped else 1
        zipped = [{k: v[i] for k, v in self.zipped.items()} for i in range(n_zip)]
        drawn = self._draws()
        seeds: list[int | None] = list(self.seeds) if self.seeds is not None else [None]
        out: list[Point] = []
        for g, z, r, s in itertools.product(grid, zipped, drawn, seeds):
            out.append(Point(len(out), {**g, **z, **r}, s))
        return out

    def _draws(self) -> list[dict[str, Any]]:
        """`random.n` points, uniform or log-uniform in their ranges, from the sweep's seed."""
        if not self.random_n:
            return [{}]
        rng = np.random.default_rng(self.seed)
        keys = [*self.uniform, *self.log_uniform]
        draws: list[dict[str, Any]] = []
        for _ in range(self.random_n):
            u = rng.random(len(keys))
            row: dict[str, Any] = {}
            for j, k in enumerate(keys):
                if k in self.uniform:
                    lo, hi = self.uniform[k]
                    row[k] = _round(lo + u[j] * (hi - lo))
                else:
                    lo, hi = self.log_uniform[k]
                    row[k] = _round(math.exp(math.log(lo) + u[j] * (math.log(hi) - math.log(lo))))
            draws.append(row)
        return draws


def _round(x: float) -> float:
    return float(f"{x:.{RANDOM_DIGITS}g}")


def _yaml_value(v: Any) -> str:
    """A value as --set writes it: JSON is YAML (strings quoted, so '1' stays a string)."""
    return json.dumps(v)


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v


def _lists(value: Any, where: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WmnetError(f"{where}: expected a mapping of dotted.key: [values]")
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise WmnetError(f"{where}: key {k!r} is not a dotted config key")
        if not isinstance(v, list) or not v:
            raise WmnetError(f"{where}.{k}: expected a non-empty list of values")
    return dict(value)


def _ranges(value: Any, where: str, positive: bool) -> dict[str, tuple[float, float]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WmnetError(f"{where}: expected a mapping of dotted.key: [low, high]")
    out: dict[str, tuple[float, float]] = {}
    for k, v in value.items():
        ok = (
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        )
        if not ok or v[0] > v[1]:
            raise WmnetError(f"{where}.{k}: expected [low, high] with low <= high (finite numbers)")
        if positive and v[0] <= 0:
            raise WmnetError(f"{where}.{k}: a log-uniform range needs low > 0")
        out[str(k)] = (float(v[0]), float(v[1]))
    return out


def parse_sweep(data: dict[str, Any], source: str = "sweep", root: Path | None = None) -> SweepSpec:
    """A SweepSpec from the sweep file's mapping; `root` is the folder `base` is relative to."""
    if not isinstance(data, dict):
        raise WmnetError(f"{source}: expected a mapping with keys {', '.join(KEYS)}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise WmnetError(f"{source}: {unknown[0]}: unknown key (known: {', '.join(KEYS)})")
    spec = SweepSpec(source)
    base = data.get("base")
    if base is not None:
        if not isinstance(base, str):
            raise WmnetError(f"{source}: base: expected a config file name")
        p = Path(base)
        spec.base = (p if p.is_absolute() else (root or Path.cwd()) / p).resolve()
        if not spec.base.is_file():
            raise WmnetError(f"{source}: base: {spec.base} is not a file")
    fixed = data.get("set") or {}
    if not isinstance(fixed, dict):
        raise WmnetError(f"{source}: set: expected a mapping of dotted.key: value")
    spec.fixed = {str(k): v for k, v in fixed.items()}
    spec.grid = _lists(data.get("grid"), f"{source}: grid")
    spec.zipped = _lists(data.get("zip"), f"{source}: zip")
    lengths = {k: len(v) for k, v in spec.zipped.items()}
    if len(set(lengths.values())) > 1:
        raise WmnetError(
            f"{source}: zip: the lists must have one length (got "
            + ", ".join(f"{k}: {n}" for k, n in lengths.items())
            + ")"
        )
    rnd = data.get("random") or {}
    if not isinstance(rnd, dict) or any(k not in RANDOM_KEYS for k in rnd):
        raise WmnetError(f"{source}: random: expected a mapping with keys {', '.join(RANDOM_KEYS)}")
    n = rnd.get("n", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise WmnetError(f"{source}: random.n: expected a count >= 0")
    spec.random_n = n
    spec.uniform = _ranges(rnd.get("uniform"), f"{source}: random.uniform", False)
    spec.log_uniform = _ranges(rnd.get("log_uniform"), f"{source}: random.log_uniform", True)
    if n and not (spec.uniform or spec.log_uniform):
        raise WmnetError(f"{source}: random: n = {n} but no uniform or log_uniform ranges")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise WmnetError(f"{source}: seed: expected an integer >= 0 (the random draws' seed)")
    spec.seed = seed
    seeds = data.get("seeds")
    if seeds is not None:
        if (
            not isinstance(seeds, list)
            or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        ):
            raise WmnetError(f"{source}: seeds: expected a non-empty list of integers >= 0")
        if len(set(seeds)) != len(seeds):
            raise WmnetError(f"{source}: seeds: a seed is listed twice")
        spec.seeds = list(seeds)
    keys = spec.swept_keys
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise WmnetError(f"{source}: {twice[0]} is swept twice (in more than one of grid, zip, random)")
    if "seed" in keys or "seed" in spec.fixed:
        raise WmnetError(f"{source}: seed: sweep seeds with `seeds: [...]`, not as a config key")
    return spec


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and parse a sweep file (YAML); errors name the file and key."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as e:
        raise WmnetError(f"{p}: cannot read sweep file ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise WmnetError(f"{p}: malformed YAML: {getattr(e, 'problem', e)}") from None
    return parse_sweep(data or {}, str(p), p.parent)


def point_config(spec: SweepSpec, point: Point) -> Config:
    """The point's config: base, then set, then the swept values and seed (as --set would)."""
    return load_config(spec.base, point.overrides(spec.fixed))


def validate(spec: SweepSpec) -> list[tuple[Point, Config]]:
    """Every point with its validated config; the first bad one stops it, naming key and point."""
    points = spec.points()
    out = []
    for p in points:
        try:
            out.append((p, point_config(spec, p)))
        except WmnetError as e:
            what = ", ".join(f"{k}={_short(v)}" for k, v in p.params.items())
            if p.seed is not None:
                what += (", " if what else "") + f"seed={p.seed}"
            raise WmnetError(f"{spec.source}: point {p.name} ({what or 'no swept values'}): {e}") from None
    return out


def config_hash(cfg: Config) -> str:
    """sha256 of the point's config.yaml text: what decides whether a point changed."""
    return hashlib.sha256(cfg.to_yaml().encode()).hexdigest()
