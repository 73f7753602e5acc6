"""The lazy drift replay (`_drift_to`, with exact grid jumps) is bitwise the stepwise update.

The stepwise oracle here is plain numpy in the working dtype: L ← clip(L + dt·R(L)) n times.
"""

from __future__ import annotations

import numpy as np
import pytest

from wmnet.engines.cpu_plastic import _catch_up_range, _drift_to

ALPHA, BETA, THX, DT = 0.0147, 0.01, 0.4, 0.1


def stepwise(
    L: float, n: int, dtype: type, bounds: tuple[float, float] | None, alpha: float = ALPHA, beta: float = BETA
) -> tuple[float, int, int]:
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


def lazy(
    L: float, n: int, dtype: type, bounds: tuple[float, float] | None, alpha: float = ALPHA, beta: float = BETA
) -> tuple[float, int, int]:
    c = dtype
    Ls: np.ndarray = np.array([L], dtype=dtype)
    lo, hi = bounds if bounds is not None else (0.0, 0.0)
    at, direction = _drift_to(
        Ls, 0, n, c(DT), c(-alpha), c(beta), c(0), c(THX), c(lo), c(hi), bounds is not None, int(np.finfo(dtype).nmant)
    )
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), None, (0.1, 0.9), (0.0, 0.3)])
def test_row_catch_up_is_bitwise_stepwise(dtype: type, bounds: tuple[float, float] | None) -> None:
    """The engine's per-row catch-up (a vectorised shortcut to the bounds, then exact replays of
    the rest) against the stepwise oracle, synapse by synapse, switches included."""
    rng = np.random.default_rng(2)
    L0 = np.concatenate([rng.uniform(-0.2, 1.2, 400), [0.0, 1.0, 0.1, 0.9, 0.3, THX, 0.4000001, 0.3999999]])
    L0 = np.concatenate([L0, rng.choice([0.0, 1.0], 200)]).astype(dtype)
    lo, hi = bounds if bounds is not None else (0.0, 0.0)
    c = dtype
    for gap in (1, 2, 31, 54, 333, 2000):
        Ls, pot = L0.copy(), (L0 >= c(THX)).astype(np.uint8)
        post = np.arange(L0.size, dtype=np.int32)
        events = np.zeros((L0.size + 1, 4), dtype=np.int64)
        rest = np.zeros(L0.size, dtype=np.int32)
        n_ev = _catch_up_range(
            0,
            L0.size,
            7,
            gap,
            100,
            post,
            pot,
            Ls,
            (c(DT), c(-ALPHA), c(BETA), c(0), c(THX), c(lo), c(hi)),  # dp: `_drift_params` of the engine
            bounds is not None,
            int(np.finfo(dtype).nmant),
            events,
            0,
            L0.size,
            rest,
        )
        expect = [stepwise(float(L), gap, dtype, bounds) for L in L0]
        assert [float(x) for x in Ls] == [float(e[0]) for e in expect], gap
        switched = [
            (100 + e[1], q, e[2]) for q, e in enumerate(expect) if e[1] >= 0 and (L0[q] >= c(THX)) != (e[2] > 0)
        ]
        assert switched  # θ_X itself is among the starts
        assert [tuple(ev) for ev in events[:n_ev, [0, 2, 3]]] == switched, gap
        if bounds == (0.0, 1.0) and gap >= 333:
            assert rest.sum() < L0.size // 2  # the vector shortcut took most of them
