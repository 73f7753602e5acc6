"""The event-driven sparse engine (CPU, numba).

Per step, only the outgoing synapses of neurons with σ = 1 are touched:
- static projections add one efficacy per projection and channel times s_j to their targets;
- E→E synapses are brought up to date lazily (MODEL.md, "Lazy evaluation is exact"): L drifts
  in closed form from the presynaptic neuron's last update to t_k, the synapse delivers its
  current with J(t_k), then takes the Hebbian step to t_{k+1} and may switch.

Neuron dynamics use the same torch functions as the reference engine (dynamics.py), so only
the synaptic sums and L are computed here. Memory per synapse: 4 bytes (int32 post index) for
static synapses; 4 + sizeof(L) + 1 (potentiated bit as uint8) for E→E synapses.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from wmnet.connectivity import SynapseState
from wmnet.dynamics import NeuronState, advance, hebbian_factor, released
from wmnet.engines.base import SwitchLog
from wmnet.network import Network


@numba.njit(cache=True, nogil=True, inline="always")
def _drift_to(L, n, dt, neg_alpha, beta, zero, thx, lo, hi, bounded):  # noqa: ANN001, ANN202
    """L after n drift-only steps (no Hebbian term). Returns (L, steps_done_before_down_switch).

    The steps are replayed one by one with the stepwise arithmetic, so the result is bitwise
    the reference's: L often lands exactly on θ_X's lattice neighbours, and a closed form that
    rounds differently would flip switch decisions. The replay stops at a fixed point (a bound,
    or an increment below rounding), so synapses resting at L_min or L_max cost one step.
    The second value is the index (0..n-1) of a downward crossing at θ_X exactly, or −1.
    """
    down_at = -1
    for m in range(n):
        R = (neg_alpha if L <= thx else zero) + (beta if L >= thx else zero)
        L_new = L + dt * R
        if bounded:
            L_new = min(max(L_new, lo), hi)
        if L >= thx and thx > L_new:
            down_at = m
        if L_new == L:
            break
        L = L_new
    return L, down_at


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
    if n_ev < max_events:
        events[n_ev, 0] = step
        events[n_ev, 1] = pre
        events[n_ev, 2] = post
        events[n_ev, 3] = direction
    return n_ev + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _ee_plastic_range(
    q0, q1, j, k, gap, last_j, s, post, pot, ee_L, acc, jtab,
    f, dt, neg_alpha, beta, zero, thx, lo, hi, bounded, events, n_ev, max_events,
):  # noqa: ANN001, ANN202
    """E→E synapses q0..q1 of active pre j in one channel: catch up, deliver J(t_k)·s, learn."""
    for q in range(q0, q1):
        i = post[q]
        L = ee_L[q]
        if gap > 0:
            L, down_at = _drift_to(L, gap, dt, neg_alpha, beta, zero, thx, lo, hi, bounded)
            if down_at >= 0 and pot[q] == 1:
                pot[q] = 0
                n_ev = _log_event(events, n_ev, max_events, last_j + down_at, j, i, -1)
        b = pot[q]
        acc[i] += jtab[b] * s
        R = (neg_alpha if L <= thx else zero) + (beta if L >= thx else zero)
        L_new = L + dt * (R + f[i])
        if bounded:
            L_new = min(max(L_new, lo), hi)
        if b == 0 and L <= thx and thx < L_new:
            pot[q] = 1
            n_ev = _log_event(events, n_ev, max_events, k, j, i, 1)
        elif b == 1 and L >= thx and thx > L_new:
            pot[q] = 0
            n_ev = _log_event(events, n_ev, max_events, k, j, i, -1)
        ee_L[q] = L_new
    return n_ev


@numba.njit(cache=True, nogil=True)
def _step_synapses(
    k, sigma, x, n_e,
    ee_rowptr, ee_split, ee_post, ee_pot, ee_L, last,
    ei_rowptr, ei_split, ei_post,
    ie_rowptr, ie_split, ie_post,
    ii_rowptr, ii_split, ii_post,
    jtab_slow, jtab_fast,
    ei_slow, ei_fast, ie_slow, ie_fast, ii_slow, ii_fast,
    plastic, f, dt, neg_alpha, beta, zero, thx, lo, hi, bounded,
    acc_slow, acc_fast, events, max_events,
):  # noqa: ANN001, ANN202
    """Accumulate Σ_j J_ij s_j into acc_* and advance E→E synapses of active pre neurons.

    jtab_* = [J_d, J_p] of each channel, indexed by the potentiated bit (no branch).
    Returns the number of switch events; events[:min(count, max_events)] holds them as
    (step, pre, post, direction).
    """
    n_ev = 0
    n = sigma.shape[0]
    for j in range(n):
        if not sigma[j]:
            continue
        s = x[j]
        if j < n_e:
            _static_push(j, s, ei_rowptr, ei_split, ei_post, n_e, ei_slow, ei_fast, acc_slow, acc_fast)
            q0, qs, q1 = ee_rowptr[j], ee_split[j], ee_rowptr[j + 1]
            if plastic:
                gap = k - last[j]
                n_ev = _ee_plastic_range(q0, qs, j, k, gap, last[j], s, ee_post, ee_pot, ee_L, acc_slow,
                                         jtab_slow, f, dt, neg_alpha, beta, zero, thx, lo, hi, bounded,
                                         events, n_ev, max_events)
                n_ev = _ee_plastic_range(qs, q1, j, k, gap, last[j], s, ee_post, ee_pot, ee_L, acc_fast,
                                         jtab_fast, f, dt, neg_alpha, beta, zero, thx, lo, hi, bounded,
                                         events, n_ev, max_events)
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
def _catch_up_all(k, ee_rowptr, ee_post, ee_pot, ee_L, last, dt, neg_alpha, beta, zero, thx, lo, hi,
                  bounded, events, max_events):  # noqa: ANN001, ANN202
    """Bring every E→E synapse to t_k (drift only). Returns the number of switch events."""
    n_ev = 0
    for j in range(last.shape[0]):
        gap = k - last[j]
        if gap <= 0:
            continue
        for q in range(ee_rowptr[j], ee_rowptr[j + 1]):
            L, down_at = _drift_to(ee_L[q], gap, dt, neg_alpha, beta, zero, thx, lo, hi, bounded)
            ee_L[q] = L
            if down_at >= 0 and ee_pot[q] == 1:
                ee_pot[q] = 0
                if n_ev < max_events:
                    events[n_ev, 0] = last[j] + down_at
                    events[n_ev, 1] = j
                    events[n_ev, 2] = ee_post[q]
                    events[n_ev, 3] = -1
                n_ev += 1
        last[j] = k
    return n_ev


class SparseEngine:
    """Event-driven engine on the CPU. float32 or float64."""

    name = "sparse"
    MAX_EVENTS = 1 << 16

    def __init__(self, net: Network, neurons: NeuronState, synapses: SynapseState, keep_switch_events: bool = False):
        if net.device.type != "cpu":
            raise NotImplementedError("the sparse engine's GPU path is not built yet; use --engine reference")
        if net.dtype not in (torch.float32, torch.float64):
            raise ValueError("the sparse engine runs in float32 or float64")
        cfg, conn = net.config, net.connectivity
        self.net, self.cfg, self.k = net, cfg, 0
        self.neurons = neurons
        self.switches = SwitchLog(keep_switch_events)
        np_dtype = np.float32 if net.dtype == torch.float32 else np.float64
        c = np_dtype  # scalar constructor in the working dtype: numba then computes in it
        self._syn = synapses.clone()
        self._pot = self._syn.potentiated.numpy()
        self._L = self._syn.L.numpy()
        self._last = np.zeros(net.n_E, dtype=np.int64)
        P = conn.projections
        arrays = []
        for name in ("E->E", "E->I", "I->E", "I->I"):
            p = P[name]
            arrays += [p.rowptr.numpy(), p.split.numpy(), p.post_idx.numpy()]
        self._ee = arrays[:3]
        self._static = arrays[3:]
        pr = cfg.projections
        pl = cfg.plasticity
        jtab = np.array([pr.EE.J_d, pr.EE.J_p], dtype=np_dtype)  # indexed by the potentiated bit
        self._eff = [jtab, jtab.copy(),
                     c(pr.EI.efficacy), c(pr.EI.efficacy), c(pr.IE.efficacy), c(pr.IE.efficacy),
                     c(pr.II.efficacy), c(pr.II.efficacy)]
        lo, hi = pl.bounds if pl.bounds is not None else (0.0, 0.0)
        dt = c(cfg.dt)
        self._plastic = bool(pl.enabled)
        # dt, −α, β, 0, θ_X, L_min, L_max, bounded?
        self._pl = (dt, c(-pl.alpha), c(pl.beta), c(0), c(pl.theta_X), c(lo), c(hi), pl.bounds is not None)
        self._events = np.zeros((self.MAX_EVENTS, 4), dtype=np.int64)
        self._acc_slow = np.zeros(net.n, dtype=np_dtype)
        self._acc_fast = np.zeros(net.n, dtype=np_dtype)

    def step(self, i_ext: torch.Tensor) -> torch.Tensor:
        st, p, n_e = self.neurons, self.net.params, self.net.n_E
        sigma, s = released(st, p)
        f = hebbian_factor(st.v[:n_e], p.theta[:n_e], p.v_reset[:n_e], self.cfg)
        self._acc_slow.fill(0)
        self._acc_fast.fill(0)
        n_ev = _step_synapses(
            self.k, sigma.numpy() != 0, st.x.numpy(), n_e,
            *self._ee, self._pot, self._L, self._last,
            *self._static, *self._eff, self._plastic, f.numpy(), *self._pl,
            self._acc_slow, self._acc_fast, self._events, self.MAX_EVENTS,
        )
        self._record_events(n_ev)
        syn_slow = torch.from_numpy(self._acc_slow)
        syn_fast = torch.from_numpy(self._acc_fast.copy())  # becomes i_f: must not alias the buffer
        self.neurons = advance(st, sigma, s, syn_slow, syn_fast, i_ext, p)
        self.k += 1
        return sigma.bool()

    def _record_events(self, n_ev: int) -> None:
        if n_ev > self.MAX_EVENTS:
            raise RuntimeError(f"more than {self.MAX_EVENTS} synapse switches in one step")
        if n_ev:
            self.switches.add(self._events[:n_ev].copy())

    def synapses(self) -> SynapseState:
        if self.cfg.plasticity.enabled:
            n_ev = _catch_up_all(self.k, self._ee[0], self._ee[2], self._pot, self._L, self._last,
                                 *self._pl, self._events, self.MAX_EVENTS)
            self._record_events(n_ev)
        return self._syn.clone()
