"""The event-driven sparse engine (CPU, numba).

Per step, only the outgoing synapses of neurons with σ = 1 are touched:
- static projections add one efficacy per projection and channel times s_j to their targets;
- E→E synapses are brought up to date lazily (docs/model.md, "How the event-driven engine stays
  exact"): L drifts
  from the presynaptic neuron's last update to t_k (settled on a bound where it provably ends
  there, otherwise replayed exactly: `_catch_up_range`, `_drift_to`), the synapse delivers its
  current with J(t_k), then takes the Hebbian step to t_{k+1} and may switch.

Neuron dynamics repeat `dynamics.released`, `hebbian_factor` and `advance` operation for
operation in two fused numba loops (bitwise the same: tests/test_terms.py), so only the synaptic
sums differ from the reference engine. Memory per synapse: the post index (uint16 for
populations up to 65,536 neurons, else int32) for static synapses; that + sizeof(L) + 1
(potentiated bit as uint8) for E→E synapses.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba.core import types
from numba.extending import intrinsic

from wmnet import model
from wmnet.connectivity import Connectivity, SynapseState
from wmnet.dynamics import NeuronState
from wmnet.engines.base import Engine, neuron_tensors
from wmnet.model import Scales
from wmnet.network import Network

# Indices into the packed parameter vector (model.PARAMETERS). numba freezes globals into the
# compiled code, and its disk cache is keyed by this file only: `_layout` lets the engine detect
# kernels cached under another layout of the schema (see `_check_layout`).
EE = model.PLASTIC.name
_P = model.PARAMETER_INDEX
_DT, _NEG_ALPHA, _BETA, _ZERO, _THX, _LO, _HI = (
    _P[n] for n in ("dt", "neg_alpha", "beta", "zero", "theta_X", "L_min", "L_max")
)
_TH_LTP, _TH_LTD, _AH, _BH, _ONE = (_P[n] for n in ("theta_LTP", "theta_LTD", "a_H", "b_H", "one"))
_U, _TAU_REC = _P["U"], _P["tau_rec"]
_EE_SLOW, _EE_FAST = _P["E->E_d_slow"], _P["E->E_d_fast"]  # J_d, then J_p at the next index
_EI, _IE, _II = _P["E->I_slow"], _P["I->E_slow"], _P["I->I_slow"]  # slow; fast at the next index
_LAYOUT = (
    *(_DT, _NEG_ALPHA, _BETA, _ZERO, _THX, _LO, _HI, _TH_LTP, _TH_LTD, _AH, _BH, _ONE, _U, _TAU_REC),
    *(_EE_SLOW, _EE_FAST, _EI, _IE, _II, len(_P)),
)


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
def _drift_params(prm):  # noqa: ANN001, ANN202
    """(dt, −α, β, 0, θ_X, L_min, L_max) from the parameter vector: the drift replay's constants,
    as a tuple that stays in registers through the inlined helpers."""
    return prm[_DT], prm[_NEG_ALPHA], prm[_BETA], prm[_ZERO], prm[_THX], prm[_LO], prm[_HI]


@numba.njit(cache=True)
def _layout():  # noqa: ANN202
    """The parameter indices compiled into this module's kernels (compared with the schema's)."""
    return _LAYOUT


def _check_layout() -> None:
    """Cached kernels compiled under another parameter layout would read the wrong constants."""
    if tuple(_layout()) != _LAYOUT:
        raise RuntimeError(
            "engines/sparse.py: numba's cache holds kernels compiled for another layout of "
            "model.PARAMETERS; delete src/wmnet/engines/__pycache__ (or touch sparse.py) and rerun"
        )


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
def _static_push(j, s, rowptr, split, post, post_off, j_slow, j_fast, acc_slow, acc_fast):  # noqa: ANN001, ANN202
    ws = j_slow * s
    for q in range(rowptr[j], split[j]):
        acc_slow[post_off + post[q]] += ws
    wf = j_fast * s
    for q in range(split[j], rowptr[j + 1]):
        acc_fast[post_off + post[q]] += wf


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
    `kernels._drift`: L below θ_X drifting down (above, up) whose exact path overshoots the
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


@numba.njit(cache=True, nogil=True)
def _step_synapses(
    j_lo,
    j_hi,
    k,
    sigma,
    x,
    n_e,
    ee_rowptr,
    ee_split,
    ee_post,
    ee_pot,
    ee_L,
    last,
    ei_rowptr,
    ei_split,
    ei_post,
    ie_rowptr,
    ie_split,
    ie_post,
    ii_rowptr,
    ii_split,
    ii_post,
    prm,
    plastic,
    bounded,
    mant_bits,
    f,
    acc_slow,
    acc_fast,
    events,
    max_events,
    f_row,
    cross,
):  # noqa: ANN001, ANN202
    """Accumulate Σ_j J_ij s_j into acc_* and advance E→E synapses of active pre j_lo ≤ j < j_hi.

    prm is the packed parameter vector (model.PARAMETERS, working dtype); plastic, bounded and
    mant_bits (the dtype's mantissa bits) are the switches the GPU kernels take as constants.
    Returns the number of switch events; events[:min(count, max_events)] holds them as
    (step, pre, post, direction).
    """
    # [J_d, J_p] of each E→E channel, indexed by the potentiated bit (no branch).
    jtab_slow = prm[_EE_SLOW : _EE_SLOW + 2]
    jtab_fast = prm[_EE_FAST : _EE_FAST + 2]
    ei_slow, ei_fast = prm[_EI], prm[_EI + 1]
    ie_slow, ie_fast = prm[_IE], prm[_IE + 1]
    ii_slow, ii_fast = prm[_II], prm[_II + 1]
    dp = _drift_params(prm)
    n_ev = 0
    for j in range(j_lo, j_hi):
        if not sigma[j]:
            continue
        s = x[j]
        if j < n_e:
            _static_push(j, s, ei_rowptr, ei_split, ei_post, n_e, ei_slow, ei_fast, acc_slow, acc_fast)
            q0, qs, q1 = ee_rowptr[j], ee_split[j], ee_rowptr[j + 1]
            if plastic:
                gap = k - last[j]
                n_ev = _ee_plastic_range(
                    q0,
                    qs,
                    j,
                    k,
                    gap,
                    last[j],
                    s,
                    ee_post,
                    ee_pot,
                    ee_L,
                    acc_slow,
                    jtab_slow,
                    f,
                    dp,
                    bounded,
                    mant_bits,
                    events,
                    n_ev,
                    max_events,
                    f_row,
                    cross,
                )
                n_ev = _ee_plastic_range(
                    qs,
                    q1,
                    j,
                    k,
                    gap,
                    last[j],
                    s,
                    ee_post,
                    ee_pot,
                    ee_L,
                    acc_fast,
                    jtab_fast,
                    f,
                    dp,
                    bounded,
                    mant_bits,
                    events,
                    n_ev,
                    max_events,
                    f_row,
                    cross,
                )
                last[j] = k + 1
            else:
                for q in range(q0, qs):
                    acc_slow[ee_post[q]] += jtab_slow[ee_pot[q]] * s
                for q in range(qs, q1):
                    acc_fast[ee_post[q]] += jtab_fast[ee_pot[q]] * s
        else:
            jj = j - n_e
            _static_push(jj, s, ie_rowptr, ie_split, ie_post, 0, ie_slow, ie_fast, acc_slow, acc_fast)
            _static_push(jj, s, ii_rowptr, ii_split, ii_post, n_e, ii_slow, ii_fast, acc_slow, acc_fast)
    return n_ev


@numba.njit(cache=True, nogil=True)
def _run_chunk(
    c,
    bounds,
    k,
    sigma,
    x,
    n_e,
    ee_rowptr,
    ee_split,
    ee_post,
    ee_pot,
    ee_L,
    last,
    ei_rowptr,
    ei_split,
    ei_post,
    ie_rowptr,
    ie_split,
    ie_post,
    ii_rowptr,
    ii_split,
    ii_post,
    prm,
    plastic,
    bounded,
    mant_bits,
    f,
    acc_slow,
    acc_fast,
    events,
    max_events,
    n_ev,
    f_row,
    cross,
):  # noqa: ANN001, ANN202
    """`_step_synapses` on chunk c: presynaptic neurons bounds[c]..bounds[c+1]−1.

    Chunk c writes only its own rows acc_*[c], events[c], n_ev[c] and the synapses of its own
    presynaptic neurons, so chunks can run in parallel without races, and the caller sums acc_*
    in chunk order: the result depends on the number of chunks, never on the number of threads
    or their timing.
    """
    acc_slow[c, :] = 0
    acc_fast[c, :] = 0
    n_ev[c] = _step_synapses(
        bounds[c],
        bounds[c + 1],
        k,
        sigma,
        x,
        n_e,
        ee_rowptr,
        ee_split,
        ee_post,
        ee_pot,
        ee_L,
        last,
        ei_rowptr,
        ei_split,
        ei_post,
        ie_rowptr,
        ie_split,
        ie_post,
        ii_rowptr,
        ii_split,
        ii_post,
        prm,
        plastic,
        bounded,
        mant_bits,
        f,
        acc_slow[c],
        acc_fast[c],
        events[c],
        max_events,
        f_row[c],
        cross[c],
    )


# Two separate functions, not one body jitted twice: numba's on-disk cache is keyed by the
# Python function, so a serial and a parallel compilation of the same function overwrite each
# other's entries and either dispatcher may load the other's code.
@numba.njit(cache=True, parallel=True)
def _step_chunks_parallel(bounds, *args):  # noqa: ANN001, ANN002, ANN201
    """All chunks, in parallel (large networks). Bitwise the same as `_step_chunks_serial`."""
    for c in numba.prange(bounds.shape[0] - 1):
        _run_chunk(c, bounds, *args)


@numba.njit(cache=True)
def _step_chunks_serial(bounds, *args):  # noqa: ANN001, ANN002, ANN201
    """All chunks, one after the other (small networks, where a parallel region costs more)."""
    for c in range(bounds.shape[0] - 1):
        _run_chunk(c, bounds, *args)


PARALLEL_MIN_SYNAPSES = 4_000_000


# Cost of an E→E synapse of an active neuron relative to a static one when plasticity is on
# (catch-up, delivery, f gather and the Hebbian step against one scatter-add), measured on the
# default network: splitting by plain synapse counts left one of two chunks 1.3× the other.
PLASTIC_COST = 4


def _balanced_chunks(conn: Connectivity, chunks: int, plastic: bool) -> np.ndarray:
    """Presynaptic index bounds splitting the outgoing synapses' work into `chunks` equal parts."""
    out = np.zeros(conn.n, dtype=np.int64)
    for name, p in conn.projections.items():
        off = conn.offset(p.pre)
        out[off : off + p.n_pre] += p.row_lengths().numpy() * (PLASTIC_COST if plastic and name == EE else 1)
    return _equal_parts(np.concatenate([[0], np.cumsum(out)]), chunks)


def _equal_parts(cum: np.ndarray, chunks: int) -> np.ndarray:
    """Row bounds splitting rows 0..len(cum)−2 into `chunks` runs of about equal weight, given the
    cumulative weights `cum` (cum[0] = 0, cum[j+1] − cum[j] the weight of row j)."""
    bounds = np.searchsorted(cum, cum[-1] * np.arange(chunks + 1) / chunks, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, cum.size - 1
    return np.maximum.accumulate(bounds)


@numba.njit(cache=True, nogil=True)
def _catch_up_rows(
    k,
    j0,
    j1,
    ee_rowptr,
    ee_post,
    ee_pot,
    ee_L,
    last,
    prm,
    bounded,
    mant_bits,
    events,
    max_events,
    rest,
):  # noqa: ANN001, ANN202
    """Bring the E→E synapses of pre j0..j1−1 to t_k (drift only). Returns the switch events logged.

    `rest` is a scratch row at least as long as the longest E→E row (see `_catch_up_range`).
    """
    dp = _drift_params(prm)
    n_ev = 0
    for j in range(j0, j1):
        gap = k - last[j]
        if gap <= 0:
            continue
        n_ev = _catch_up_range(
            ee_rowptr[j],
            ee_rowptr[j + 1],
            j,
            gap,
            last[j],
            ee_post,
            ee_pot,
            ee_L,
            dp,
            bounded,
            mant_bits,
            events,
            n_ev,
            max_events,
            rest,
        )
        last[j] = k
    return n_ev


@numba.njit(cache=True, nogil=True, parallel=True)
def _catch_up_chunks(
    k,
    rows,
    ee_rowptr,
    ee_post,
    ee_pot,
    ee_L,
    last,
    prm,
    bounded,
    mant_bits,
    events,
    max_events,
    n_ev,
    rest,
):  # noqa: ANN001, ANN202
    """_catch_up_rows over the chunks rows[c]..rows[c+1], in parallel: rows are independent (a
    synapse belongs to one pre), and each chunk logs into its own events[c]."""
    for c in numba.prange(rows.size - 1):
        n_ev[c] = _catch_up_rows(
            k,
            rows[c],
            rows[c + 1],
            ee_rowptr,
            ee_post,
            ee_pot,
            ee_L,
            last,
            prm,
            bounded,
            mant_bits,
            events[c],
            max_events,
            rest[c],
        )


@numba.njit(cache=True, nogil=True)
def _release_and_hebbian(v, theta, v_reset, n_e, th_ltp, th_ltd, a_h, b_h, one, zero):  # noqa: ANN001, ANN202
    """Steps 1 and 8's factor at t_k: σ (bool) and f_i of the E cells, operation for operation
    as `dynamics.released` and `dynamics.hebbian_factor` (constants in the working dtype)."""
    sigma = v >= theta
    f = np.empty(n_e, dtype=v.dtype)
    for i in range(n_e):
        ltp = one if (th_ltp <= v[i]) and (v[i] <= theta[i]) else zero
        ltd = one if (v[i] <= th_ltd) and (v[i] <= v_reset[i]) else zero
        f[i] = ltp * a_h - ltd * b_h
    return sigma, f


@numba.njit(cache=True, nogil=True)
def _advance(
    v, i_s, i_f, x, a, sigma, syn_slow, i_ext, theta, v_reset, tau_m, dt_tau_s, pulse_inc, dt, u, tau_rec, one, zero
):  # noqa: ANN001, ANN202
    """Steps 3, 5–7 into new arrays (v, i_s, x, a), operation for operation as `dynamics.advance`
    (which rounds Python scalars to the working dtype; so are dt, u, tau_rec, one, zero here):
    the same IEEE operations in the same order give the same bits, and one fused pass replaces
    about twenty torch calls (≈ 0.5 ms a step on the default network)."""
    n = v.size
    v_new, i_s_new, x_new, a_new = np.empty_like(v), np.empty_like(v), np.empty_like(v), np.empty_like(v)
    for i in range(n):
        sig = one if sigma[i] else zero
        s = x[i] * sig
        i_s_new[i] = i_s[i] + dt_tau_s[i] * (-i_s[i] + syn_slow[i])  # 3
        total = i_s[i] + i_f[i] + i_ext[i]  # 5: old currents
        a_lt_1 = one if a[i] < one else zero  # 6
        a_new[i] = (a[i] + pulse_inc[i] * sig) * a_lt_1
        below = one if v[i] <= theta[i] else zero
        dv = (-v[i] / tau_m[i] + total) * dt * below
        a_ge_1 = one if a[i] >= one else zero
        v_new[i] = v_reset[i] * a_ge_1 + (v[i] + dv) * a_lt_1
        x_new[i] = x[i] + (dt * ((one - x[i]) / tau_rec) - u * s)  # 7
    return v_new, i_s_new, x_new, a_new


def _sum_rows(a: np.ndarray) -> np.ndarray:
    out = a[0].copy()
    for row in a[1:]:
        out += row
    return out


class SparseEngine(Engine):
    """Event-driven engine on the CPU. float32 or float64."""

    name = "sparse"
    devices = ("cpu",)
    MAX_EVENTS = 1 << 16

    def __init__(self, net: Network, neurons: NeuronState, synapses: SynapseState, keep_switch_events: bool = False):
        if net.device.type != "cpu":
            raise NotImplementedError("SparseEngine runs on the CPU; on CUDA use GpuSparseEngine (engines/gpu.py)")
        if net.dtype not in (torch.float32, torch.float64):
            raise ValueError("the sparse engine runs in float32 or float64")
        super().__init__(net, keep_switch_events)
        _check_layout()
        cfg, conn = net.config, net.connectivity
        self.neurons = neurons
        np_dtype = np.float32 if net.dtype == torch.float32 else np.float64
        self._syn = synapses  # owned: make_engine passes a copy of the network's initial state
        self._pot = self._syn.potentiated.numpy()
        self._L = self._syn.L.numpy()
        self._last = np.zeros(net.n_E, dtype=np.int64)
        P = conn.projections
        # Post indices are uint16 where the post population fits (connectivity.post_index_dtype):
        # 2 bytes less per synapse to stream each step, ≈ 5–8% of a default-network step.
        # Kernel argument order: E→E, then the static projections in schema order.
        self._ee = [P[EE].rowptr.numpy(), P[EE].split.numpy(), P[EE].post_idx.numpy()]
        self._static = [
            a.numpy() for p in model.STATIC for a in (P[p.name].rowptr, P[p.name].split, P[p.name].post_idx)
        ]
        pl = cfg.plasticity
        self._np_dtype = np_dtype
        self._plastic = bool(pl.enabled)
        # The switches the kernels branch on: L bounded?, mantissa bits of the dtype.
        self._flags = (pl.bounds is not None, int(np.finfo(np_dtype).nmant))
        self.set_scales(self.scales)  # the packed parameter vector, self._prm
        chunks = cfg.threads
        self._bounds = _balanced_chunks(conn, chunks, bool(pl.enabled))
        # One more row per chunk: the up/down counters (see _log_event).
        self._events = np.zeros((chunks, self.MAX_EVENTS + 1, 4), dtype=np.int64)
        self._n_ev = np.zeros(chunks, dtype=np.int64)
        self._acc_slow = np.zeros((chunks, net.n), dtype=np_dtype)
        self._acc_fast = np.zeros((chunks, net.n), dtype=np_dtype)
        # Scratch rows of the Hebbian pass (see _ee_plastic_range), one per chunk.
        ee_rows = conn.projections[EE].row_lengths()
        longest = max(1, int(ee_rows.max())) if ee_rows.numel() else 1
        self._f_row = np.zeros((chunks, longest), dtype=np_dtype)
        self._cross = np.zeros((chunks, longest), dtype=np.int32)
        self._parallel = chunks > 1 and conn.n_synapses() >= PARALLEL_MIN_SYNAPSES
        # E rows split into chunks of equal E→E synapse counts (the row pointers are their
        # cumulative counts), for the full catch-up.
        self._ee_rows = _equal_parts(np.asarray(self._ee[0]), chunks)
        self._step_chunks = _step_chunks_parallel if self._parallel else _step_chunks_serial
        # The neuron update's per-neuron parameters as arrays of the working dtype.
        prm = net.params
        self._params = tuple(t.numpy() for t in (prm.theta, prm.v_reset, prm.tau_m, prm.dt_tau_s, prm.pulse_inc))
        if self._parallel:
            numba.set_num_threads(max(1, min(chunks, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]

    def set_scales(self, scales: Scales) -> None:
        """Receptor scales from the next step on: (slow, fast) multipliers per projection."""
        values = model.parameter_values(self.cfg, scales)
        self._prm = model.pack_parameters(values, self._np_dtype)
        # The neuron kernels' constants, as scalars of the working dtype (their signatures are
        # pinned by tests/test_terms.py, which checks them against dynamics.py bit for bit).
        v = self._prm
        self._hebb = (v[_TH_LTP], v[_TH_LTD], v[_AH], v[_BH], v[_ONE], v[_ZERO])
        self._neuron_consts = (v[_DT], v[_U], v[_TAU_REC], v[_ONE], v[_ZERO])
        self.scales = dict(scales)

    def step(self, i_ext: torch.Tensor) -> torch.Tensor:
        st, n_e = self.neurons, self.net.n_E
        v, x = st.v.numpy(), st.x.numpy()
        theta, v_reset, tau_m, dt_tau_s, pulse_inc = self._params
        sigma, f = _release_and_hebbian(v, theta, v_reset, n_e, *self._hebb)
        self._step_chunks(
            self._bounds,
            self.k,
            sigma,
            x,
            n_e,
            *self._ee,
            self._pot,
            self._L,
            self._last,
            *self._static,
            self._prm,
            self._plastic,
            *self._flags,
            f,
            self._acc_slow,
            self._acc_fast,
            self._events,
            self.MAX_EVENTS,
            self._n_ev,
            self._f_row,
            self._cross,
        )
        for c in range(self._n_ev.size):
            self._record_events(int(self._n_ev[c]), self._events[c])
        # Chunk partial sums, added in chunk order (fixed): fresh arrays, since i_f keeps one.
        syn_slow = _sum_rows(self._acc_slow)
        syn_fast = _sum_rows(self._acc_fast)
        i_np = i_ext.numpy()
        if i_np.shape != v.shape:  # a broadcastable input (as torch's advance would take it)
            i_np = np.ascontiguousarray(np.broadcast_to(i_np, v.shape))
        new = _advance(
            v,
            st.i_s.numpy(),
            st.i_f.numpy(),
            x,
            st.a.numpy(),
            sigma,
            syn_slow,
            i_np,
            theta,
            v_reset,
            tau_m,
            dt_tau_s,
            pulse_inc,
            *self._neuron_consts,
        )
        v_new, i_s_new, x_new, a_new = (torch.from_numpy(t) for t in new)
        self.neurons = NeuronState(v_new, i_s_new, torch.from_numpy(syn_fast), x_new, a_new)  # 4: i_f = fast sum
        self.k += 1
        return torch.from_numpy(sigma)

    def _record_events(self, n_ev: int, events: np.ndarray) -> None:
        if not n_ev:
            return
        counts = events[self.MAX_EVENTS]
        n_up, n_down = int(counts[0]), int(counts[1])
        counts[:] = 0
        if self.switches.keep_events and n_ev > self.MAX_EVENTS:
            raise RuntimeError(f"more than {self.MAX_EVENTS} switch events in one step: too many to keep")
        self.switches.add(events[: min(n_ev, self.MAX_EVENTS)].copy(), n_up, n_down)

    def synapses(self) -> SynapseState:
        if self.cfg.plasticity.enabled:
            ee_rowptr, ee_post = self._ee[0], self._ee[2]
            if self._parallel:
                _catch_up_chunks(
                    self.k,
                    self._ee_rows,
                    ee_rowptr,
                    ee_post,
                    self._pot,
                    self._L,
                    self._last,
                    self._prm,
                    *self._flags,
                    self._events,
                    self.MAX_EVENTS,
                    self._n_ev,
                    self._cross,
                )
                for c in range(self._n_ev.size):
                    self._record_events(int(self._n_ev[c]), self._events[c])
            else:
                n_ev = _catch_up_rows(
                    self.k,
                    0,
                    self._last.size,
                    ee_rowptr,
                    ee_post,
                    self._pot,
                    self._L,
                    self._last,
                    self._prm,
                    *self._flags,
                    self._events[0],
                    self.MAX_EVENTS,
                    self._cross[0],
                )
                self._record_events(n_ev, self._events[0])
        return self._syn.clone()

    def stored_L(self) -> torch.Tensor:
        return self._syn.L

    def _buffers(self) -> dict[str, torch.Tensor]:
        # The numba arrays _pot, _L share memory with these tensors; _last is E→E's lazy clock.
        # The rest (_acc_*, _events, _n_ev) is scratch, rewritten by every step.
        return {
            **neuron_tensors(self.neurons),
            "potentiated": self._syn.potentiated,
            "L": self._syn.L,
            "last": torch.from_numpy(self._last),
        }
