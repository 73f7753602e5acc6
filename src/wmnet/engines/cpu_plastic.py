"""The E→E synapses' L on the CPU (numba): exact lazy drift, catch-up, Hebbian step, switch log.

Between two spikes of its presynaptic neuron an E→E synapse's L only drifts, and the engine
brings it up to date when it is next needed (docs/model.md, "How the event-driven engine stays
exact"): `_drift_to` replays the drift bitwise as the stepwise reference, jumping ahead where a
jump is provably exact (`_grid_jump`); `_catch_up_range` settles a row's synapses that provably
end on a bound and replays the others (engines/gpu_drift.py is the GPU engine's twin of these).
`_ee_plastic_range` is an active neuron's row at t_k: catch-up, delivery, Hebbian step and
switches, which `_log_event` records.

These helpers are inlined into the kernels of engines/cpu_synapses.py, whose numba cache does not
see edits to this file: cpu_synapses keeps its checksum to detect that (see `_check_layout`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def _bits(typingctx, x):  # noqa: ANN001, ANN202
    """The IEEE bit pattern of a float64, as int64 (a register bitcast)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@intrinsic
def _float(typingctx, bits):  # noqa: ANN001, ANN202
    """The float64 whose IEEE bit pattern is `bits` (int64)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _grid_jump(L, inc, budget, lo, hi, bounded, mant_bits):  # noqa: ANN001, ANN202
    """How many of the next `budget` steps L ← fl(L + inc) can be taken at once, and where they lead.

    Exact, not a closed-form approximation: inside one binade [2^e, 2^(e+1)) the floats are
    the grid lo_b + i·u, and for L on that grid fl(L + inc) = L + r·u with r = inc/u rounded to
    nearest. So k steps give exactly L + k·r·u, as long as every partial sum stays inside the
    binade (and away from a bound, where clipping takes over). Ties (inc/u ending in .5, where
    round-half-even depends on L's last bit) and everything near an edge go back to single
    steps. Returns (steps, L as float64); steps = 0 means take one ordinary step.
    """
    x = float(L)
    ex_b = (_bits(x) >> 52) & 0x7FF  # biased exponent: |x| = 1.m·2^(ex_b − 1023)
    if x == 0.0 or ex_b <= mant_bits or ex_b == 0x7FF:
        return 0, x
    if bounded and not (float(lo) <= x <= float(hi)):
        return 0, x  # outside the bounds the next step clips first (possibly across θ_X)
    sign = 1.0 if x > 0.0 else -1.0  # rounding to nearest is symmetric: work on |x|
    ax, ainc = abs(x), sign * float(inc)
    # Powers of two straight from their bits (no libm calls): the binade's start 2^e, its
    # spacing u = 2^(e − mant) and 1/u, by which scaling is exact.
    lo_b = _float((ex_b) << 52)
    u = _float((ex_b - mant_bits) << 52)
    inv_u = _float((2046 + mant_bits - ex_b) << 52)
    q = ainc * inv_u
    fl = math.floor(q)
    if q - fl == 0.5:
        return 0, x
    r = fl if q - fl < 0.5 else fl + 1.0
    if r == 0.0:
        return budget, x  # the increment rounds away: L never moves again
    i0 = (ax - lo_b) * inv_u
    top = _float((1023 + mant_bits) << 52) - 1.0  # keep 1 ≤ i ≤ 2^p − 1: exact sums stay inside
    room = 0.0
    if bounded:
        room = (float(hi) - x) if inc > 0 else (x - float(lo))
    # The whole budget fits (the usual case): decided by exact integer-valued products, which
    # imply the divisions below would give k ≥ budget too, so the result is the same, cheaper.
    b = float(budget)
    if (b * r <= top - i0 if r > 0 else -b * r <= i0 - 1.0) and (not bounded or (b + 1.0) * abs(r) * u <= room):
        return budget, sign * (ax + b * r * u)
    k = math.floor((top - i0) / r) if r > 0 else math.floor((i0 - 1.0) / -r)
    if bounded:
        k = min(k, math.floor(room / (abs(r) * u)) - 1.0)  # stop short of the bound
    k = min(k, b)
    if k < 1.0:
        return 0, x
    return int(k), sign * (ax + k * r * u)


@numba.njit(cache=True, nogil=True, inline="always")
def _drift_to(Ls, q, n, dt, neg_alpha, beta, zero, thx, lo, hi, bounded, mant_bits):  # noqa: ANN001, ANN202
    """Advance Ls[q] by n drift-only steps (no Hebbian term). Returns (switch_step, direction).

    The result is bitwise the stepwise reference's: L lands exactly on θ_X's lattice
    neighbours, so a closed form that rounds differently would flip switch decisions. Steps
    are either replayed one by one or jumped over where the jump is provably exact
    (`_grid_jump`), so a replay costs O(binades), not O(n). Drift moves L away from θ_X, so it
    crosses only from L = θ_X exactly (R = β − α): then switch_step (0..n-1) and direction
    (−1 down if α > β, +1 up if β > α) say when and how; otherwise switch_step is −1.
    """
    at, direction = -1, 0
    L = Ls[q]
    m = 0
    while m < n:
        R = (neg_alpha if L <= thx else zero) + (beta if L >= thx else zero)
        inc = dt * R
        if L != thx and m + 1 < n:
            steps, target = _grid_jump(L, inc, n - m, lo, hi, bounded, mant_bits)
            if steps > 0:
                Ls[q] = target  # exact in the working dtype: it lies on L's grid
                L = Ls[q]
                m += steps
                continue
        L_new = L + inc
        if bounded:
            L_new = min(max(L_new, lo), hi)
        if L >= thx and thx > L_new:
            at, direction = m, -1
        elif L <= thx and thx < L_new:
            at, direction = m, 1
        m += 1
        if L_new == L:
            break
        L = L_new
    Ls[q] = L
    return at, direction


@numba.njit(cache=True, nogil=True, inline="always")
def _log_event(events, n_ev, max_events, step, pre, post, direction):  # noqa: ANN001, ANN202
    """Count the switch in the extra last row (ups, downs); keep it if the buffer has room."""
    events[max_events, 0 if direction > 0 else 1] += 1
    if n_ev < max_events:
        events[n_ev, 0] = step
        events[n_ev, 1] = pre
        events[n_ev, 2] = post
        events[n_ev, 3] = direction
    return n_ev + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _catch_up(
    q,
    j,
    i,
    gap,
    last_j,
    ee_L,
    pot,
    dp,
    bounded,
    mant_bits,
    events,
    n_ev,
    max_events,
):  # noqa: ANN001, ANN202
    """Drift synapse q (pre j, post i) over `gap` silent steps; apply and log a drift-only switch."""
    dt, neg_alpha, beta, zero, thx, lo, hi = dp  # (`_drift_params`)
    at, direction = _drift_to(ee_L, q, gap, dt, neg_alpha, beta, zero, thx, lo, hi, bounded, mant_bits)
    if at >= 0 and pot[q] != (direction > 0):
        pot[q] = 1 if direction > 0 else 0
        n_ev = _log_event(events, n_ev, max_events, last_j + at, j, i, direction)
    return n_ev


@numba.njit(cache=True, nogil=True, inline="always")
def _catch_up_range(
    q0,
    q1,
    j,
    gap,
    last_j,
    post,
    pot,
    ee_L,
    dp,
    bounded,
    mant_bits,
    events,
    n_ev,
    max_events,
    rest,
):  # noqa: ANN001, ANN202
    """Drift synapses q0..q1 of pre j over `gap` silent steps (a row shares its gap).

    First a branch-free pass that LLVM vectorises, exact like the GPU kernel's shortcut in
    `gpu_drift._drift`: L below θ_X drifting down (above, up) whose exact path overshoots the
    bound by more than the rounding of `gap` steps can contribute (≤ one unit
    2^-mant·max(|L_min|, |L_max|, 1) per step) ends on the bound, stepwise too, without crossing
    θ_X. The row's limits are computed once, with 3 units per step instead of the kernel's 2, so
    their float64 rounding cannot matter; L outside the bounds is left to the replay (its first
    clip may cross θ_X). This settles the synapses pinned on a bound and those that drift onto
    one, most of a row; `rest` marks the others, which `_catch_up` replays exactly one by one.
    """
    n = q1 - q0
    if not bounded:
        for q in range(q0, q1):
            n_ev = _catch_up(
                q,
                j,
                post[q],
                gap,
                last_j,
                ee_L,
                pot,
                dp,
                bounded,
                mant_bits,
                events,
                n_ev,
                max_events,
            )
        return n_ev
    dt, neg_alpha, beta, _, thx, lo, hi = dp
    Ls = ee_L[q0:q1]
    n_rest = 0
    g, lo64, hi64 = float(gap), float(lo), float(hi)
    unit = max(abs(lo64), abs(hi64), 1.0) * _float((1023 - mant_bits) << 52)
    fall, rise = -float(dt * neg_alpha), float(dt * beta)
    # (Increments ≥ 0.5 are left to the replay: the margin argument needs them small.)
    lo_lim = lo64 + g * fall - 3.0 * g * unit if 4.0 * unit < fall < 0.5 else -math.inf
    hi_lim = hi64 - g * rise + 3.0 * g * unit if 4.0 * unit < rise < 0.5 else math.inf
    for t in range(n):
        L = Ls[t]
        L64 = float(L)
        down = (L < thx) & (L64 >= lo64) & (L64 < lo_lim)
        up = (L > thx) & (L64 <= hi64) & (L64 > hi_lim)
        Ls[t] = lo if down else (hi if up else L)
        r = np.int32(not (down | up))
        rest[t] = r
        n_rest += r
    if n_rest:
        for t in range(n):
            if rest[t]:
                q = q0 + t
                n_ev = _catch_up(
                    q,
                    j,
                    post[q],
                    gap,
                    last_j,
                    ee_L,
                    pot,
                    dp,
                    bounded,
                    mant_bits,
                    events,
                    n_ev,
                    max_events,
                )
    return n_ev


@numba.njit(cache=True, nogil=True, inline="always")
def _ee_plastic_range(
    q0,
    q1,
    j,
    k,
    gap,
    last_j,
    s,
    post,
    pot,
    ee_L,
    acc,
    jtab,
    f,
    dp,
    bounded,
    mant_bits,
    events,
    n_ev,
    max_events,
    f_row,
    cross,
):  # noqa: ANN001, ANN202
    """E→E synapses q0..q1 of active pre j in one channel: catch up, deliver J(t_k)·s, learn.

    Three passes, so that the Hebbian one vectorises (a gather or a rare branch in it stops
    LLVM): (1) catch-up (`_catch_up_range`), delivery (a scatter-add) and a copy of each
    target's f into `f_row`;
    (2) the Hebbian step of L over contiguous arrays, branch-free, noting in `cross` whether L
    crossed θ_X upwards (1) or downwards (2); (3) only where something crossed, step 9's
    switches and their log. `f_row` and `cross` are scratch rows as long as the longest row.
    """
    if gap > 0:
        n_ev = _catch_up_range(
            q0,
            q1,
            j,
            gap,
            last_j,
            post,
            pot,
            ee_L,
            dp,
            bounded,
            mant_bits,
            events,
            n_ev,
            max_events,
            cross,
        )
    for q in range(q0, q1):
        i = post[q]
        acc[i] += jtab[pot[q]] * s
        f_row[q - q0] = f[i]
    dt, neg_alpha, beta, zero, thx, lo, hi = dp
    n = q1 - q0
    Ls = ee_L[q0:q1]
    crossed = 0
    for t in range(n):  # `bounded` is loop-invariant: LLVM unswitches it and still vectorises
        L = Ls[t]
        R = (neg_alpha if L <= thx else zero) + (beta if L >= thx else zero)
        L_new = L + dt * (R + f_row[t])
        if bounded:
            L_new = min(max(L_new, lo), hi)
        c = np.int32((L <= thx) and (thx < L_new)) | (np.int32((L >= thx) and (thx > L_new)) << 1)
        cross[t] = c
        crossed |= c
        Ls[t] = L_new
    if crossed:
        for t in range(n):
            c = cross[t]
            q = q0 + t
            if c == 1 and pot[q] == 0:
                pot[q] = 1
                n_ev = _log_event(events, n_ev, max_events, k, j, post[q], 1)
            elif c == 2 and pot[q] == 1:
                pot[q] = 0
                n_ev = _log_event(events, n_ev, max_events, k, j, post[q], -1)
    return n_ev
