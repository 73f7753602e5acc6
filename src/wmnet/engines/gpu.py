"""The event-driven sparse engine on the GPU: Triton kernels (engines/kernels.py), CUDA graphs.

Same storage and semantics as the CPU engine (engines/sparse.py): CSR by presynaptic neuron,
9 bytes per plastic E→E synapse and 4 per static one, L updated lazily with one last-update
step per presynaptic neuron. Per step it launches three kernels (the drift catch-up of the E
neurons that turned on, with plasticity only; synapses; neurons); blocks of steps are captured
once as a CUDA graph and replayed, so the host issues one launch per block.

Runs on CUDA. With TRITON_INTERPRET=1 the same kernels run on CPU tensors (slowly), which is
how the test suite checks them on machines without a GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wmnet import model
from wmnet.connectivity import SynapseState
from wmnet.dynamics import NeuronState, hebbian_factor
from wmnet.engines.base import Engine, TraceRequest, load_state
from wmnet.model import Scales
from wmnet.network import Network

MIN_GRAPH_STEPS = 8  # shorter blocks run eagerly


@dataclass(frozen=True)
class Blocks:
    """Launch shapes of the kernels, fixed per engine (a captured graph keeps them).

    The defaults are the timed ones; tests shrink them so that every kernel runs several
    programs (or vector steps per row) on tiny networks."""

    neuron: int = 1024  # neurons per program of `neuron_step`
    synapse: int = 512  # synapses per vector step of a synapse program (H100: 512 beat 128, 256, 1024)
    catch_up: int = 512  # a drift replay loop runs as long as its slowest lane (H100: 512 beat 256, 1024)
    # The onset catch-up's work items: (row, block) pairs, so that a row's blocks run in parallel
    # (True), or whole rows (False). Off until timed on a GPU (`bench/gpu_profile.py tune`); both
    # are exact, and tests/test_gpu_kernels.py runs both.
    split_catch_up: bool = False

    def __post_init__(self) -> None:
        for name in ("neuron", "synapse", "catch_up"):
            size = getattr(self, name)
            if size < 1 or size & (size - 1):  # Triton's tl.arange needs a power of two
                raise ValueError(f"Blocks.{name}: {size} is not a power of two")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _patch_interpreter() -> None:
    """Triton 3.6's interpreter turns a loaded scalar into a Python int with int(array), which
    NumPy ≥ 2.4 refuses for 1-element arrays; loops like range(q0, q1) then fail. Idempotent."""
    from triton.runtime import interpreter as ti

    orig = ti._patch_lang_tensor
    if getattr(orig, "_wmnet", False):
        return

    def patched(tensor, scope):  # noqa: ANN001, ANN202
        orig(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._wmnet = True  # type: ignore[attr-defined]
    ti._patch_lang_tensor = patched


def _nonempty(t: torch.Tensor) -> torch.Tensor:
    """Triton needs a real pointer: give empty arrays one (never read) element."""
    return t if t.numel() else torch.zeros(1, dtype=t.dtype, device=t.device)


class GpuSparseEngine(Engine):
    """Event-driven sparse engine on CUDA. float32 or float64."""

    name = "sparse"
    devices = ("cuda",)
    EVENT_CAPACITY = 1 << 20  # switch events kept between two drains (keep_switch_events only)

    def __init__(
        self,
        net: Network,
        neurons: NeuronState,
        synapses: SynapseState,
        keep_switch_events: bool = False,
        deterministic: bool | None = None,
        blocks: Blocks = Blocks(),
    ):
        from wmnet.engines import kernels  # Triton: imported only when a GPU engine is made

        if net.device.type != "cuda" and not interpreting():
            raise ValueError("GpuSparseEngine runs on CUDA (or on the CPU under TRITON_INTERPRET=1)")
        if net.dtype not in (torch.float32, torch.float64):
            raise ValueError("the sparse engine runs in float32 or float64")
        super().__init__(net, keep_switch_events)
        self._kn = kernels
        if interpreting():
            _patch_interpreter()
        cfg, conn = net.config, net.connectivity
        dev, dtype = net.device, net.dtype
        self.deterministic = cfg.deterministic if deterministic is None else deterministic
        n, n_e = net.n, net.n_E
        # The state variables' live buffers, in schema order (the kernels take them one by one).
        self._state = {name: neurons[name].to(dev, dtype).clone().contiguous() for name in model.VARIABLES}
        self._v, self._i_s, self._i_f, self._x, self._a = self._state.values()
        self._f = self._hebbian_factor()
        self._pot = synapses.potentiated.to(dev).clone().contiguous()
        self._L = synapses.L.to(dev, dtype).clone().contiguous()
        self._last = torch.zeros(n_e, dtype=torch.int64, device=dev)
        # k and k + 1 (kernels.neuron_step says why two words); only k is state.
        self._kbuf2 = torch.zeros(2, dtype=torch.int64, device=dev)
        self._kbuf = self._kbuf2[:1]
        # E neurons that turn on at the next step (their synapses need the drift catch-up),
        # double-buffered by step parity; empty at start, since last = k there.
        self._onsets = torch.zeros(2, max(n_e, 1), dtype=torch.int32, device=dev)
        self._onset_cnt = torch.zeros(2, dtype=torch.int32, device=dev)
        self._nprog = 4 if interpreting() else 2 * torch.cuda.get_device_properties(dev).multi_processor_count
        self.blocks = blocks
        self._nchunk = 0  # whole rows
        if blocks.split_catch_up:  # enough blocks per row for the longest one
            rows = conn.projections[model.PLASTIC.name].row_lengths()
            self._nchunk = max(1, -(-int(rows.max() if rows.numel() else 0) // blocks.catch_up))
        acc_dtype = torch.int64 if self.deterministic else dtype
        self._acc = torch.zeros(2 * n, dtype=acc_dtype, device=dev)
        bits = {torch.float32: torch.int32, torch.float64: torch.int64, torch.int64: torch.int64}[acc_dtype]
        self._acc_bits = self._acc.view(bits)  # the same memory, for the neuron kernel's exchange
        P = conn.projections
        self._proj = {
            name: (_nonempty(P[name].rowptr), _nonempty(P[name].split), _nonempty(P[name].post_idx))
            for name in model.PROJECTION_NAMES
        }
        pl = cfg.plasticity
        self._prm = torch.zeros(len(model.PARAMETERS), dtype=dtype, device=dev)
        self.set_scales(self.scales)
        cap = self.EVENT_CAPACITY if keep_switch_events else 1
        self._events = torch.zeros(cap, 4, dtype=torch.int64, device=dev)
        self._cnt = torch.zeros(3, dtype=torch.int64, device=dev)  # slots used, ups, downs
        self._flags1 = torch.zeros(1, n, dtype=torch.uint8, device=dev)
        self._const = dict(
            PLASTIC=bool(pl.enabled),
            BOUNDED=pl.bounds is not None,
            DET=bool(self.deterministic),
            KEEP=bool(keep_switch_events),
            MANT=23 if dtype == torch.float32 else 52,
        )
        self._graphs: dict[tuple, tuple] = {}
        self._compiled = False

    def set_scales(self, scales: Scales) -> None:
        """Receptor scales from the next step on: (slow, fast) multipliers per projection.

        Written in place into the parameter vector that captured graphs read."""
        # In float64, then each constant rounded once to the working dtype (as torch rounds
        # Python scalars) on the copy into the vector.
        prm = torch.from_numpy(model.pack_parameters(model.parameter_values(self.cfg, scales), np.float64))
        self._prm.copy_(prm.to(self._prm.device, self._prm.dtype))
        self.scales = dict(scales)

    def _hebbian_factor(self) -> torch.Tensor:
        """f(v) at t_k of the E cells, which the next synapse step reads (neuron_step writes it)."""
        n_e, p = self.net.n_E, self.net.params
        return hebbian_factor(self._v[:n_e], p.theta[:n_e], p.v_reset[:n_e], self.cfg).contiguous()

    # --- state ---------------------------------------------------------------------------

    @property
    def neurons(self) -> NeuronState:
        """State at t_k: the engine's live buffers (`state` is a copy)."""
        return NeuronState(**self._state)

    @neurons.setter
    def neurons(self, neurons: NeuronState) -> None:
        self._write_neurons(neurons)

    def _write_neurons(self, neurons: NeuronState) -> None:
        """Copy into the live buffers (captured graphs keep their addresses). f(v) follows v,
        and every E→E synapse is brought to t_k first: the onset list that tells the next step
        which rows to catch up was computed from the old v."""
        if self.cfg.plasticity.enabled:
            self._catch_up(from_list=False)
            self._drain_events()
        for name, buf in self._state.items():
            buf.copy_(neurons[name])
        self._f.copy_(self._hebbian_factor())

    def synapses(self) -> SynapseState:
        """E→E state at t_k: every synapse is brought up to date first (drift only)."""
        if self.cfg.plasticity.enabled:
            self._catch_up(from_list=False)
            self._drain_events()
        return SynapseState(self._pot.clone(), self._L.clone())

    def stored_L(self) -> torch.Tensor:
        return self._L

    def _buffers(self) -> dict[str, torch.Tensor]:
        # Every buffer a step reads from the previous one: the onset list feeds the next
        # catch-up, _kbuf holds k on the device, _f the Hebbian factor of v(t_k), _acc the
        # (zeroed) sums, _cnt the undrained switch counts.
        return {
            **self._state,
            "f": self._f,
            "pot": self._pot,
            "L": self._L,
            "last": self._last,
            "kbuf": self._kbuf,
            "onsets": self._onsets,
            "onset_cnt": self._onset_cnt,
            "acc": self._acc,
            "cnt": self._cnt,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_state(self, state, self._buffers())  # in place: captured graphs keep the buffers

    # --- stepping --------------------------------------------------------------------------

    def _catch_up(self, from_list: bool) -> None:
        c = self._const
        grid = (self._nprog,) if from_list else (self.net.n_E,)
        self._kn.catch_up[grid](
            self._kbuf2,
            self._onsets,
            self._onset_cnt,
            self.net.n_E,
            self._proj[model.PLASTIC.name][0],
            self._proj[model.PLASTIC.name][2],
            self._pot,
            self._L,
            self._last,
            self._prm,
            self._events,
            self._cnt,
            self._events.shape[0],
            FROM_LIST=from_list,
            NPROG=self._nprog,
            BOUNDED=c["BOUNDED"],
            MANT=c["MANT"],
            KEEP=c["KEEP"],
            BLOCK=self.blocks.catch_up,
            NCHUNK=self._nchunk if from_list else 0,
            num_warps=8,
            enable_fp_fusion=False,
        )

    def _synapse_step(self, **launch: Any) -> None:
        """The synapse kernel of step k (launch options such as num_warps may be overridden)."""
        n, p = self.net.n, self.net.params
        self._kn.synapse_step[(n,)](
            self._kbuf2,
            self._v,
            self._x,
            p.theta,
            self._f,
            self._prm,
            self._acc,
            *self._proj[model.PLASTIC.name],
            self._pot,
            self._L,
            self._last,
            *(a for p in model.STATIC for a in self._proj[p.name]),
            self._events,
            self._cnt,
            self._events.shape[0],
            self._onset_cnt,
            self.net.n_E,
            n,
            **{"BLOCK": self.blocks.synapse, "enable_fp_fusion": False, **self._const, **launch},
        )

    def _launch(self, i_ext: torch.Tensor, flags: torch.Tensor) -> None:
        """Step k → k+1: catch-up, synapse and neuron kernels (k itself lives in self._kbuf)."""
        kn, c, n, n_e = self._kn, self._const, self.net.n, self.net.n_E
        p = self.net.params
        if c["PLASTIC"]:
            self._catch_up(from_list=True)
        self._synapse_step()  # also writes k + 1 for neuron_step
        block = self.blocks.neuron
        kn.neuron_step[((n + block - 1) // block,)](
            self._kbuf2,
            self._v,
            self._i_s,
            self._i_f,
            self._x,
            self._a,
            self._f,
            p.theta,
            p.v_reset,
            p.tau_m,
            p.dt_tau_s,
            p.pulse_inc,
            self._acc_bits,
            i_ext,
            self._prm,
            flags,
            self._onsets,
            self._onset_cnt,
            n,
            n_e,
            DET=c["DET"],
            PLASTIC=c["PLASTIC"],
            BLOCK=block,
            enable_fp_fusion=False,
        )

    def _issue(
        self,
        i_ext: torch.Tensor,
        flags: torch.Tensor,
        rows: tuple[int, ...],
        trace: TraceRequest | None,
        samples: torch.Tensor | None,
    ) -> None:
        """Launch len(i_ext) steps; record trace samples (state at t_k) at the given rows."""
        state = self.neurons
        r = 0
        for t in range(i_ext.shape[0]):
            if r < len(rows) and rows[r] == t:
                assert trace is not None and samples is not None
                for vi, var in enumerate(trace.variables):
                    torch.index_select(state[var], 0, trace.neurons, out=samples[r, vi])
                r += 1
            self._launch(i_ext[t], flags[t])

    def step(self, i_ext: torch.Tensor) -> torch.Tensor:
        """One step, eagerly; returns σ at t_k."""
        self._issue(i_ext.reshape(1, -1), self._flags1, (), None, None)
        self.k += 1
        self._drain_events()
        return (self._flags1[0] & 1).bool()

    def run_block(
        self, i_ext: torch.Tensor, trace: TraceRequest | None = None
    ) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        """Steps k..k+n−1 with i_ext (n, N). Returns flags (n, N) uint8 (bit 0 σ, bit 1 pulse
        onset), the steps sampled for `trace`, and the samples (s, variables, neurons)."""
        n_steps = i_ext.shape[0]
        rows = trace.rows(self.k, n_steps) if trace is not None else ()
        use_graph = self.net.device.type == "cuda" and self._compiled and n_steps >= MIN_GRAPH_STEPS
        if use_graph:
            key = (n_steps, rows)
            if key not in self._graphs:
                self._graphs[key] = self._capture(n_steps, rows, trace)
            graph, g_in, g_flags, g_samples = self._graphs[key]
            g_in.copy_(i_ext)
            graph.replay()
            flags = g_flags.clone()
            samples = g_samples.clone() if g_samples is not None else None
        else:
            flags = torch.empty(n_steps, self.net.n, dtype=torch.uint8, device=self.net.device)
            samples = self._sample_buffer(len(rows), trace)
            self._issue(i_ext, flags, rows, trace, samples)
            self._compiled = True
        steps = [self.k + r for r in rows]
        self.k += n_steps
        self._drain_events()
        return flags, steps, samples

    def _sample_buffer(self, n_rows: int, trace: TraceRequest | None) -> torch.Tensor | None:
        if trace is None or n_rows == 0:
            return None
        return torch.empty(
            n_rows, len(trace.variables), trace.neurons.numel(), dtype=self.net.dtype, device=self.net.device
        )

    def _capture(self, n_steps: int, rows: tuple[int, ...], trace: TraceRequest | None) -> tuple:
        dev = self.net.device
        g_in = torch.zeros(n_steps, self.net.n, dtype=self.net.dtype, device=dev)
        g_flags = torch.zeros(n_steps, self.net.n, dtype=torch.uint8, device=dev)
        g_samples = self._sample_buffer(len(rows), trace)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(dev)
        with torch.cuda.graph(graph):  # recorded, not run: the state does not move here
            self._issue(g_in, g_flags, rows, trace, g_samples)
        return graph, g_in, g_flags, g_samples

    def _drain_events(self) -> None:
        cnt = self._cnt.tolist()
        if cnt[1] == 0 and cnt[2] == 0:
            return
        events = self._events[:0].cpu().numpy()
        if self.switches.keep_events:
            if cnt[0] > self._events.shape[0]:
                raise RuntimeError(f"more than {self._events.shape[0]} switch events between two drains")
            events = self._events[: cnt[0]].cpu().numpy().copy()  # the buffer is reused
        self.switches.add(events, cnt[1], cnt[2])
        self._cnt.zero_()
