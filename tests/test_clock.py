"""One clock (issue 12 §4): a protocol's epochs (their receptor scales and block boundaries) are
looked up by the step since the simulation began, as the stimulus is, so a continued run goes on
with the epoch it was in, whether continued by a second `Simulation.run` or by `wmnet extend`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from wmnet.config import load_config
from wmnet.network import Network
from wmnet.result import RunResult
from wmnet.simulation import Simulation

BASE = [
    "populations.E.size=400",
    "populations.I.size=100",
    "device=cpu",
    "engine=sparse",
    "dtype=float32",
    "seed=11",
    "background={E: {mean: 1.2, std: 0.5}, I: {mean: 1.0, std: 0.4}, grain: 0.5}",
    "stimulus={kind: background}",
    "record.traces.variables=[]",
    "record.rates=null",
    "record.synapses=null",
]
# 20 ms plain, 20 ms with the slow E→E halved and the fast I→E ×1.5, 10 ms plain: 50 ms.
SCALED = (
    "protocol={epochs: [{name: a, duration: 20}, {name: drug, duration: 20, projections: "
    "{E->E: {slow_scale: 0.5}, I->E: {fast_scale: 1.5}}}, {name: c, duration: 10}]}"
)
PLAIN = "protocol={epochs: [{name: a, duration: 20}, {name: drug, duration: 20}, {name: c, duration: 10}]}"


def spikes_of(*results: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """(ids, times in ms) of one or more consecutive in-memory runs, concatenated."""
    return np.concatenate([r.spikes.i for r in results]), np.concatenate([r.spikes.t for r in results])


def file_spikes(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path / "spikes.h5", "r") as f:
        return {f"{pop}/{k}": f["spikes"][pop][k][()] for pop in f["spikes"] for k in ("node_ids", "timestamps")}


@pytest.fixture(scope="module")
def whole() -> tuple[np.ndarray, np.ndarray]:
    sim = Simulation(Network.build(load_config(None, [*BASE, SCALED])))
    return spikes_of(sim.run(progress=False))


def test_the_scaled_epoch_changes_the_spikes(whole: tuple[np.ndarray, np.ndarray]) -> None:
    """Without the drug epoch's scales the spikes differ after 20 ms: the tests below can fail."""
    plain = spikes_of(Simulation(Network.build(load_config(None, [*BASE, PLAIN]))).run(progress=False))
    before = whole[1] < 20
    assert np.array_equal(plain[0][plain[1] < 20], whole[0][before])
    assert not (plain[0].shape == whole[0].shape and np.array_equal(plain[0], whole[0]))


@pytest.mark.parametrize("split_ms", [30.0, 10.0])
def test_two_run_calls_give_the_spikes_of_one(whole: tuple[np.ndarray, np.ndarray], split_ms: float) -> None:
    """run(30 ms) + run(20 ms) (the second starts inside the drug epoch) and run(10) + run(40)
    (the epoch boundary at 20 ms falls in the second call): the spikes of one 50 ms run."""
    sim = Simulation(Network.build(load_config(None, [*BASE, SCALED])))
    first = sim.run(duration=split_ms, progress=False)
    second = sim.run(duration=50.0 - split_ms, progress=False)
    ids, t = spikes_of(first, second)
    assert np.array_equal(ids, whole[0]) and np.array_equal(t, whole[1])


def test_run_then_wmnet_extend_gives_the_spikes_of_one_run(
    whole: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """The 50 ms protocol run into a folder, then `wmnet extend --by 20` (a real process): the
    spikes of one 70 ms run (protocol, then the config's stimulus), and its first 50 ms are the
    in-memory run's."""

    def start(duration: float, out: Path) -> Simulation:
        cfg = load_config(None, [*BASE, SCALED, f"duration={duration}"])
        out.mkdir()
        (out / "config.yaml").write_text(cfg.to_yaml())
        return Simulation(Network.build(cfg))

    long, short = tmp_path / "long", tmp_path / "short"
    start(70.0, long).run(out=long, progress=False)
    start(50.0, short).run(out=short, progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "wmnet.cli", "extend", str(short), "--by", "20", "--quiet", "--no-plot"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    a, b = file_spikes(long), file_spikes(short)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # The file's first 50 ms, in (time, id) order, are the in-memory run's.
    t = np.concatenate([a[f"{p}/timestamps"] for p in ("E", "I")])
    ids = np.concatenate([a[f"{p}/node_ids"].astype(np.int64) + (0 if p == "E" else 400) for p in ("E", "I")])
    keep = t < 50
    order = np.lexsort((ids[keep], t[keep]))
    np.testing.assert_array_equal(ids[keep][order], whole[0])
    np.testing.assert_array_equal(t[keep][order].astype(whole[1].dtype), whole[1])
