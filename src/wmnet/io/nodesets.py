"""Neuron groups as a SONATA node-sets file (node_sets.json).

A group within one population is {"population": P, "node_id": [local ids]}; a group with E and
I neurons is a compound node set: the list of its parts "<group>:E" and "<group>:I".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wmnet.config import Group, group_ids
from wmnet.io.runinfo import write_json


def node_sets(groups: dict[str, Group], n_e: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, g in groups.items():
        if name in ("E", "I"):  # the populations themselves
            out[name] = {"population": name}
            continue
        ids = group_ids(g)
        parts = {pop: local for pop, local in (("E", ids[ids < n_e]), ("I", ids[ids >= n_e] - n_e)) if local.size}
        if len(parts) == 1:
            ((pop, local),) = parts.items()
            out[name] = {"population": pop, "node_id": local.tolist()}
        else:
            for pop, local in parts.items():
                out[f"{name}:{pop}"] = {"population": pop, "node_id": local.tolist()}
            out[name] = [f"{name}:{pop}" for pop in parts]
    return out


def write_node_sets(path: Path, groups: dict[str, Group], n_e: int) -> None:
    write_json(path, node_sets(groups, n_e))


def read_groups(path: Path, n_e: int, n: int) -> dict[str, np.ndarray]:
    """Global neuron indices of every group in a node_sets.json written by wmnet (n neurons)."""
    sets = json.loads(Path(path).read_text())

    def ids(entry: object) -> np.ndarray:
        if isinstance(entry, list):
            return np.concatenate([ids(sets[part]) for part in entry])
        assert isinstance(entry, dict)
        if "node_id" not in entry:  # a whole population
            return np.arange(0, n_e) if entry["population"] == "E" else np.arange(n_e, n)
        local = np.asarray(entry["node_id"], dtype=np.int64)
        return local + (n_e if entry["population"] == "I" else 0)

    return {name: np.sort(ids(e)) for name, e in sets.items() if ":" not in name}
