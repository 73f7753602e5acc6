"""The CPU engine's neuron update (numba): two fused loops, bitwise `dynamics.py`.

`_release_and_hebbian` (σ and the Hebbian factor f) and `_advance` (steps 3, 5–7) repeat
`dynamics.released`, `hebbian_factor` and `advance` operation for operation, so only the
synaptic sums differ from the reference engine (tests/test_terms.py checks them bit for bit).
The equations: docs/model.md.
"""

from __future__ import annotations

import numba
import numpy as np


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
