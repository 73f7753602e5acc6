"""Fixed points of ν = Φ(ν), their kinds and their stability."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from math import comb
from typing import Any

import numpy as np
from scipy.optimize import root

from wmnet.meanfield.theory import Model

ACTIVE_FACTOR = 2.0  # a group is "active" above 2× the quietest E unit's rate …
ACTIVE_MARGIN_HZ = 5.0  # … and at least this much above it


@dataclass
class FixedPoint:
    """A stationary state. Rates in Hz; μ, σ in mV; x the time-mean resources (fraction)."""

    kind: str  # "spontaneous", "selective:P1", "multi:P1+P2"
    rates_hz: dict[str, float]  # per unit, and "E": the size-weighted mean of the E units
    x: dict[str, float]
    mu: dict[str, float]
    sigma: dict[str, float]
    stable: bool
    max_eigenvalue: float  # largest real part of the linearised rate dynamics' eigenvalues (1/ms)
    multiplicity: int = 1  # states equivalent to this one by the groups' symmetry
    nu: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # per unit (1/ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rates_hz": self.rates_hz,
            "x": self.x,
            "mu": self.mu,
            "sigma": self.sigma,
            "stable": self.stable,
            "max_eigenvalue_per_ms": self.max_eigenvalue,
            "multiplicity": self.multiplicity,
        }


def _groups(model: Model) -> list[int]:
    """Indices of the prototype-group units (E units other than `nonselective`; none without groups)."""
    return [u for u, n in enumerate(model.names) if model.is_e[u] and n not in ("nonselective", "E")]


def _kind(model: Model, nu: np.ndarray) -> str:
    groups = _groups(model)
    e_units = [u for u in range(len(nu)) if model.is_e[u]]
    if not groups:
        return "spontaneous"
    ref = min(nu[u] for u in e_units) * 1000
    active = [model.names[u] for u in groups if nu[u] * 1000 > max(ACTIVE_FACTOR * ref, ref + ACTIVE_MARGIN_HZ)]
    if not active:
        return "spontaneous"
    return f"selective:{active[0]}" if len(active) == 1 else "multi:" + "+".join(active)


def _stability(model: Model, nu: np.ndarray) -> float:
    """Largest real part of the eigenvalues of τ⁻¹(−1 + ∂Φ/∂ν), τ = τ_m per unit (1/ms)."""
    jac = model.jacobian(nu)
    a = (jac - np.eye(len(nu))) / model.tau_m[:, None]
    return float(np.linalg.eigvals(a).real.max())


def _fixed_point(model: Model, nu: np.ndarray, multiplicity: int) -> FixedPoint:
    inp = model.inputs(nu)
    names = model.names
    e = model.is_e
    rates = {n: float(nu[u] * 1000) for u, n in enumerate(names)}
    if "E" not in rates:
        rates["E"] = float((nu[e] * model.size[e]).sum() / model.size[e].sum() * 1000)
    lam = _stability(model, nu)
    return FixedPoint(
        kind=_kind(model, nu),
        rates_hz=rates,
        x={n: float(inp["x"][u]) for u, n in enumerate(names)},
        mu={n: float(inp["mu"][u]) for u, n in enumerate(names)},
        sigma={n: float(inp["sigma"][u]) for u, n in enumerate(names)},
        stable=lam < 0,
        max_eigenvalue=lam,
        multiplicity=multiplicity,
        nu=nu,
    )


def _polish(model: Model, nu0: np.ndarray, expand: np.ndarray | None = None) -> np.ndarray | None:
    """Newton–Powell (MINPACK hybr) on ν = Φ(ν) in Hz from nu0; `expand` maps reduced variables to units."""
    E = np.eye(len(model.names)) if expand is None else expand
    rep = E.argmax(0)  # first unit of each block
    block_of = E.argmax(1)

    def f(r_hz: np.ndarray) -> np.ndarray:
        nu = E @ (np.abs(r_hz) / 1000)
        return model.phi(nu, rows=rep, block=block_of) * 1000 - np.abs(r_hz)

    x0 = (nu0 @ E / E.sum(0)) * 1000
    sol = root(f, x0, method="hybr", options={"xtol": 1e-10})
    res = f(sol.x)
    if not np.all(np.isfinite(res)) or np.abs(res).max() > 1e-6 * max(1.0, np.abs(sol.x).max()):
        return None
    nu = E @ (np.abs(sol.x) / 1000)
    full = model.phi(nu)
    if np.abs(full - nu).max() * 1000 > 1e-5 * max(1.0, nu.max() * 1000):
        return None
    return nu


def _symmetric(model: Model) -> bool:
    """Whether the prototype groups are interchangeable (equal inputs and couplings)."""
    g = _groups(model)
    if len(g) < 2:
        return True
    others = [u for u in range(len(model.names)) if u not in g]
    for m in (
        model.K_slow * model.J_slow,
        model.K_fast * model.J_fast,
        model.K_slow * model.J2_slow,
        model.K_fast * model.J2_fast,
    ):
        blk = m[np.ix_(g, g)]
        diag, off = np.diag(blk), blk[~np.eye(len(g), dtype=bool)]
        if np.ptp(diag) > 1e-12 * max(1, abs(diag).max()) or np.ptp(off) > 1e-12 * max(1, abs(off).max()):
            return False
        for o in others:
            if np.ptp(m[o, g]) > 1e-12 * max(1, abs(m[o, g]).max()) or np.ptp(m[g, o]) > 1e-12 * max(
                1, abs(m[g, o]).max()
            ):
                return False
    return bool(np.ptp(model.ext_mean[g]) < 1e-12 and np.ptp(model.ext_D[g]) < 1e-12)


def _sweep(
    model: Model, active: list[int], grid_hz: np.ndarray, warm: dict[str, np.ndarray] | None = None
) -> list[np.ndarray]:
    """All fixed points with the units `active` at one common rate and every other set of
    interchangeable units at its own: the rest is solved for each grid rate of the active set
    (vectorised Newton), and sign changes of Φ_active − ν_active bracket the fixed points."""
    M = len(model.names)
    groups = _groups(model)
    blocks: list[list[int]] = [active]
    inactive = [u for u in groups if u not in active]
    if inactive:
        blocks.append(inactive)
    blocks += [[u] for u in range(M) if u not in groups and u not in active]
    expand = np.zeros((M, len(blocks)))
    for b, us in enumerate(blocks):
        expand[us, b] = 1.0
    nb = len(blocks)
    G = grid_hz.size
    grid = grid_hz / 1000
    key = f"{len(active)}/{nb}/{G}"
    cold = np.tile(np.where(model.is_e[[blk[0] for blk in blocks[1:]]], 0.002, 0.008), (G, 1))
    # A continuation (scan) starts from the previous value's solution: a few steps then suffice.
    rest = warm[key] if warm is not None and key in warm else cold
    damped = 3 if rest is not cold else 25
    rep = np.array([blk[0] for blk in blocks])
    block_of = expand.argmax(1)  # unit → its block (= its row among rep)

    def rest_residual(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nu = np.concatenate([grid[:, None], r], axis=1) @ expand.T
        out = model.phi(nu, rows=rep, block=block_of)  # one representative per block
        return out[:, 1:] - r, out[:, 0]

    for _ in range(damped):  # damped iteration first: it settles on the rest's stable (low) branch
        F, _ = rest_residual(rest)
        rest = np.maximum(rest + 0.5 * F, 0.0)
    for _ in range(20):  # then Newton on the rest, all grid points at once
        F, _ = rest_residual(rest)
        if np.nanmax(np.abs(F)) < 1e-10:
            break
        h = np.maximum(rest * 1e-4, 1e-8)
        Jm = np.empty((G, nb - 1, nb - 1))
        for j in range(nb - 1):
            rp = rest.copy()
            rp[:, j] += h[:, j]
            Jm[:, :, j] = (rest_residual(rp)[0] - F) / h[:, j, None]
        with np.errstate(all="ignore"):
            step = np.linalg.solve(Jm, -F[..., None])[..., 0]
        step = np.where(np.isfinite(step), step, -0.5 * F)
        # Trust region: each rate moves by at most half its value or 2 Hz, and stays positive.
        limit = np.maximum(0.5 * rest, 0.002)
        scale = np.min(np.minimum(1.0, limit / np.maximum(np.abs(step), 1e-300)), axis=1)
        rest = np.maximum(rest + scale[:, None] * step, 0.0)
    F, out_active = rest_residual(rest)
    ok = np.all(np.abs(F) < 1e-8, axis=1)
    if warm is not None:
        warm[key] = np.where(ok[:, None], rest, cold)
    h_res = np.where(ok, out_active - grid, np.nan)
    found: list[np.ndarray] = []
    for i in range(G - 1):
        if not (ok[i] and ok[i + 1]) or np.sign(h_res[i]) == np.sign(h_res[i + 1]):
            continue
        w = h_res[i] / (h_res[i] - h_res[i + 1])
        start = np.concatenate([[grid[i] + w * (grid[i + 1] - grid[i])], rest[i] + w * (rest[i + 1] - rest[i])])
        nu = _polish(model, expand @ start, expand)
        if nu is not None:
            found.append(nu)
    return found


DEFAULT_GRID_HZ = np.concatenate([[0.0], np.geomspace(0.05, 470.0, 50)])


def solve(
    model: Model, max_active: int = 2, grid_hz: np.ndarray | None = None, warm: dict[str, np.ndarray] | None = None
) -> list[FixedPoint]:
    """Every fixed point found with up to `max_active` groups active (all of them: spontaneous,
    each group selective, combinations), deduplicated, spontaneous first. `warm`: a dict that
    carries the solution of the rest of the network from one call to the next (continuation)."""
    grid_hz = DEFAULT_GRID_HZ if grid_hz is None else grid_hz
    grid_hz = grid_hz[grid_hz < 1000 / model.t_ref.min()]
    groups = _groups(model)
    P = len(groups)
    found: list[tuple[np.ndarray, int]] = []
    if _symmetric(model):
        # q = 0 sweeps all groups together (its upper branch is "all groups active"), then q = 1, 2, …
        e_first = [u for u in range(len(model.names)) if model.is_e[u]][:1]
        sets = [(groups or e_first, 1)] + [(groups[:q], comb(P, q)) for q in range(1, min(max_active, P - 1) + 1)]
        for active, mult in sets:
            for nu in _sweep(model, active, grid_hz, warm):
                found.append((nu, mult))
    else:
        starts = [np.where(model.is_e, 0.002, 0.008)]
        for q in range(1, min(max_active, P) + 1):
            for act in combinations(groups, q):
                for hz in (30.0, 80.0, 200.0) if q == 1 else (60.0,):
                    s = starts[0].copy()
                    s[list(act)] = hz / 1000
                    starts.append(s)
        for s in starts:
            polished = _polish(model, s)
            if polished is not None:
                found.append((polished, 1))
    out: list[FixedPoint] = []
    for nu, mult in found:
        if any(np.allclose(nu, fp.nu, rtol=1e-4, atol=1e-7) for fp in out):
            continue
        fp = _fixed_point(model, nu, mult)
        if fp.kind == "spontaneous" or fp.kind.startswith("multi:") and len(fp.kind.split("+")) == P:
            fp.multiplicity = 1
        out.append(fp)
    order = {"spontaneous": 0, "selective": 1, "multi": 2}
    out.sort(key=lambda fp: (order[fp.kind.split(":")[0]], fp.kind.count("+"), fp.rates_hz["E"]))
    return out
