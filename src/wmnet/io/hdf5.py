"""HDF5 helpers shared by the run's writers (io/sonata.py: spikes and reports; io/series.py: rates.h5 and
synapses.h5) and their live readers.

Writers open their files without HDF5's file locking (`locking=False`), so another process can open them
while the run writes, with a plain `h5py.File(path, "r")` too (a writer that held HDF5's lock would make that
fail with "unable to lock file"; the environment variable HDF5_USE_FILE_LOCKING=TRUE or BEST_EFFORT overrides
`locking=False` and brings that back, for the writer's and for a reader's own process alike). HDF5 gives such
a reader no isolation from the writer (that would take SWMR, whose files a plain reader cannot open after a
crash and a resumed run cannot reopen): a read that overlaps a flush can fail ("addr overflow") or see one
dataset a flush ahead of its sibling, so `read_live` retries failed reads and the readers built on it return
the consistent prefix.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from wmnet.errors import WmnetError

T = TypeVar("T")


def open_for_writing(path: Path, append: bool) -> h5py.File:
    """A new file ("w") or an existing one ("r+"), without HDF5 file locking: readers in other
    processes may open it while the run writes (see the module's docstring).

    No chunk cache (rdcc_nbytes=0): an append goes straight to the file. With HDF5's default
    chunk cache (8 MiB per dataset in HDF5 2.0, 1 MiB in 1.x) each appendable dataset kept up to
    8 MiB of chunks it had written in memory, so a run's RSS kept growing for minutes of simulated
    time (towards 8 MiB × its ~20 datasets), and every flush rewrote each partial chunk whole
    (about 20 times the bytes in a test of 1000 neurons). The writers only append and never
    read data back, so the cache bought nothing (docs/performance.md, "Memory over long runs")."""
    if not append:
        return h5py.File(path, "w", locking=False, rdcc_nbytes=0)
    try:
        return h5py.File(path, "r+", locking=False, rdcc_nbytes=0)
    except FileNotFoundError:
        raise WmnetError(f"{path}: missing, cannot continue the run's output") from None
    except OSError as e:  # h5py's error for a truncated or overwritten file
        raise WmnetError(
            f"{path}: cannot continue the run's output: not a readable HDF5 file, damaged ({first_line(e)})"
        ) from None


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


@contextmanager
def reopened(path: Path, file: h5py.File) -> Iterator[None]:
    """Around the lookups of a reopened file: a missing or wrong dataset is one WmnetError naming
    the file (and the file is closed), not a KeyError."""
    try:
        yield
    except (KeyError, OSError, ValueError, TypeError) as e:
        file.close()
        raise WmnetError(
            f"{path}: cannot continue the run's output: the file is damaged or was not written by "
            f"wmnet ({first_line(e)})"
        ) from None


def read_live(
    path: Path, read: Callable[[h5py.File], T], ok: Callable[[T], bool] = lambda _: True, tries: int = 8
) -> T:
    """read(file) of a file that a run may be writing: opened without taking HDF5's lock (so a
    writer holding it does not block this), retried while the read raises or its result is not
    `ok` (a read that overlapped the writer's flush). A missing file, or one
    that still fails after `tries` attempts (about 1.3 s of waits), raises; a result still not
    `ok` is returned."""
    for attempt in range(tries):
        last = attempt == tries - 1
        try:
            with h5py.File(path, "r", locking=False) as f:
                out = read(f)
        except FileNotFoundError:
            raise
        except Exception:  # h5py raises OSError, KeyError, RuntimeError... for a half-written object
            if last:
                e = sys.exc_info()[1]
                assert e is not None
                if isinstance(e, WmnetError):
                    raise
                raise WmnetError(
                    f"{path}: cannot read it: the file is damaged or was not written by wmnet "
                    f"({type(e).__name__}: {first_line(e)})"
                ) from None
        else:
            if last or ok(out):
                return out
        time.sleep(0.01 * 2 ** min(attempt, 6))
    raise AssertionError("unreachable")


def appendable(group: h5py.Group, name: str, dtype: np.dtype | type, width: int | None = None) -> h5py.Dataset:
    """An empty dataset of `dtype` that grows along its first axis (1-D, or rows of `width`), in chunks of
    about 64 Ki elements."""
    shape = (0,) if width is None else (0, width)
    maxshape = (None,) if width is None else (None, width)
    chunks = (65536,) if width is None else (max(1, 65536 // max(width, 1)), width)
    return group.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks)


def append_rows(ds: h5py.Dataset, values: np.ndarray) -> None:
    """Append `values` along the first axis of an appendable dataset (not flushed)."""
    n = ds.shape[0]
    ds.resize(n + values.shape[0], axis=0)
    ds[n:] = values


def truncate_rows(ds: h5py.Dataset, n: int) -> None:
    """Keep the first n rows (a checkpoint's position); fewer rows than n is a WmnetError."""
    if not 0 <= n <= ds.shape[0]:
        raise WmnetError(f"{ds.file.filename}: {ds.name} holds {ds.shape[0]} rows, the checkpoint expects {n} or more")
    ds.resize(n, axis=0)
