"""The lazy drift replay (`_drift_to`, with exact grid jumps) is bitwise the stepwise update.

The stepwise oracle here is plain numpy in the working dtype: L ← clip(L + dt·R(L)) n times.
"""

from __future__ import annotations

import numpy as np
import pytest

from wmnet.engines.sparse import _drift_to

ALPHA, BETA, THX, DT = 0.0147, 0.01, 0.4, 0.1


def stepwise(L: float, n: int, dtype: type, bounds: tuple[float, float] | None,
             alpha: float = ALPHA, beta: float = BETA) -> tuple[float, int, int]:
    c = dtype
    L, dt, thx = c(L), c(DT), c(THX)
    at, direction = -1, 0
    for m in range(n):
        R = (c(-alpha) if L <= thx else c(0)) + (c(beta) if L >= thx else c(0))
        new = L + dt * R
        if bounds is not None:
            new = min(max(new, c(bounds[0])), c(bounds[1]))
        if L >= thx > new:
            at, direction = m, -1
        elif L <= thx < new:
            at, direction = m, 1
        L = new
    return L, at, direction


def lazy(L: float, n: int, dtype: type, bounds: tuple[float, float] | None,
         alpha: float = ALPHA, beta: float = BETA) -> tuple[float, int, int]:
    c = dtype
    Ls = np.array([L], dtype=dtype)
    lo, hi = bounds if bounds is not None else (0.0, 0.0)
    at, direction = _drift_to(Ls, 0, n, c(DT), c(-alpha), c(beta), c(0), c(THX), c(lo), c(hi),
                              bounds is not None, int(np.finfo(dtype).nmant))
    return Ls[0], at, direction


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), None, (0.1, 0.9), (0.0, 0.3)])  # last: θ_X above L_max
def test_replay_is_bitwise_stepwise(dtype: type, bounds: tuple[float, float] | None) -> None:
    rng = np.random.default_rng(1)
    starts = list(rng.uniform(-0.5, 1.5, 300)) + [0.0, 1.0, THX, 0.25, 0.5, 0.125, 0.3999999, 0.4000001]
    # Values on the learning lattice, as the network produces them (exactly 1 minus Hebbian steps).
    starts += [float(dtype(1) - dtype(k) * dtype(DT) * dtype(0.17 - BETA)) for k in range(40)]
    for L0 in starts:
        for n in (1, 2, 7, 50, 333, 2000):
            assert lazy(L0, n, dtype, bounds) == stepwise(L0, n, dtype, bounds), (L0, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_switch_from_theta_exactly_both_directions(dtype: type) -> None:
    assert lazy(THX, 5, dtype, (0.0, 1.0))[1:] == (0, -1)  # α > β: down
    up = lazy(THX, 5, dtype, (0.0, 1.0), alpha=0.01, beta=0.0147)
    assert up == stepwise(THX, 5, dtype, (0.0, 1.0), alpha=0.01, beta=0.0147)
    assert up[1:] == (0, 1)  # β > α: up
