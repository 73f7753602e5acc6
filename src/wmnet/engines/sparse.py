"""The event-driven sparse engine (CPU, numba).

Per step, only the outgoing synapses of neurons with σ = 1 are touched (engines/cpu_synapses.py):
- static projections add one efficacy per projection and channel times s_j to their targets;
- E→E synapses are brought up to date lazily (docs/model.md, "How the event-driven engine stays
  exact"): L drifts from the presynaptic neuron's last update to t_k (settled on a bound where it
  provably ends there, otherwise replayed exactly: `_catch_up_range`, `_drift_to` in
  engines/cpu_plastic.py), the synapse delivers its current with J(t_k), then takes the Hebbian
  step to t_{k+1} and may switch.

Neuron dynamics repeat `dynamics.released`, `hebbian_factor` and `advance` operation for
operation in two fused numba loops (engines/cpu_neurons.py; bitwise the same: tests/test_terms.py),
so only the synaptic sums differ from the reference engine. Memory per synapse: the post index
(uint16 for populations up to 65,536 neurons, else int32) for static synapses; that + sizeof(L) + 1
(potentiated bit as uint8) for E→E synapses.

This module holds the engine and its split of the presynaptic neurons into chunks.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from wmnet import model
from wmnet.connectivity import Connectivity, SynapseState
from wmnet.dynamics import NeuronState
from wmnet.engines.base import Engine, neuron_tensors
from wmnet.engines.cpu_neurons import _advance, _release_and_hebbian
from wmnet.engines.cpu_synapses import (
    _AH,
    _BH,
    _DT,
    _ONE,
    _TAU_REC,
    _TH_LTD,
    _TH_LTP,
    _U,
    _ZERO,
    EE,
    _catch_up_chunks,
    _catch_up_rows,
    _check_layout,
    _step_chunks_parallel,
    _step_chunks_serial,
)
from wmnet.model import Scales
from wmnet.network import Network

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
