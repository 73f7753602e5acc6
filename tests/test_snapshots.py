"""record.snapshots: the whole connectivity with the E→E state, saved during a run, loadable back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.simulation import Simulation

SMALL = [
    "populations.E.size=800",
    "populations.I.size=200",
    "device=cpu",
    "dtype=float32",
    "seed=5",
    "record.synapses=null",
    "record.rates=null",
    "record.traces.variables=[]",
]


def test_snapshots_hold_the_state_at_their_time_and_load_back(tmp_path: Path) -> None:
    cfg = load_config(None, SMALL + ["duration=40", "record.snapshots=[20, 40]"])
    net = Network.build(cfg)
    result = Simulation(net).run(out=tmp_path / "run", progress=False)
    files = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert files == ["connectivity_20ms.npz", "connectivity_40ms.npz"]
    # The 40 ms snapshot: same projections, E→E state as the engine's at the end.
    snap = Network.build(cfg, connectivity=tmp_path / "run" / "snapshots" / "connectivity_40ms.npz")
    for name, p in net.connectivity.projections.items():
        q = snap.connectivity.projections[name]
        assert torch.equal(p.rowptr, q.rowptr) and torch.equal(p.split, q.split) and torch.equal(p.post_idx, q.post_idx)
    assert result.engine is not None  # a run in memory keeps its engine
    end = result.engine.synapses()
    assert torch.equal(snap.connectivity.initial.potentiated, end.potentiated)
    assert torch.equal(snap.connectivity.initial.L, end.L)
    assert not torch.equal(end.potentiated, net.connectivity.initial.potentiated)  # learning happened
    # The 20 ms snapshot equals a separate 20 ms run's state (same seed).
    short = Simulation(Network.build(cfg)).run(duration=20, progress=False)
    assert short.engine is not None
    mid = Network.build(cfg, connectivity=tmp_path / "run" / "snapshots" / "connectivity_20ms.npz")
    assert torch.equal(mid.connectivity.initial.potentiated, short.engine.synapses().potentiated)
    assert torch.equal(mid.connectivity.initial.L, short.engine.synapses().L)
    # A network built from a snapshot runs on from the learned synapses.
    Simulation(snap).run(duration=5, progress=False)


def test_snapshot_of_another_network_is_rejected(tmp_path: Path) -> None:
    cfg = load_config(None, SMALL + ["duration=10", "record.snapshots=[10]"])
    Simulation(Network.build(cfg)).run(out=tmp_path / "run", progress=False)
    other = load_config(None, SMALL + ["populations.E.size=400"])
    with pytest.raises(WmnetError, match="snapshot of 800 E"):
        Network.build(other, connectivity=tmp_path / "run" / "snapshots" / "connectivity_10ms.npz")
    broken = tmp_path / "broken.npz"
    with np.load(tmp_path / "run" / "snapshots" / "connectivity_10ms.npz") as d:
        arrays = {k: d[k] for k in d.files}
    arrays["EI_post"] = arrays["EI_post"] + 10_000  # targets outside the population
    np.savez(broken, **arrays)
    with pytest.raises(WmnetError, match="not a valid CSR"):
        Network.build(cfg, connectivity=broken)


def test_snapshot_times_must_be_on_the_dt_grid() -> None:
    with pytest.raises(WmnetError, match="record.snapshots"):
        load_config(None, SMALL + ["record.snapshots=[10.05]"])
