"""The lazy drift of L on the GPU (Triton device functions): exact replay, catch-up, switch log.

The E→E synapses of a silent neuron only drift, and `catch_up` (engines/kernels.py) brings them to
t_k when the neuron turns on, and all of them before they are read out (docs/model.md, "How the
event-driven engine stays exact"): `_drift` replays the drift bitwise as the CPU engine's
`cpu_plastic._drift_to`, jumping ahead where a jump is provably exact (`_grid_jump`);
`_catch_up_row` and `_catch_up_chunk` do it for a row or one block of it; `_log_events` counts
(and may keep) the switches, for `synapse_step` too.
`drift_probe` runs `_drift` alone, for tests. The arithmetic rules of engines/kernels.py's
docstring hold here too (no FMA: launch with `enable_fp_fusion=False`).
"""

from __future__ import annotations

import triton
import triton.language as tl

from wmnet import model

# The drift replay's indices into the packed parameter vector (model.PARAMETERS): kernels may read
# only constexpr globals. engines/kernels.py has the others.
_P = model.PARAMETER_INDEX
P_DT, P_NEG_ALPHA, P_BETA, P_ZERO, P_THX, P_LO, P_HI = (
    tl.constexpr(_P[n]) for n in ("dt", "neg_alpha", "beta", "zero", "theta_X", "L_min", "L_max")
)


@triton.jit
def _grid_jump(x, inc, budget, lo, hi, BOUNDED: tl.constexpr, MANT: tl.constexpr):
    """Vector form of cpu_plastic._grid_jump, in float64: (steps, target); steps 0 = take one step.

    Inside one binade the floats are lo_b + i·u and fl(L + inc) = L + r·u with r = inc/u
    rounded to nearest, so k steps land exactly on L + k·r·u while the partial sums stay in
    the binade and clear of the bounds. Ties and edges fall back to single steps.
    """
    bits = x.to(tl.int64, bitcast=True)
    ex_b = (bits >> 52) & 0x7FF  # biased exponent: |x| = 1.m · 2^(ex_b − 1023)
    usable = (x != 0.0) & (ex_b > MANT) & (ex_b < 0x7FF)
    if BOUNDED:
        usable = usable & (x >= lo) & (x <= hi)  # outside the bounds the next step clips first
    ex_s = tl.where(usable, ex_b, 1023)
    lo_b = (ex_s << 52).to(tl.float64, bitcast=True)  # 2^(ex_b − 1023)
    u = ((ex_s - MANT) << 52).to(tl.float64, bitcast=True)  # spacing of the binade's grid
    # 1/u, also a power of two: scaling by it is exact, and cheaper than dividing by u.
    inv_u = ((2046 + MANT - ex_s) << 52).to(tl.float64, bitcast=True)
    neg = x < 0.0
    ax = tl.abs(x)
    ainc = tl.where(neg, -inc, inc)
    q = ainc * inv_u
    fq = tl.floor(q)
    frac = q - fq
    tie = frac == 0.5
    r = tl.where(frac < 0.5, fq, fq + 1.0)
    ar = tl.maximum(tl.abs(r), 1.0)
    i0 = (ax - lo_b) * inv_u
    top = (tl.full(x.shape, 1023 + MANT, tl.int64) << 52).to(tl.float64, bitcast=True) - 1.0  # 2^MANT − 1
    room_i = tl.where(r > 0.0, top - i0, i0 - 1.0)  # grid steps to the binade's edge
    if BOUNDED:
        # Grid steps to the bound, less a margin of two increments (the CPU engine stops one
        # short; the second absorbs rounding in this product form).
        room_b = tl.where(inc > 0.0, hi - x, x - lo) * inv_u - 2.0 * ar
        room_i = tl.minimum(room_i, room_b)
    k = tl.floor(room_i / ar)
    bud = budget.to(tl.float64)
    k = tl.minimum(k, bud)
    frozen = r == 0.0  # the increment rounds away: L never moves again
    steps = tl.where(frozen, bud, tl.where(k < 1.0, 0.0, k))
    steps = tl.where(usable & ~tie, steps, 0.0)
    moved = ax + steps * r * u
    target = tl.where(frozen | (steps == 0.0), x, tl.where(neg, -moved, moved))
    return steps.to(tl.int64), target


