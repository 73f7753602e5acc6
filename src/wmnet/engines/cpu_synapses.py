"""The CPU engine's per-step synapse kernels (numba), driven by engines/sparse.py.

Per step, only the outgoing synapses of neurons with σ = 1 are touched (`_step_synapses`, over
chunks of presynaptic neurons run serially or in parallel: `_step_chunks_*`): static projections
add one efficacy per projection and channel times s_j to their targets; E→E synapses catch up
their drift, deliver J(t_k)·s_j and take the Hebbian step (engines/cpu_plastic.py).
`_catch_up_rows` and `_catch_up_chunks` bring every E→E synapse to t_k before the synapses are
read out. The equations: docs/model.md.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numba

from wmnet import model
from wmnet.engines import cpu_plastic
from wmnet.engines.cpu_plastic import _catch_up_range, _ee_plastic_range

# Indices into the packed parameter vector (model.PARAMETERS). numba freezes globals into the
# compiled code, and its disk cache of a function is keyed by that function's file only (an edit
# to a file whose functions it inlines goes unseen): `_layout` lets the engine detect kernels
# cached under another layout of the schema, or with another engines/cpu_plastic.py inlined (its
# checksum ends `_LAYOUT`; see `_check_layout`).
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
    zlib.crc32(Path(cpu_plastic.__file__).read_bytes()),
)


@numba.njit(cache=True, nogil=True, inline="always")
def _drift_params(prm):  # noqa: ANN001, ANN202
    """(dt, −α, β, 0, θ_X, L_min, L_max) from the parameter vector: the drift replay's constants,
    as a tuple that stays in registers through the inlined helpers."""
    return prm[_DT], prm[_NEG_ALPHA], prm[_BETA], prm[_ZERO], prm[_THX], prm[_LO], prm[_HI]


@numba.njit(cache=True)
def _layout():  # noqa: ANN202
    """The parameter indices compiled into this module's kernels (compared with the schema's),
    and the checksum of the cpu_plastic.py they inline."""
    return _LAYOUT


def _check_layout() -> None:
    """Cached kernels compiled under another parameter layout would read the wrong constants (and
    under another cpu_plastic.py, run its old code)."""
    if tuple(_layout()) != _LAYOUT:
        raise RuntimeError(
            "engines/cpu_synapses.py: numba's cache holds kernels compiled for another layout of "
            "model.PARAMETERS or another engines/cpu_plastic.py; delete src/wmnet/engines/__pycache__ and "
            "rerun"
        )


@numba.njit(cache=True, nogil=True, inline="always")
def _static_push(j, s, rowptr, split, post, post_off, j_slow, j_fast, acc_slow, acc_fast):  # noqa: ANN001, ANN202
    ws = j_slow * s
    for q in range(rowptr[j], split[j]):
        acc_slow[post_off + post[q]] += ws
    wf = j_fast * s
    for q in range(split[j], rowptr[j + 1]):
        acc_fast[post_off + post[q]] += wf


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
