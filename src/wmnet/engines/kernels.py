"""Triton kernels of the event-driven sparse engine on the GPU (engines/gpu.py drives them).

Three kernels per step, all graph-capturable (the step index lives on the device, in two words:
k_ptr[0] = k, k_ptr[1] = k + 1; see `neuron_step` for why two):

- `catch_up`: for each E neuron j with σ_j = 1, brings its outgoing synapses' L from the last
  update to t_k (the exact drift replay of the CPU engine, `_drift` in engines/gpu_drift.py),
  with any drift-only switch.
- `synapse_step`: one program per presynaptic neuron j. If σ_j = 1 it pushes J·s_j to the
  targets of j (atomic adds into acc[channel·N + post]) and, for E→E, delivers J(t_k), takes
  the Hebbian step and switches. Programs of silent neurons exit at once.
- `neuron_step`: docs/model.md's steps 1–7 per neuron from the sums in acc, which it then zeroes;
  it also writes σ and the pulse onset as flags, and the Hebbian factor f(v) at t_{k+1} that
  the next `synapse_step` needs.

The arithmetic is that of dynamics.py and the CPU engine (engines/cpu_synapses.py,
cpu_plastic.py), operation by operation, in the working dtype; launch with
`enable_fp_fusion=False` so that no a·b+c becomes an FMA (that would move L off the lattice the
reference walks and flip switch decisions at θ_X).

Accumulation: float atomics (order-dependent rounding) or, with `DET`, 64-bit fixed point with
2^-44 resolution, which is order-independent and so bitwise reproducible.
"""

from __future__ import annotations

import triton
import triton.language as tl

from wmnet import model
from wmnet.engines.gpu_drift import (
    P_BETA,
    P_DT,
    P_HI,
    P_LO,
    P_NEG_ALPHA,
    P_THX,
    P_ZERO,
    _catch_up_chunk,
    _catch_up_row,
    _ee_block,
    _log_events,
)

# The packed parameter vector (working dtype) is model.PARAMETERS, written by gpu.py. Kernels may
# read only constexpr globals, hence these P_* twins of its indices (the drift replay's,
# P_DT to P_HI, are engines/gpu_drift.py's).
_P = model.PARAMETER_INDEX
PARAMS = model.PARAMETER_NAMES
P_AH, P_BH, P_TH_LTP, P_TH_LTD = (tl.constexpr(_P[n]) for n in ("a_H", "b_H", "theta_LTP", "theta_LTD"))
# Efficacies per channel (receptor scales applied): J_d, J_p of the slow then the fast channel;
# each static projection's slow then fast efficacy.
P_JD_S, P_JP_S, P_JD_F, P_JP_F = (
    tl.constexpr(_P[f"{model.PLASTIC.name}_{n}"]) for n in ("d_slow", "p_slow", "d_fast", "p_fast")
)
P_EI, P_IE, P_II = (tl.constexpr(_P[f"{n}_slow"]) for n in ("E->I", "I->E", "I->I"))  # slow; fast is the next index
P_U, P_TAU_REC = tl.constexpr(_P["U"]), tl.constexpr(_P["tau_rec"])


@triton.jit
def _deposit(acc_ptr, idx, w, mask, DET: tl.constexpr):
    if DET:
        wi = tl.floor(w.to(tl.float64) * 17592186044416.0 + 0.5).to(tl.int64)  # 2^44
        tl.atomic_add(acc_ptr + idx, wi, mask=mask, sem="relaxed")
    else:
        tl.atomic_add(acc_ptr + idx, w, mask=mask, sem="relaxed")


@triton.jit
def _push_static(rowptr, split, post, row, post_off, n, eff_ptr, s, acc_ptr, DET: tl.constexpr, BLOCK: tl.constexpr):
    """Add eff·s to acc[channel·n + post_off + post] for every synapse of `row`; eff_ptr points
    at the projection's (slow, fast) efficacies."""
    q0 = tl.load(rowptr + row)
    q1 = tl.load(rowptr + row + 1)
    qs = tl.load(split + row)
    w_slow = tl.load(eff_ptr) * s
    w_fast = tl.load(eff_ptr + 1) * s
    for start in range(q0, q1, BLOCK):
        q = start + tl.arange(0, BLOCK)
        m = q < q1
        i = tl.load(post + q, mask=m, other=0).to(tl.int64)
        fast = q >= qs
        idx = i + post_off + tl.where(fast, n, 0)
        _deposit(acc_ptr, idx, tl.where(fast, w_fast, w_slow), m, DET)


