"""Sparse connectivity: generated directly in sparse form, or imported from a file.

Each projection is stored grouped by presynaptic neuron (CSR over pre), because the engines
push the output of each active neuron to its targets. Within one presynaptic row the slow
synapses come first, then the fast ones, each sorted by post index:

    row j:  post[rowptr[j] : split[j]]      slow synapses of j
            post[split[j]  : rowptr[j+1]]   fast synapses of j

So a static synapse costs 2 bytes on the CPU (its uint16 post index, for post populations of up
to 65,536 neurons; 4 bytes, int32, beyond that and on the GPU: see `post_index_dtype`); its
efficacy is one number per projection. The E→E projection's plastic state (L, potentiated bit) lives in `SynapseState`,
indexed in this same order, which is the canonical synapse order of wmnet.

Drawing it from the run's seed is wiring.py's; its files (dense post×pre matrices, snapshots)
are io/connectivity_files.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from wmnet import model
from wmnet.config import Config, PlasticProjection

# (name, config attribute, pre population, post population), from the model schema.
PROJECTIONS: tuple[tuple[str, str, str, str], ...] = tuple((p.name, p.field, p.pre, p.post) for p in model.PROJECTIONS)
EE = model.PLASTIC.name  # the projection whose state is SynapseState


def post_index_dtype(n_post: int, device: torch.device) -> torch.dtype:
    """Post indices are local to the post population: 2 bytes suffice up to 65,536 neurons.

    uint16 on the CPU, where the sparse engine streams them every step (2 bytes less per active
    synapse); int32 elsewhere and for larger populations (the GPU kernels read int32).
    """
    return torch.uint16 if device.type == "cpu" and n_post <= 1 << 16 else torch.int32


@dataclass
class Projection:
    """One projection pre→post in CSR-over-pre form. Indices are local to each population."""

    name: str
    pre: str
    post: str
    n_pre: int
    n_post: int
    rowptr: torch.Tensor  # int64 [n_pre + 1]
    split: torch.Tensor  # int64 [n_pre]: end of the slow block of each row
    post_idx: torch.Tensor  # [n_synapses], dtype `post_index_dtype(n_post, device)`

    @property
    def n_synapses(self) -> int:
        return int(self.post_idx.numel())

    @property
    def n_slow(self) -> int:
        return int((self.split - self.rowptr[:-1]).sum())

    def is_slow(self) -> torch.Tensor:
        """Bool per synapse: True for the slow channel (derived from `split`)."""
        pos = torch.arange(self.n_synapses, device=self.post_idx.device)
        return pos < torch.repeat_interleave(self.split, self.row_lengths())

    def row_lengths(self) -> torch.Tensor:
        return self.rowptr[1:] - self.rowptr[:-1]

    def pre_idx(self) -> torch.Tensor:
        """Local pre index of every synapse (int64), in storage order."""
        return torch.repeat_interleave(torch.arange(self.n_pre, device=self.rowptr.device), self.row_lengths())

    def to(self, device: torch.device) -> Projection:
        """On `device`, with post indices in `post_index_dtype` there."""
        post = self.post_idx.to(device=device, dtype=post_index_dtype(self.n_post, device))
        return Projection(
            self.name,
            self.pre,
            self.post,
            self.n_pre,
            self.n_post,
            self.rowptr.to(device),
            self.split.to(device),
            post,
        )

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.rowptr, self.split, self.post_idx))


@dataclass
class SynapseState:
    """The learned state of E→E synapses, in canonical (E→E projection) order."""

    potentiated: torch.Tensor  # uint8 [n_EE], 1 = J_p, 0 = J_d
    L: torch.Tensor  # working dtype [n_EE], hidden variable

    def to(self, device: torch.device, dtype: torch.dtype) -> SynapseState:
        return SynapseState(self.potentiated.to(device), self.L.to(device, dtype))

    def clone(self) -> SynapseState:
        return SynapseState(self.potentiated.clone(), self.L.clone())


@dataclass
class Connectivity:
    """All four projections plus the initial E→E synapse state."""

    n_E: int
    n_I: int
    projections: dict[str, Projection]
    initial: SynapseState
    source: str  # "generated" or the file it came from

    @property
    def n(self) -> int:
        return self.n_E + self.n_I

    def offset(self, pop: str) -> int:
        return 0 if pop == "E" else self.n_E

    def n_synapses(self) -> int:
        return sum(p.n_synapses for p in self.projections.values())

    def to(self, device: torch.device, dtype: torch.dtype) -> Connectivity:
        return Connectivity(
            self.n_E,
            self.n_I,
            {k: p.to(device) for k, p in self.projections.items()},
            self.initial.to(device, dtype),
            self.source,
        )

    def ee_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Global (post, pre) index of every E→E synapse, in canonical order."""
        ee = self.projections[EE]
        return ee.post_idx.long(), ee.pre_idx()

    def to_dense(
        self,
        cfg: Config,
        dtype: torch.dtype,
        state: SynapseState | None = None,
        efficacies: dict[str, tuple[Any, Any]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense post×pre (J_slow, J_fast), N×N. For small networks and the reference engine.

        `efficacies`: per projection its (slow, fast) efficacy ((J_d, J_p) pairs for E->E), as
        from engines.base.channel_efficacies; default: the config's, unscaled."""
        state = self.initial if state is None else state
        dev = self.initial.L.device
        j = {ch: torch.zeros(self.n, self.n, dtype=dtype, device=dev) for ch in ("slow", "fast")}
        for name, attr, pre, post in PROJECTIONS:
            proj = self.projections[name]
            spec = getattr(cfg.projections, attr)
            rows = proj.post_idx.long() + self.offset(post)
            cols = proj.pre_idx() + self.offset(pre)
            slow = proj.is_slow()
            if efficacies is not None:
                per_channel = efficacies[name]
            elif isinstance(spec, PlasticProjection):
                per_channel = ((spec.J_d, spec.J_p),) * 2
            else:
                per_channel = (spec.efficacy,) * 2
            for ch, mask, eff in (("slow", slow, per_channel[0]), ("fast", ~slow, per_channel[1])):
                if isinstance(spec, PlasticProjection):
                    jd, jp = (torch.tensor(e, dtype=dtype, device=dev) for e in eff)
                    values = torch.where(state.potentiated.bool()[mask], jp, jd)
                else:
                    values = torch.full((int(mask.sum()),), eff, dtype=dtype, device=dev)
                j[ch][rows[mask], cols[mask]] = values
        return j["slow"], j["fast"]


def _to_csr(
    name: str,
    pre_pop: str,
    post_pop: str,
    n_pre: int,
    n_post: int,
    pre: torch.Tensor,
    post: torch.Tensor,
    slow: torch.Tensor,
) -> Projection:
    """Sort synapses by (pre, fast-after-slow, post) and build the row pointers."""
    key = (pre * 2 + (~slow).long()) * n_post + post
    order = torch.argsort(key)
    pre, post, slow = pre[order], post[order], slow[order]
    dev = pre.device
    counts = torch.bincount(pre, minlength=n_pre)
    slow_counts = torch.bincount(pre[slow], minlength=n_pre)
    rowptr = torch.zeros(n_pre + 1, dtype=torch.int64, device=dev)
    rowptr[1:] = torch.cumsum(counts, 0)
    return Projection(
        name,
        pre_pop,
        post_pop,
        n_pre,
        n_post,
        rowptr,
        rowptr[:-1] + slow_counts,
        post.to(torch.int32),
    )
