"""The NWB Units table from spikes.h5, in bounded memory, and the hdmf data-chunk iterator that
writes it (and the traces) block by block.

The Units table needs each neuron's spikes together, while spikes.h5 is sorted by time: a
counting pass gives every neuron's spike count; runs with at most `max_spikes_in_memory`
spikes are then sorted by neuron in memory, larger ones are first split (one sequential pass)
into buckets of consecutive neurons, each at most that many spikes, in a temporary HDF5 file
beside the output, and each bucket is sorted and written in turn through an hdmf data-chunk
iterator.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from wmnet.errors import WmnetError
from wmnet.io.run_reader import Run

if TYPE_CHECKING:
    from tqdm import tqdm

READ_CHUNK = 1 << 20  # spikes (or trace rows) read from a source file at a time


def spike_chunks(file: h5py.File, pop: str, chunk: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(timestamps_ms, local node_ids) of one population of an open spikes.h5, `chunk` (default
    READ_CHUNK) at a time (the rows both datasets hold)."""
    chunk = chunk or READ_CHUNK
    if f"spikes/{pop}" not in file:
        return
    g = file[f"spikes/{pop}"]
    ts, ids = g["timestamps"], g["node_ids"]
    n = min(ts.shape[0], ids.shape[0])
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        yield ts[a:b], ids[a:b].astype(np.int64)


def _chunk_iterator(blocks: Iterator[np.ndarray], shape: tuple[int, ...], dtype: np.dtype, chunk_rows: int) -> Any:
    """An hdmf data-chunk iterator over consecutive row blocks of an array of `shape` (written in
    turn by pynwb's HDF5 backend, so only one block is in memory). Empty arrays are returned as such
    (HDF5 cannot chunk a dataset of length 0)."""
    from hdmf.data_utils import AbstractDataChunkIterator, DataChunk

    if shape[0] == 0:
        return np.zeros(shape, dtype=dtype)

    class Chunks(AbstractDataChunkIterator):
        def __init__(self) -> None:
            self.pos = 0

        def __iter__(self) -> Chunks:
            return self

        def __len__(self) -> int:  # hdmf's VectorIndex sizes its dtype from its target's length
            return shape[0]

        def __next__(self) -> DataChunk:
            block = next(blocks)
            while len(block) == 0:
                block = next(blocks)
            a, self.pos = self.pos, self.pos + len(block)
            if self.pos > shape[0]:
                raise WmnetError(f"internal error: {self.pos} rows written to an array of {shape[0]}")
            return DataChunk(
                data=np.ascontiguousarray(block, dtype=dtype),
                selection=(slice(a, self.pos), *(slice(0, d) for d in shape[1:])),
            )

        def recommended_chunk_shape(self) -> tuple[int, ...]:
            return (max(1, min(chunk_rows, shape[0])), *shape[1:])

        def recommended_data_shape(self) -> tuple[int, ...]:
            return shape

        @property
        def dtype(self) -> np.dtype:
            return np.dtype(dtype)

        @property
        def maxshape(self) -> tuple[int, ...]:
            return shape

    return Chunks()