@triton.jit
def synapse_step(
    k_ptr,
    v_ptr,
    x_ptr,
    theta_ptr,
    f_ptr,
    prm_ptr,
    acc_ptr,
    ee_rowptr,
    ee_split,
    ee_post,
    pot_ptr,
    L_ptr,
    last_ptr,
    ei_rowptr,
    ei_split,
    ei_post,
    ie_rowptr,
    ie_split,
    ie_post,
    ii_rowptr,
    ii_split,
    ii_post,
    ev_ptr,
    cnt_ptr,
    ev_cap,
    onset_cnt,
    n_e,
    n,
    PLASTIC: tl.constexpr,
    BOUNDED: tl.constexpr,
    DET: tl.constexpr,
    KEEP: tl.constexpr,
    MANT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    j = tl.program_id(0).to(tl.int64)
    if j == 0:
        # k + 1 for neuron_step, into the word no program of this launch reads.
        k_next = tl.load(k_ptr) + 1
        tl.store(k_ptr + 1, k_next)
        if PLASTIC:  # empty the onset list that neuron_step fills next (catch_up read the other)
            tl.store(onset_cnt + k_next % 2, 0)
    v_j = tl.load(v_ptr + j)
    if v_j >= tl.load(theta_ptr + j):  # σ_j = 1; silent neurons do nothing
        s = tl.load(x_ptr + j)  # s_j = x_j σ_j
        if j < n_e:
            _push_static(ei_rowptr, ei_split, ei_post, j, n_e, n, prm_ptr + P_EI, s, acc_ptr, DET, BLOCK)
            k = tl.load(k_ptr)
            q0 = tl.load(ee_rowptr + j)
            q1 = tl.load(ee_rowptr + j + 1)
            qs = tl.load(ee_split + j)
            jd_s = tl.load(prm_ptr + P_JD_S)
            jp_s = tl.load(prm_ptr + P_JP_S)
            jd_f = tl.load(prm_ptr + P_JD_F)
            jp_f = tl.load(prm_ptr + P_JP_F)
            if PLASTIC:  # L is at t_k already: `catch_up` ran first
                dt = tl.load(prm_ptr + P_DT)
                neg_alpha = tl.load(prm_ptr + P_NEG_ALPHA)
                beta = tl.load(prm_ptr + P_BETA)
                zero = tl.load(prm_ptr + P_ZERO)
                thx = tl.load(prm_ptr + P_THX)
                lo = tl.load(prm_ptr + P_LO)
                hi = tl.load(prm_ptr + P_HI)
                for start in range(q0, q1, BLOCK):
                    q, m, i, L, b = _ee_block(start, q1, ee_post, L_ptr, pot_ptr, BLOCK)
                    fast = q >= qs
                    w = tl.where(b != 0, tl.where(fast, jp_f, jp_s), tl.where(fast, jd_f, jd_s)) * s  # J(t_k)·s_j
                    _deposit(acc_ptr, i.to(tl.int64) + tl.where(fast, n, 0), w, m, DET)
                    f = tl.load(f_ptr + i, mask=m, other=0.0)
                    R = tl.where(L <= thx, neg_alpha, zero) + tl.where(L >= thx, beta, zero)
                    L_new = L + dt * (R + f)
                    if BOUNDED:
                        L_new = tl.minimum(tl.maximum(L_new, lo), hi)
                    up = m & (b == 0) & (L <= thx) & (thx < L_new)
                    down = m & (b != 0) & (L >= thx) & (thx > L_new)
                    b_new = tl.where(up, 1, tl.where(down, 0, b)).to(tl.uint8)
                    tl.store(pot_ptr + q, b_new, mask=m & (b_new != b))
                    tl.store(L_ptr + q, L_new, mask=m)
                    _log_events(ev_ptr, cnt_ptr, ev_cap, up | down, k, j, i, tl.where(up, 1, -1), KEEP)
                tl.store(last_ptr + j, k + 1)
            else:
                for start in range(q0, q1, BLOCK):
                    q = start + tl.arange(0, BLOCK)
                    m = q < q1
                    i = tl.load(ee_post + q, mask=m, other=0)
                    b = tl.load(pot_ptr + q, mask=m, other=0)
                    fast = q >= qs
                    w = tl.where(b != 0, tl.where(fast, jp_f, jp_s), tl.where(fast, jd_f, jd_s)) * s
                    _deposit(acc_ptr, i.to(tl.int64) + tl.where(fast, n, 0), w, m, DET)
        else:
            jj = j - n_e
            _push_static(ie_rowptr, ie_split, ie_post, jj, 0, n, prm_ptr + P_IE, s, acc_ptr, DET, BLOCK)
            _push_static(ii_rowptr, ii_split, ii_post, jj, n_e, n, prm_ptr + P_II, s, acc_ptr, DET, BLOCK)


@triton.jit
def catch_up(
    k_ptr,
    onset_ptr,
    onset_cnt,
    n_e,
    ee_rowptr,
    ee_post,
    pot_ptr,
    L_ptr,
    last_ptr,
    prm_ptr,
    ev_ptr,
    cnt_ptr,
    ev_cap,
    FROM_LIST: tl.constexpr,
    NPROG: tl.constexpr,
    BOUNDED: tl.constexpr,
    MANT: tl.constexpr,
    KEEP: tl.constexpr,
    BLOCK: tl.constexpr,
    NCHUNK: tl.constexpr,
):
    """Lazy drift catch-up to t_k.

    FROM_LIST: every step, before `synapse_step`, for the E neurons whose σ turned 1 at t_k
    (the list `neuron_step` wrote, onset[k % 2]); NPROG programs share the list. Its own launch
    with wide blocks: a long silent gap costs a replay loop as long as its slowest synapse's.
    NCHUNK > 0: the work items are (row, block) pairs, NCHUNK blocks per row (enough for the
    longest), so one row's blocks run in parallel; NCHUNK = 0: one item per row, its blocks in turn.
    Otherwise: every E neuron, one program each (before reading the synapses out).
    """
    k = tl.load(k_ptr)
    if FROM_LIST:
        par = k % 2
        count = tl.load(onset_cnt + par)
        if NCHUNK > 0:
            for it in range(tl.program_id(0), count * NCHUNK, NPROG):
                r = it // NCHUNK
                j = tl.load(onset_ptr + par * n_e + r).to(tl.int64)
                _catch_up_chunk(
                    j,
                    it - r * NCHUNK,
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
                    BOUNDED,
                    MANT,
                    KEEP,
                    BLOCK,
                )
        else:
            for r in range(tl.program_id(0), count, NPROG):
                j = tl.load(onset_ptr + par * n_e + r).to(tl.int64)
                _catch_up_row(
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
                    BOUNDED,
                    MANT,
                    KEEP,
                    BLOCK,
                )
    else:
        _catch_up_row(
            tl.program_id(0).to(tl.int64),
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
            BOUNDED,
            MANT,
            KEEP,
            BLOCK,
        )


@triton.jit
def _div(a, b):
    """IEEE round-to-nearest a / b, as torch divides (Triton's float32 `/` is approximate)."""
    if a.dtype == tl.float32:
        out = tl.div_rn(a, b)
    else:
        out = a / b
    return out


@triton.jit
def neuron_step(
    k_ptr,
    v_ptr,
    is_ptr,
    if_ptr,
    x_ptr,
    a_ptr,
    f_ptr,
    theta_ptr,
    vreset_ptr,
    taum_ptr,
    dts_ptr,
    pinc_ptr,
    acc_bits,
    iext_ptr,
    prm_ptr,
    flags_ptr,
    onset_ptr,
    onset_cnt,
    n,
    n_e,
    DET: tl.constexpr,
    PLASTIC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Steps 1–7 of docs/model.md (as dynamics.advance), in place; then f(v) at t_{k+1} and k += 1.

    The programs of one launch run in no fixed order, so none may read a word another writes:
    they read k + 1 from k_ptr[1] (written by `synapse_step`) and program 0 alone writes it to
    k_ptr[0], which no program here reads. (One word, read by all and advanced by program 0,
    filed the onsets of programs that ran after that store in the wrong parity list.)
    """
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    v = tl.load(v_ptr + offs, mask=m, other=0.0)
    i_s = tl.load(is_ptr + offs, mask=m, other=0.0)
    i_f = tl.load(if_ptr + offs, mask=m, other=0.0)
    x = tl.load(x_ptr + offs, mask=m, other=0.0)
    a = tl.load(a_ptr + offs, mask=m, other=0.0)
    theta = tl.load(theta_ptr + offs, mask=m, other=0.0)
    v_reset = tl.load(vreset_ptr + offs, mask=m, other=0.0)
    tau_m = tl.load(taum_ptr + offs, mask=m, other=1.0)
    dt_tau_s = tl.load(dts_ptr + offs, mask=m, other=0.0)
    pulse_inc = tl.load(pinc_ptr + offs, mask=m, other=0.0)
    i_ext = tl.load(iext_ptr + offs, mask=m, other=0.0)
    # Read and zero the sums in one atomic exchange on their bits (acc_bits: an integer view of
    # acc): a plain load then a store of zeros to the same addresses was miscompiled on the GPU.
    nothing = tl.zeros([BLOCK], dtype=acc_bits.dtype.element_ty)
    raw_slow = tl.atomic_xchg(acc_bits + offs, nothing, mask=m, sem="relaxed")
    raw_fast = tl.atomic_xchg(acc_bits + n + offs, nothing, mask=m, sem="relaxed")
    if DET:
        syn_slow = (raw_slow.to(tl.float64) / 17592186044416.0).to(v.dtype)
        syn_fast = (raw_fast.to(tl.float64) / 17592186044416.0).to(v.dtype)
    else:
        syn_slow = raw_slow.to(v.dtype, bitcast=True)
        syn_fast = raw_fast.to(v.dtype, bitcast=True)
    dt = tl.load(prm_ptr + P_DT)
    U = tl.load(prm_ptr + P_U)
    tau_rec = tl.load(prm_ptr + P_TAU_REC)
    zero = tl.load(prm_ptr + P_ZERO)
    one = zero + 1
    on = v >= theta  # 1
    sigma = tl.where(on, one, zero)
    s = x * sigma  # 2
    i_s_new = i_s + dt_tau_s * (-i_s + syn_slow)  # 3
    total = i_s + i_f + i_ext  # 5: old currents
    a_lt_1 = tl.where(a < 1, one, zero)  # 6
    a_new = (a + pulse_inc * sigma) * a_lt_1
    dv = (_div(-v, tau_m) + total) * dt * tl.where(v <= theta, one, zero)
    v_new = v_reset * tl.where(a >= 1, one, zero) + (v + dv) * a_lt_1
    x_new = x + (dt * _div(1 - x, zero + tau_rec) - U * s)  # 7
    # Hebbian factor at t_{k+1} for the next synapse step (dynamics.hebbian_factor).
    ltp = (tl.load(prm_ptr + P_TH_LTP) <= v_new) & (v_new <= theta)
    ltd = (v_new <= tl.load(prm_ptr + P_TH_LTD)) & (v_new <= v_reset)
    f_new = tl.where(ltp, tl.load(prm_ptr + P_AH), zero) - tl.where(ltd, tl.load(prm_ptr + P_BH), zero)
    tl.store(v_ptr + offs, v_new, mask=m)
    tl.store(is_ptr + offs, i_s_new, mask=m)
    tl.store(if_ptr + offs, syn_fast, mask=m)  # 4
    tl.store(x_ptr + offs, x_new, mask=m)
    tl.store(a_ptr + offs, a_new, mask=m)
    tl.store(f_ptr + offs, f_new, mask=m & (offs < n_e))
    flags = on.to(tl.uint8) | ((on & (a == 0)).to(tl.uint8) << 1)  # bit 0: σ, bit 1: pulse onset
    tl.store(flags_ptr + offs, flags, mask=m)
    k_next = tl.load(k_ptr + 1)
    if PLASTIC:
        # E neurons silent at t_k and on at t_{k+1}: their synapses need the drift catch-up.
        need = m & (offs < n_e) & (v_new >= theta) & ~on
        n_need = tl.sum(need.to(tl.int32), axis=0)
        if n_need > 0:
            par = k_next % 2
            first = tl.atomic_add(onset_cnt + par, n_need)
            slot = first + tl.cumsum(need.to(tl.int32), axis=0) - 1
            tl.store(onset_ptr + par * n_e + slot, offs, mask=need)
    if pid == 0:
        tl.store(k_ptr, k_next)