@triton.jit
def _drift(L, gap, active, dt, neg_alpha, beta, zero, thx, lo, hi, BOUNDED: tl.constexpr, MANT: tl.constexpr):
    """Advance L by `gap` drift-only steps, bitwise as the stepwise reference (cpu_plastic._drift_to).

    Returns (L, at, direction): at ≥ 0 is the step (0..gap−1) of a drift-only crossing, which
    happens only from L = θ_X exactly; direction is ±1.
    """
    m = tl.zeros(L.shape, dtype=tl.int64)
    at = tl.full(L.shape, -1, dtype=tl.int64)
    direction = tl.zeros(L.shape, dtype=tl.int32)
    live = active & (m < gap)
    if BOUNDED:
        # Shortcut, still exact: a synapse below θ_X drifting down (above, up) whose exact
        # path overshoots the bound by more than the rounding of `gap` steps can contribute
        # (≤ one unit 2^-MANT·max(|L_min|, |L_max|, 1) per step) ends on the bound, stepwise too.
        g = gap.to(tl.float64)
        lo64 = lo.to(tl.float64)
        hi64 = hi.to(tl.float64)
        L64 = L.to(tl.float64)
        eps = (tl.full(L.shape, 1023 - MANT, tl.int64) << 52).to(tl.float64, bitcast=True)  # 2^-MANT
        unit = tl.maximum(tl.maximum(tl.abs(lo64), tl.abs(hi64)), 1.0) * eps
        fall = -(dt * neg_alpha).to(tl.float64)  # |increment| below θ_X
        rise = (dt * beta).to(tl.float64)  # increment above θ_X
        inside = (L >= lo) & (L <= hi)  # outside the bounds, the first clip may cross θ_X
        to_lo = live & inside & (L < thx) & (fall > 4.0 * unit) & (g * fall - (L64 - lo64) > 2.0 * g * unit)
        to_hi = live & inside & (L > thx) & (rise > 4.0 * unit) & (g * rise - (hi64 - L64) > 2.0 * g * unit)
        L = tl.where(to_lo, lo, tl.where(to_hi, hi, L))
        live = live & ~(to_lo | to_hi)
    while tl.max(live.to(tl.int32), axis=0) > 0:
        R = tl.where(L <= thx, neg_alpha, zero) + tl.where(L >= thx, beta, zero)
        inc = dt * R
        try_jump = live & (L != thx) & (m + 1 < gap)
        steps, target = _grid_jump(
            L.to(tl.float64), inc.to(tl.float64), gap - m, lo.to(tl.float64), hi.to(tl.float64), BOUNDED, MANT
        )
        jump = try_jump & (steps > 0)
        single = live & ~jump
        L_new = L + inc
        if BOUNDED:
            L_new = tl.minimum(tl.maximum(L_new, lo), hi)
        down = single & (L >= thx) & (thx > L_new)
        up = single & (L <= thx) & (thx < L_new)
        at = tl.where(up | down, m, at)
        direction = tl.where(up, 1, tl.where(down, -1, direction))
        stuck = single & (L_new == L)
        L = tl.where(jump, target.to(L.dtype), tl.where(single, L_new, L))
        m = tl.where(jump, m + steps, tl.where(single, m + 1, m))
        live = live & (m < gap) & ~stuck
    return L, at, direction


@triton.jit
def _log_events(ev_ptr, cnt_ptr, cap, mask, step, pre, post, direction, KEEP: tl.constexpr):
    """Count switches (cnt[1] up, cnt[2] down); with KEEP also store (step, pre, post, dir) rows.

    Switches are rare, so the branch keeps the counters' single addresses free of contention.
    """
    n_up = tl.sum((mask & (direction > 0)).to(tl.int64), axis=0)
    n_down = tl.sum((mask & (direction < 0)).to(tl.int64), axis=0)
    if n_up + n_down > 0:
        tl.atomic_add(cnt_ptr + 1, n_up)
        tl.atomic_add(cnt_ptr + 2, n_down)
        if KEEP:  # one atomic reserves the block's slots; a prefix sum places each event
            first = tl.atomic_add(cnt_ptr, n_up + n_down)
            slot = first + tl.cumsum(mask.to(tl.int64), axis=0) - 1
            ok = mask & (slot < cap)
            base = ev_ptr + slot * 4
            tl.store(base, step + tl.zeros(post.shape, dtype=tl.int64), mask=ok)
            tl.store(base + 1, pre + tl.zeros(post.shape, dtype=tl.int64), mask=ok)
            tl.store(base + 2, post.to(tl.int64), mask=ok)
            tl.store(base + 3, direction.to(tl.int64), mask=ok)