def _unit_spike_times(
    spikes: h5py.File, run: Run, counts: np.ndarray, budget: int, scratch: Path, bar: tqdm, stack: contextlib.ExitStack
) -> Iterator[np.ndarray]:
    """Every spike time (s), grouped by neuron in global order and in time order within a neuron."""
    total = int(counts.sum())
    if total <= budget:
        gids, times = [], []
        for pop, offset, _ in run.populations:
            for ts, ids in spike_chunks(spikes, pop):
                gids.append(ids + offset)
                times.append(ts)
                bar.update(ts.size)
        gid, t = (np.concatenate(x) if x else np.zeros(0) for x in (gids, times))
        order = np.argsort(gid, kind="stable")  # stable: each neuron's spikes stay in time order
        t = t[order] / 1000.0
        del gid, order
        for a in range(0, total, READ_CHUNK):
            yield t[a : a + READ_CHUNK]
        return
    # Buckets of consecutive neurons, each with at most `budget` spikes (a neuron with more is
    # a bucket on its own): one pass over spikes.h5 appends each chunk's spikes to their buckets.
    cum = np.cumsum(counts)
    starts = [0]
    while cum[-1] - (cum[starts[-1] - 1] if starts[-1] else 0) > budget:
        base = cum[starts[-1] - 1] if starts[-1] else 0
        nxt = int(np.searchsorted(cum, base + budget, side="right"))
        starts.append(max(nxt, starts[-1] + 1))
    edges = np.asarray(starts + [run.n])
    tmp = stack.enter_context(h5py.File(scratch, "w", rdcc_nbytes=0))
    stack.callback(scratch.unlink, missing_ok=True)
    buckets = [
        (
            tmp.create_dataset(f"t{b}", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(65536,)),
            tmp.create_dataset(f"i{b}", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(65536,)),
        )
        for b in range(len(starts))
    ]
    for pop, offset, _ in run.populations:
        for ts, ids in spike_chunks(spikes, pop):
            gid = ids + offset
            which = np.searchsorted(edges, gid, side="right") - 1
            order = np.argsort(which, kind="stable")
            bounds = np.searchsorted(which[order], np.arange(len(buckets) + 1))
            for b, (dt_, di) in enumerate(buckets):
                sel = order[bounds[b] : bounds[b + 1]]
                if sel.size:
                    n0 = dt_.shape[0]
                    dt_.resize(n0 + sel.size, axis=0)
                    di.resize(n0 + sel.size, axis=0)
                    dt_[n0:], di[n0:] = ts[sel], gid[sel]
            bar.update(ts.size)
    for dt_, di in buckets:
        t, gid = dt_[()], di[()]
        t = t[np.argsort(gid, kind="stable")] / 1000.0
        del gid
        for a in range(0, t.size, READ_CHUNK):
            yield t[a : a + READ_CHUNK]
            bar.update(min(READ_CHUNK, t.size - a))


def _add_units(
    nwbfile: Any, run: Run, all_units: bool, budget: int, scratch: Path, progress: bool, stack: contextlib.ExitStack
) -> None:
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units
    from tqdm import tqdm

    path = run.path / "spikes.h5"
    if not path.exists():
        return
    spikes = stack.enter_context(h5py.File(path, "r", locking=False))
    counts = np.zeros(run.n, dtype=np.int64)
    for pop, offset, size in run.populations:  # the counting pass
        for _, ids in spike_chunks(spikes, pop):
            if ids.size and (ids.min() < 0 or ids.max() >= size):
                raise WmnetError(f"{path}: spikes/{pop}/node_ids holds ids outside 0..{size - 1}")
            counts[offset : offset + size] += np.bincount(ids, minlength=size)
    total = int(counts.sum())
    passes = 1 if total <= budget else 2
    bar = stack.enter_context(
        tqdm(total=passes * total, unit="spike", unit_scale=True, disable=not progress, desc="units", file=sys.stderr)
    )
    keep = np.arange(run.n) if all_units else np.flatnonzero(counts)
    times = _unit_spike_times(spikes, run, counts, budget, scratch, bar, stack)
    population = np.where(keep < run.n_e, "E", "I")
    spike_times = VectorData(
        name="spike_times",
        description="pulse onsets (s), in time order within each unit",
        data=_chunk_iterator(times, (total,), np.dtype(np.float64), 1 << 16),
    )
    # The index before its target: hdmf's DynamicTable drops chunk-iterator columns from its
    # length check as it meets them, and then would not find the index's target.
    columns = [
        VectorIndex(name="spike_times_index", data=np.cumsum(counts[keep]).astype(np.uint64), target=spike_times),
        spike_times,
        VectorData(name="population", description="the neuron's population (E or I)", data=population.tolist()),
        VectorData(
            name="node_id",
            description="the neuron's index within its population (SONATA node id)",
            data=np.where(keep < run.n_e, keep, keep - run.n_e).astype(np.int64),
        ),
    ]
    member = {name: np.isin(keep, ids) for name, ids in run.groups.items()}
    names = np.array(list(member), dtype=object)
    table = np.stack(list(member.values()), axis=1) if member else np.zeros((keep.size, 0), dtype=bool)
    columns.append(
        VectorData(
            name="groups",
            description="the neuron's groups (node_sets.json), '+'-joined",
            data=["+".join(names[row]) for row in table],
        )
    )
    for name, m in member.items():
        columns.append(
            VectorData(
                name=f"in_{name.replace('/', '_')}", data=m, description=f"member of group {name} (node_sets.json)"
            )
        )
    desc = "wmnet neurons: id = global neuron index (E first). " + (
        "every neuron" if all_units else "the neurons that spiked at least once"
    )
    nwbfile.units = Units(
        name="units",
        id=ElementIdentifiers(name="id", data=keep.astype(np.int64)),
        columns=columns,
        description=desc,
        resolution=run.dt / 1000.0,
    )
