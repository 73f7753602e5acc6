"""Drawing the connectivity and the initial E→E state from the run's seed, sparse from the start.

Bernoulli projections (`_bernoulli_csr`, pair by pair, by geometric gaps) and fixed in-degree ones
(`_fixed_indegree_csr`, two passes over chunks with their own random streams), both built straight
into the CSR order of connectivity.py; the initial potentiated bits, with the optional prototype
`structure` of E→E (`_structure_probabilities`, `_synapse_kind`); `generate` puts them together.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from wmnet.config import Config, PlasticProjection, StaticProjection
from wmnet.connectivity import EE, PROJECTIONS, Connectivity, Projection, SynapseState
from wmnet.errors import WmnetError
from wmnet.rng import generator

# Synapses (fixed in-degree: candidates) generated per chunk: bounds temporary memory whatever
# the network size.
_CHUNK_SYNAPSES = 1 << 23


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
