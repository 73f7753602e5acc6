"""Are two run folders the same results? .venv/bin/python bench/compare_runs.py RUN_A RUN_B

Compares every dataset of every HDF5 file (spikes.h5, reports/*.h5, rates.h5, synapses.h5, snapshots)
bit for bit, and the text outputs (epoch_rates.tsv, events.tsv, node_sets.json) line for line.
run.json (wall times, paths) and checkpoint.pt are not compared. Exit status 1 on any difference.
Used to check that a refactor changes no result (issue 15)."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

TEXT = ["epoch_rates.tsv", "events.tsv", "node_sets.json", "config.yaml"]


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def compare(a: Path, b: Path) -> list[str]:
    diffs: list[str] = []
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.h5"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*.h5"))
    if files_a != files_b:
        diffs.append(f"HDF5 files differ: {sorted(set(map(str, files_a)) ^ set(map(str, files_b)))}")
    for rel in sorted(set(files_a) & set(files_b)):
        da, db = _datasets(a / rel), _datasets(b / rel)
        if da.keys() != db.keys():
            diffs.append(f"{rel}: datasets differ: {sorted(set(da) ^ set(db))}")
        for name in sorted(set(da) & set(db)):
            x, y = da[name], db[name]
            same = x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
            if not same:
                diffs.append(f"{rel}:{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
    for name in TEXT:
        pa, pb = a / name, b / name
        if pa.exists() != pb.exists():
            diffs.append(f"{name}: only in one folder")
        elif pa.exists() and pa.read_bytes() != pb.read_bytes():
            diffs.append(f"{name}: contents differ")
    return diffs


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    diffs = compare(a, b)
    for d in diffs:
        print(d)
    print("identical" if not diffs else f"{len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
