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
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmnet import model
from wmnet.config import Config, PlasticProjection, StaticProjection
from wmnet.errors import WmnetError
from wmnet.rng import generator

# (name, config attribute, pre population, post population), from the model schema.
PROJECTIONS: tuple[tuple[str, str, str, str], ...] = tuple((p.name, p.field, p.pre, p.post) for p in model.PROJECTIONS)
EE = model.PLASTIC.name  # the projection whose state is SynapseState

# Synapses (fixed in-degree: candidates) generated per chunk: bounds temporary memory whatever
# the network size.
_CHUNK_SYNAPSES = 1 << 23


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


# ---------------------------------------------------------------------------------------------
# Generation


def _bernoulli_chunk(
    rows: torch.Tensor, n_cols: int, q: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of the ones of Bernoulli(q) rows `rows` × n_cols, sorted row-major.

    Geometric gap sampling: the distance between successive ones in a row is Geometric(q),
    so the work is proportional to the number of synapses, never to rows × columns.
    """
    dev = rows.device
    empty = torch.empty(0, dtype=torch.int64, device=dev)
    if q <= 0 or n_cols == 0 or rows.numel() == 0:
        return empty, empty
    mean = n_cols * q
    draws = min(n_cols, int(math.ceil(mean + 8 * math.sqrt(mean * (1 - q)) + 16)))
    log1mq = math.log1p(-q) if q < 1 else -math.inf
    rows_out, cols_out = [], []
    todo = rows
    while todo.numel():
        u = torch.rand(todo.numel(), draws, generator=gen, device=dev, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-u) / log1mq) + 1 if q < 1 else torch.ones_like(u)
        pos = torch.cumsum(gaps, dim=1) - 1
        # A row whose draws ended before n_cols is redrawn whole (beyond 8 sigma: very rare).
        short = pos[:, -1] < n_cols - 1 if draws < n_cols else torch.zeros_like(pos[:, 0], dtype=torch.bool)
        keep = (pos < n_cols) & ~short[:, None]
        r, c = keep.nonzero(as_tuple=True)
        rows_out.append(todo[r])
        cols_out.append(pos[r, c].long())
        todo = todo[short]
    row, col = torch.cat(rows_out), torch.cat(cols_out)
    if len(rows_out) > 1:  # redrawn rows came last: restore row-major order
        order = torch.argsort(row * n_cols + col)
        row, col = row[order], col[order]
    return row, col


def _bernoulli_csr(
    name: str,
    pre_pop: str,
    post_pop: str,
    n_pre: int,
    n_post: int,
    spec: StaticProjection | PlasticProjection,
    gen: torch.Generator,
    device: torch.device,
) -> Projection:
    """The seed's rule, pair by pair: slow ~ B(p·r); fast ~ B(p·(1−r)), kept only where not slow.

    Built in chunks of presynaptic rows, placed straight into CSR order (slow block, then
    fast block, each by post) without sorting; memory beyond the result is one chunk.
    """
    square = pre_pop == post_pop
    n_cols = n_post - 1 if square else n_post  # square blocks skip the diagonal
    p_slow, p_fast = spec.p * spec.slow_fraction, spec.p * (1 - spec.slow_fraction)
    per_row = max(1.0, n_cols * (p_slow + p_fast))
    chunk = max(1, int(_CHUNK_SYNAPSES // per_row))
    counts = torch.zeros(n_pre, dtype=torch.int64, device=device)
    slow_counts = torch.zeros(n_pre, dtype=torch.int64, device=device)
    parts: list[torch.Tensor] = []
    for start in range(0, n_pre, chunk):
        rows = torch.arange(start, min(n_pre, start + chunk), device=device)
        m = rows.numel()
        rs, cs = _bernoulli_chunk(rows, n_cols, p_slow, gen)
        rf, cf = _bernoulli_chunk(rows, n_cols, p_fast, gen)
        ks, kf = rs * n_cols + cs, rf * n_cols + cf
        if ks.numel() and kf.numel():  # drop fast where slow: both key lists are sorted
            hit = torch.searchsorted(ks, kf).clamp(max=ks.numel() - 1)
            fast_ok = ks[hit] != kf
            rf, cf = rf[fast_ok], cf[fast_ok]
        if square:
            cs = cs + (cs >= rs).long()
            cf = cf + (cf >= rf).long()
        c_s = torch.bincount(rs - start, minlength=m)
        c_f = torch.bincount(rf - start, minlength=m)
        ptr = torch.cumsum(c_s + c_f, 0) - (c_s + c_f)  # chunk-local row starts
        first_s = torch.cumsum(c_s, 0) - c_s
        first_f = torch.cumsum(c_f, 0) - c_f
        out = torch.empty(int((c_s + c_f).sum()), dtype=torch.int32, device=device)
        ls, lf = rs - start, rf - start
        out[ptr[ls] + torch.arange(ls.numel(), device=device) - first_s[ls]] = cs.to(torch.int32)
        out[ptr[lf] + c_s[lf] + torch.arange(lf.numel(), device=device) - first_f[lf]] = cf.to(torch.int32)
        parts.append(out)
        counts[start : start + m] = c_s + c_f
        slow_counts[start : start + m] = c_s
    rowptr = torch.zeros(n_pre + 1, dtype=torch.int64, device=device)
    rowptr[1:] = torch.cumsum(counts, 0)
    post = torch.empty(int(rowptr[-1]), dtype=torch.int32, device=device)
    pos = 0
    parts.reverse()
    while parts:  # copy chunk by chunk, freeing each: peak = result + one chunk
        part = parts.pop()
        post[pos : pos + part.numel()] = part
        pos += part.numel()
    return Projection(name, pre_pop, post_pop, n_pre, n_post, rowptr, rowptr[:-1] + slow_counts, post)


def _indegree_candidates(pool: int, k: int) -> int:
    """Candidates drawn per post: enough that k of them are distinct but for an 8-sigma event."""
    if k >= pool:
        return pool
    extra = int(math.ceil(k * k / max(pool, 1))) + 8 * int(math.sqrt(k)) + 16
    return min(k + extra, 4 * k + 64)


def _indegree_draw(
    posts: torch.Tensor, pool: int, k: int, m: int, square: bool, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(post, pre) with exactly k distinct pre for each of `posts` (no autapse if square).

    Post-major, each post's pres ascending. Draw m candidates with replacement, drop the
    duplicates, then keep k of the distinct values at random (those with the k smallest random
    keys): the distinct set is exchangeable, so the k-subset is uniform. A post with fewer than
    k distinct candidates is redrawn.
    """
    dev = posts.device
    posts_out, pres_out = [], []
    while posts.numel():
        if k == pool:
            cand = torch.arange(pool, device=dev).expand(posts.numel(), pool).clone()
        else:
            cand = torch.randint(pool, (posts.numel(), m), generator=gen, device=dev)
        cand, _ = torch.sort(cand, dim=1)
        dup = torch.zeros_like(cand, dtype=torch.bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        ok = (~dup).sum(dim=1) >= k
        keep = ~dup
        if m > k:
            keys = torch.rand(cand.shape, generator=gen, device=dev)
            keys[dup] = 2.0  # duplicates go first among the m − k dropped
            keep.scatter_(1, torch.topk(keys, m - k, dim=1).indices, False)
            del keys
        keep &= ok[:, None]
        del dup
        chosen = cand[keep].view(-1, k)
        del cand, keep
        if square:
            chosen += chosen >= posts[ok, None]
        posts_out.append(posts[ok, None].expand(-1, k).reshape(-1))
        pres_out.append(chosen.reshape(-1))
        posts = posts[~ok]
    if len(posts_out) == 1:
        return posts_out[0], pres_out[0]
    post, pre = torch.cat(posts_out), torch.cat(pres_out)
    order = torch.argsort(post, stable=True)  # redrawn posts came last: restore post-major
    return post[order], pre[order]


def _indegree_chunks(
    seed: int,
    name: str,
    n_pre: int,
    n_post: int,
    k: int,
    square: bool,
    slow_fraction: float,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The fixed in-degree rule, chunk by chunk of posts: (post, pre, slow) of each chunk.

    Each post receives k distinct pre (none itself if square); each synapse is slow with
    probability `slow_fraction`. A chunk holds at most `_CHUNK_SYNAPSES` candidates, and its
    draws come from its own generator (stream "connectivity:<name>:<chunk>"), so iterating
    again yields the very same chunks: that is what lets `_fixed_indegree_csr` run two passes
    without keeping the synapses in between.
    """
    pool = n_pre - 1 if square else n_pre
    if k > pool:
        raise WmnetError(f"k_in = {k} exceeds the {pool} available presynaptic neurons")
    if k == 0:
        return
    m = _indegree_candidates(pool, k)
    chunk = max(1, _CHUNK_SYNAPSES // m)
    for index, start in enumerate(range(0, n_post, chunk)):
        gen = generator(seed, f"connectivity:{name}:{index}", device)
        posts = torch.arange(start, min(n_post, start + chunk), device=device)
        post, pre = _indegree_draw(posts, pool, k, m, square, gen)
        slow = torch.rand(pre.numel(), generator=gen, device=device) < slow_fraction
        yield post, pre, slow


def _fixed_indegree_csr(
    name: str,
    pre_pop: str,
    post_pop: str,
    n_pre: int,
    n_post: int,
    k: int,
    slow_fraction: float,
    seed: int,
    device: torch.device,
) -> Projection:
    """A fixed in-degree projection built straight into CSR order, in two passes over chunks.

    Synapse (pre j, channel c), c = 0 slow, 1 fast, belongs to block g = 2 j + c; the blocks
    are stored in order of g, each sorted by post. Pass 1 counts the synapses of every block,
    which gives `rowptr` and `split`. Pass 2 draws the same chunks again, sorts each one by
    (pre, slow before fast, post) and writes every post index to its final place: after the
    synapses that earlier chunks put in the same block. Chunks come in increasing post order,
    so each block ends up sorted by post: the layout `_to_csr` gives. Nothing is sorted beyond
    one chunk, so the memory beyond the result is one chunk's temporaries (some 50 bytes per
    candidate) plus a few arrays of 2 n_pre.
    """
    square = pre_pop == post_pop

    def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return _indegree_chunks(seed, name, n_pre, n_post, k, square, slow_fraction, device)

    blocks = 2 * n_pre
    counts = torch.zeros(blocks, dtype=torch.int64, device=device)
    for _, pre, slow in chunks():  # pass 1: the size of every block
        counts += torch.bincount(pre * 2 + ~slow, minlength=blocks)
    rowptr = torch.zeros(n_pre + 1, dtype=torch.int64, device=device)
    rowptr[1:] = torch.cumsum(counts.view(n_pre, 2).sum(dim=1), 0)
    split = rowptr[:-1] + counts[0::2]
    post_idx = torch.empty(int(rowptr[-1]), dtype=torch.int32, device=device)
    fill = torch.stack([rowptr[:-1], split], dim=1).view(-1)  # next free slot of each block
    del counts
    small = torch.int32 if blocks <= torch.iinfo(torch.int32).max else torch.int64
    for post, pre, slow in chunks():  # pass 2: the same chunks, placed
        # the chunk is post-major, so a stable sort by block leaves each block sorted by post
        block, order = torch.sort((pre * 2 + ~slow).to(small), stable=True)
        del pre, slow
        post = post[order]
        del order
        c = torch.bincount(block, minlength=blocks)
        # the i-th synapse of the sorted chunk is number i - first[g] of its block g in this chunk
        first = torch.cumsum(c, 0) - c
        dest = torch.arange(block.numel(), device=device)
        dest += (fill - first)[block]
        post_idx[dest] = post.to(torch.int32)
        fill += c
        del block, post, dest, c, first
    if not (torch.equal(fill[0::2], split) and torch.equal(fill[1::2], rowptr[1:])):
        raise RuntimeError(f"{name}: the two passes over the chunks drew different synapses")
    return Projection(name, pre_pop, post_pop, n_pre, n_post, rowptr, split, post_idx)


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


# Kinds of E→E synapse for `structure` (index into the probability table).
_KINDS = ("within", "between", "to_nonselective", "from_nonselective", "nonselective")


def _structure_probabilities(cfg: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(float32 probability per kind, prototype membership per E neuron), or None without structure.

    Membership is the group index (-1: nonselective) for disjoint groups, and a bit mask of the
    groups (0: nonselective) when groups overlap.
    """
    st = cfg.projections.EE.structure
    if st is None:
        return None
    pr = cfg.groups.prototypes
    assert pr is not None  # Config checks it
    base = cfg.projections.EE.p_potentiated
    # float32, as torch.rand draws: without structure the draw is compared with a float32 scalar too.
    table = torch.tensor(
        [base if getattr(st, k) is None else getattr(st, k) for k in _KINDS], dtype=torch.float32, device=device
    )
    n_e = cfg.populations.E.size
    groups = cfg.resolve_groups()
    if cfg.groups.overlap:
        if pr.count > 62:
            raise WmnetError("projections.E->E.structure: at most 62 overlapping prototype groups")
        member = torch.zeros(n_e, dtype=torch.int64)
        for i in range(pr.count):
            ids = torch.as_tensor(groups[f"{pr.prefix}{i + 1}"], dtype=torch.int64)
            member[ids[ids < n_e]] |= 1 << i
    else:
        member = torch.full((n_e,), -1, dtype=torch.int64)
        for i in range(pr.count):
            ids = torch.as_tensor(groups[f"{pr.prefix}{i + 1}"], dtype=torch.int64)
            member[ids[ids < n_e]] = i
    return table, member.to(device)


def _synapse_kind(member: torch.Tensor, pre: torch.Tensor, post: torch.Tensor, overlap: bool) -> torch.Tensor:
    """Index into `_KINDS` of each synapse pre→post (local E indices)."""
    mp, mq = member[pre], member[post]
    if overlap:
        in_pre, in_post, same = mp != 0, mq != 0, (mp & mq) != 0
    else:
        in_pre, in_post, same = mp >= 0, mq >= 0, mp == mq
    kind = torch.full_like(pre, 4)  # nonselective → nonselective
    kind[in_pre & ~in_post] = 2  # group → nonselective
    kind[~in_pre & in_post] = 3  # nonselective → group
    kind[in_pre & in_post] = 1  # between groups
    kind[in_pre & in_post & same] = 0  # within a group
    return kind


def generate(cfg: Config, device: torch.device, dtype: torch.dtype) -> Connectivity:
    """Draw the connectivity and initial E→E state from the run's seed, sparse from the start."""
    gen = generator(cfg.seed, "connectivity", device)
    sizes = {"E": cfg.populations.E.size, "I": cfg.populations.I.size}
    projections: dict[str, Projection] = {}
    for name, attr, pre_pop, post_pop in PROJECTIONS:
        spec = getattr(cfg.projections, attr)
        n_pre, n_post = sizes[pre_pop], sizes[post_pop]
        if spec.k_in is None:
            projections[name] = _bernoulli_csr(name, pre_pop, post_pop, n_pre, n_post, spec, gen, device)
            continue
        projections[name] = _fixed_indegree_csr(
            name, pre_pop, post_pop, n_pre, n_post, spec.k_in, spec.slow_fraction, cfg.seed, device
        )
    ee = projections[EE]
    n_ee = ee.n_synapses
    sgen = generator(cfg.seed, "synapse_state", device)
    pot = torch.empty(n_ee, dtype=torch.uint8, device=device)
    kind_p = _structure_probabilities(cfg, device)
    pre_all = ee.pre_idx() if kind_p is not None else None
    for start in range(0, n_ee, _CHUNK_SYNAPSES):  # in chunks: no n_EE-sized float temporary
        end = min(n_ee, start + _CHUNK_SYNAPSES)
        # The same uniform draws with or without structure: only the threshold differs per synapse.
        u = torch.rand(end - start, generator=sgen, device=device)
        if kind_p is None:
            pot[start:end] = u < cfg.projections.EE.p_potentiated
        else:
            assert pre_all is not None
            table, member = kind_p
            pre, post = pre_all[start:end], ee.post_idx[start:end].long()
            pot[start:end] = u < table[_synapse_kind(member, pre, post, cfg.groups.overlap)]
    initial = SynapseState(pot, pot.to(dtype))
    # .to: post indices in the device's index dtype (post_index_dtype), as every Connectivity has them
    return Connectivity(sizes["E"], sizes["I"], projections, initial, "generated").to(device, dtype)


# ---------------------------------------------------------------------------------------------
# Import


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read whole and the file closed; one WmnetError naming the
    file for anything that is not a readable .npz of plain (non-object) arrays: an empty,
    truncated or CRC-broken file, a renamed .npy, pickled objects."""
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise WmnetError(f"{path}: cannot read {what}: a single .npy array, not an .npz archive of arrays")
            with data:
                return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error) as e:
        reason = (
            "the file is empty"
            if isinstance(e, EOFError)
            else (getattr(e, "strerror", None) or str(e) or type(e).__name__)
        )
        raise WmnetError(f"{path}: cannot read {what} ({reason})") from None


def load_dense(path: str | Path, cfg: Config, device: torch.device, dtype: torch.dtype) -> Connectivity:
    """Import dense post×pre `j_fast`, `j_slow` (and optional `l`) from an .npz file.

    Static projections must carry their configured efficacy; E→E entries must be J_p or J_d.
    """
    path = Path(path)
    return _load_dense_arrays(path, _read_dense(path, read_npz(path, "connectivity")), cfg, device, dtype)


def _load_dense_arrays(
    path: Path, arrays: dict[str, np.ndarray], cfg: Config, device: torch.device, dtype: torch.dtype
) -> Connectivity:
    """load_dense on arrays already read (float64) from `path`."""
    for key in ("j_fast", "j_slow"):
        if key not in arrays:
            raise WmnetError(f"{path}: missing array {key!r} (expected j_fast, j_slow, optional l)")
    unknown = set(arrays) - {"j_fast", "j_slow", "l"}
    if unknown:
        raise WmnetError(f"{path}: unknown array(s) {sorted(unknown)} (expected j_fast, j_slow, l)")
    n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
    n = n_e + n_i
    for key, arr in arrays.items():
        if arr.shape != (n, n):
            raise WmnetError(f"{path}: {key} has shape {arr.shape}, expected ({n}, {n}) = N×N post×pre")
        if not np.isfinite(arr).all():
            raise WmnetError(f"{path}: {key} holds non-finite values")
    fast, slow_m = arrays["j_fast"], arrays["j_slow"]
    both = (fast != 0) & (slow_m != 0)
    if both.any():
        i, j = np.argwhere(both)[0]
        raise WmnetError(f"{path}: j_fast and j_slow overlap at {int(both.sum())} entries (first: post {i}, pre {j})")
    off = {"E": 0, "I": n_e}
    size = {"E": n_e, "I": n_i}
    projections: dict[str, Projection] = {}
    ee_values = ee_l = None
    for name, attr, pre_pop, post_pop in PROJECTIONS:
        spec = getattr(cfg.projections, attr)
        rs = slice(off[post_pop], off[post_pop] + size[post_pop])
        cs = slice(off[pre_pop], off[pre_pop] + size[pre_pop])
        blocks = {"slow": slow_m[rs, cs], "fast": fast[rs, cs]}
        if isinstance(spec, StaticProjection):
            for ch, blk in blocks.items():
                vals = blk[blk != 0]
                if vals.size and not np.allclose(vals, spec.efficacy, rtol=1e-3, atol=0):
                    raise WmnetError(
                        f"{path}: {name} {ch} entries must all equal the configured efficacy "
                        f"{spec.efficacy} (set projections.{name}.efficacy to match the file)"
                    )
        # Transposed so that nonzero() walks pre-major, as the CSR wants.
        pre_s, post_s = np.nonzero(blocks["slow"].T)
        pre_f, post_f = np.nonzero(blocks["fast"].T)
        pre = np.concatenate([pre_s, pre_f])
        post = np.concatenate([post_s, post_f])
        slow = np.concatenate([np.ones(pre_s.size, bool), np.zeros(pre_f.size, bool)])
        proj = _to_csr(
            name,
            pre_pop,
            post_pop,
            size[pre_pop],
            size[post_pop],
            torch.from_numpy(pre).to(device),
            torch.from_numpy(post).to(device),
            torch.from_numpy(slow).to(device),
        )
        projections[name] = proj
        if name == EE:
            p_idx = proj.pre_idx().cpu().numpy()
            q_idx = proj.post_idx.long().cpu().numpy()
            is_slow = proj.is_slow().cpu().numpy()
            ee_values = np.where(is_slow, blocks["slow"][q_idx, p_idx], blocks["fast"][q_idx, p_idx])
            ee_l = arrays["l"][q_idx, p_idx] if "l" in arrays else None
    assert ee_values is not None
    ee = cfg.projections.EE
    is_p = np.isclose(ee_values, ee.J_p, rtol=1e-3, atol=0)
    is_d = np.isclose(ee_values, ee.J_d, rtol=1e-3, atol=0)
    if not (is_p | is_d).all():
        bad = ee_values[~(is_p | is_d)][0]
        raise WmnetError(f"{path}: E->E efficacies must be J_p = {ee.J_p} or J_d = {ee.J_d} (found {bad:g})")
    L = ee_l if ee_l is not None else is_p.astype(np.float64)
    initial = SynapseState(torch.from_numpy(is_p.astype(np.uint8)).to(device), torch.from_numpy(L).to(device, dtype))
    return Connectivity(n_e, n_i, projections, initial, str(path)).to(device, dtype)


# ---------------------------------------------------------------------------------------------
# Snapshots: the whole connectivity with the E→E state, sparse, as compressed .npz

SNAPSHOT_FORMAT = "wmnet-connectivity-1"
_KEYS = {p.name: p.field for p in model.PROJECTIONS}  # file keys: EE_rowptr, ...


def save_snapshot(path: Path, conn: Connectivity, state: SynapseState, meta: dict[str, float | int]) -> None:
    """Write every projection's CSR (rowptr, split, post) and the E→E state (potentiated, L),
    compressed, atomically (temporary file, then rename). `meta` (t_ms, step, seed) goes in too."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(SNAPSHOT_FORMAT),
        "n_E": np.array(conn.n_E),
        "n_I": np.array(conn.n_I),
    }
    arrays.update({k: np.array(v) for k, v in meta.items()})
    for name, key in _KEYS.items():
        p = conn.projections[name]
        arrays[f"{key}_rowptr"] = p.rowptr.cpu().numpy()
        arrays[f"{key}_split"] = p.split.cpu().numpy()
        arrays[f"{key}_post"] = p.post_idx.cpu().numpy().astype(np.int32)  # the file format stays int32
    arrays["EE_potentiated"] = state.potentiated.cpu().numpy()
    arrays["EE_L"] = state.L.cpu().numpy()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds typed as allow_pickle
    tmp.replace(path)


def _read_dense(path: Path, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of a dense connectivity file as float64; real numbers only."""
    out = {}
    for k, a in raw.items():
        if a.dtype.kind not in "biuf":
            raise WmnetError(f"{path}: array {k!r} has dtype {a.dtype}; expected real numbers")
        out[k] = np.asarray(a, dtype=np.float64)
    return out


def load_connectivity(path: str | Path, cfg: Config, device: torch.device, dtype: torch.dtype) -> Connectivity:
    """A snapshot written by a run (`record.snapshots`) or dense post×pre matrices (`load_dense`)."""
    path = Path(path)
    arrays = read_npz(path, "connectivity")  # read once: every later check uses these arrays
    if "format" in arrays:
        return _load_snapshot(path, arrays, cfg, device, dtype)
    return _load_dense_arrays(path, _read_dense(path, arrays), cfg, device, dtype)


_SNAPSHOT_ARRAYS = (
    "n_E",
    "n_I",
    "EE_potentiated",
    "EE_L",
    *(f"{k}_{part}" for k in _KEYS.values() for part in ("rowptr", "split", "post")),
)


def _load_snapshot(
    path: Path, d: dict[str, np.ndarray], cfg: Config, device: torch.device, dtype: torch.dtype
) -> Connectivity:
    missing = [k for k in _SNAPSHOT_ARRAYS if k not in d]
    if missing:
        raise WmnetError(f"{path}: not a complete wmnet snapshot: missing array(s) {', '.join(missing)}")
    bad = [
        k
        for k in ("format", *_SNAPSHOT_ARRAYS)
        if (d[k].dtype.kind not in "biuf" if k != "format" else False)
        or (k in ("n_E", "n_I", "format") and d[k].size != 1)
    ]
    if bad:
        raise WmnetError(f"{path}: snapshot array(s) {', '.join(bad)} have the wrong type or size")
    if str(d["format"]) != SNAPSHOT_FORMAT:
        raise WmnetError(f"{path}: unknown snapshot format {str(d['format'])!r} (expected {SNAPSHOT_FORMAT})")
    n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
    if (int(d["n_E"]), int(d["n_I"])) != (n_e, n_i):
        raise WmnetError(
            f"{path}: snapshot of {int(d['n_E'])} E + {int(d['n_I'])} I neurons, but the config has {n_e} E + {n_i} I"
        )
    size = {"E": n_e, "I": n_i}
    projections: dict[str, Projection] = {}
    for name, key, pre_pop, post_pop in PROJECTIONS:  # the config attribute is the file's key
        rowptr, split, post = d[f"{key}_rowptr"], d[f"{key}_split"], d[f"{key}_post"]
        n_pre, n_post = size[pre_pop], size[post_pop]
        ok = (
            rowptr.shape == (n_pre + 1,)
            and split.shape == (n_pre,)
            and rowptr[0] == 0
            and rowptr[-1] == post.size
            and (np.diff(rowptr) >= 0).all()
            and (split >= rowptr[:-1]).all()
            and (split <= rowptr[1:]).all()
            and (post.size == 0 or (post.min() >= 0 and post.max() < n_post))
        )
        if not ok:
            raise WmnetError(f"{path}: projection {name} is not a valid CSR of {n_pre} × {n_post} neurons")
        projections[name] = Projection(
            name,
            pre_pop,
            post_pop,
            n_pre,
            n_post,
            torch.from_numpy(rowptr.astype(np.int64)).to(device),
            torch.from_numpy(split.astype(np.int64)).to(device),
            torch.from_numpy(post.astype(np.int32)).to(device),
        )
    pot, L = d["EE_potentiated"], d["EE_L"]
    n_ee = projections[EE].n_synapses
    if pot.shape != (n_ee,) or L.shape != (n_ee,) or not np.isin(pot, (0, 1)).all() or not np.isfinite(L).all():
        raise WmnetError(f"{path}: the E->E state must hold {n_ee} potentiated bits (0/1) and finite L values")
    state = SynapseState(torch.from_numpy(pot.astype(np.uint8)).to(device), torch.from_numpy(L).to(device, dtype))
    return Connectivity(n_e, n_i, projections, state, str(path)).to(device, dtype)