@triton.jit
def _catch_up(
    L,
    b,
    i,
    m,
    j,
    gap,
    last_j,
    prm_ptr,
    ev_ptr,
    cnt_ptr,
    ev_cap,
    BOUNDED: tl.constexpr,
    MANT: tl.constexpr,
    KEEP: tl.constexpr,
):
    """Drift synapses (L, bit b, post i, mask m, pre j) over `gap` silent steps.

    Returns the new (L, b); drift-only switches are logged at their own step.
    """
    dt = tl.load(prm_ptr + P_DT)
    L, at, direction = _drift(
        L,
        gap,
        m,
        dt,
        tl.load(prm_ptr + P_NEG_ALPHA),
        tl.load(prm_ptr + P_BETA),
        tl.load(prm_ptr + P_ZERO),
        tl.load(prm_ptr + P_THX),
        tl.load(prm_ptr + P_LO),
        tl.load(prm_ptr + P_HI),
        BOUNDED,
        MANT,
    )
    new_b = (direction > 0).to(b.dtype)
    flip = m & (at >= 0) & (b != new_b)
    _log_events(ev_ptr, cnt_ptr, ev_cap, flip, last_j + at, j, i, direction, KEEP)
    return L, tl.where(flip, new_b, b)


@triton.jit
def _ee_block(start, q1, ee_post, L_ptr, pot_ptr, BLOCK: tl.constexpr):
    """Synapses start..start+BLOCK−1 of a row ending at q1: (q, mask, post, L, potentiated bit)."""
    q = start + tl.arange(0, BLOCK)
    m = q < q1
    i = tl.load(ee_post + q, mask=m, other=0)
    L = tl.load(L_ptr + q, mask=m, other=0.0)
    b = tl.load(pot_ptr + q, mask=m, other=0)
    return q, m, i, L, b


@triton.jit
def _catch_up_row(
    j,
    k,
    ee_rowptr,
    ee_post,
    pot_ptr,
    L_ptr,
    last_ptr,
    prm_ptr,
    ev_ptr,
    cnt_ptr,
    ev_cap,
    BOUNDED: tl.constexpr,
    MANT: tl.constexpr,
    KEEP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Bring the E→E synapses of pre j to t_k (drift only); last[j] = k."""
    last_j = tl.load(last_ptr + j)
    gap = k - last_j
    if gap > 0:
        q0 = tl.load(ee_rowptr + j)
        q1 = tl.load(ee_rowptr + j + 1)
        for start in range(q0, q1, BLOCK):
            q, m, i, L, b = _ee_block(start, q1, ee_post, L_ptr, pot_ptr, BLOCK)
            L, b_new = _catch_up(L, b, i, m, j, gap, last_j, prm_ptr, ev_ptr, cnt_ptr, ev_cap, BOUNDED, MANT, KEEP)
            tl.store(L_ptr + q, L, mask=m)
            tl.store(pot_ptr + q, b_new, mask=m & (b_new != b))
        tl.store(last_ptr + j, k)


@triton.jit
def _catch_up_chunk(
    j,
    c,
    k,
    ee_rowptr,
    ee_post,
    pot_ptr,
    L_ptr,
    last_ptr,
    prm_ptr,
    ev_ptr,
    cnt_ptr,
    ev_cap,
    BOUNDED: tl.constexpr,
    MANT: tl.constexpr,
    KEEP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Block c of pre j's E→E synapses brought to t_k (drift only). last[j] is left alone: the
    other blocks of the row read it too, and `synapse_step` sets it next (j is active at t_k)."""
    last_j = tl.load(last_ptr + j)
    gap = k - last_j
    q1 = tl.load(ee_rowptr + j + 1)
    start = tl.load(ee_rowptr + j) + c * BLOCK
    if (gap > 0) & (start < q1):
        q, m, i, L, b = _ee_block(start, q1, ee_post, L_ptr, pot_ptr, BLOCK)
        L, b_new = _catch_up(L, b, i, m, j, gap, last_j, prm_ptr, ev_ptr, cnt_ptr, ev_cap, BOUNDED, MANT, KEEP)
        tl.store(L_ptr + q, L, mask=m)
        tl.store(pot_ptr + q, b_new, mask=m & (b_new != b))


@triton.jit
def drift_probe(
    L_ptr, at_ptr, dir_ptr, gap_ptr, prm_ptr, BOUNDED: tl.constexpr, MANT: tl.constexpr, BLOCK: tl.constexpr
):
    """Tests only: `_drift` on L[pid·BLOCK:(pid+1)·BLOCK] over gap[pid] steps.

    prm = (dt, −α, β, 0, θ_X, L_min, L_max) in the working dtype.
    """
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    gap = tl.load(gap_ptr + pid)
    L = tl.load(L_ptr + offs)
    L, at, direction = _drift(
        L,
        gap,
        offs >= 0,
        tl.load(prm_ptr),
        tl.load(prm_ptr + 1),
        tl.load(prm_ptr + 2),
        tl.load(prm_ptr + 3),
        tl.load(prm_ptr + 4),
        tl.load(prm_ptr + 5),
        tl.load(prm_ptr + 6),
        BOUNDED,
        MANT,
    )
    tl.store(L_ptr + offs, L)
    tl.store(at_ptr + offs, at)
    tl.store(dir_ptr + offs, direction)
