"""RunResult: the same accessors in memory and reloaded from a run folder (RunResult.from_folder), E→E
efficacies as scipy.sparse, and the short reprs of Config, Network and RunResult."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.result import RunResult
from wmnet.simulation import Simulation

SETS = [
    "populations.E.size=400",
    "populations.I.size=100",
    "device=cpu",
    "duration=40",
    "record.rates.bin=5",
    "record.synapses.every=10",
    "groups.sets={A: {start: 0, stop: 50}, B: {start: 380, stop: 420}}",
    "record.synapses.groups=[[E, E], [A, A]]",
    "record.snapshots=[20, 40]",
    "record.traces.every=2",
]


@dataclass
class Case:
    net: Network
    memory: RunResult  # run with a folder, everything also kept in memory
    disk: RunResult  # the same run reloaded from its folder
    folder: Path


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    folder = tmp_path_factory.mktemp("result") / "run"
    net = Network.build(load_config(None, SETS))
    memory = Simulation(net).run(out=folder, progress=False, keep_in_memory=True)
    return Case(net, memory, RunResult.from_folder(folder), folder)


def test_spikes_read_back_as_kept(case: Case) -> None:
    mem, disk = case.memory.spikes, case.disk.spikes
    assert mem.i.size > 100  # the network is active
    assert np.array_equal(disk.i, mem.i) and np.array_equal(disk.t, mem.t)
    assert len(disk) == len(mem) == int(case.memory.spikes.count.sum())  # .count: the monitor's, passed through


def test_trains_hold_every_neuron_s_spikes(case: Case) -> None:
    i, t = case.memory.spikes.i, case.memory.spikes.t
    for result in (case.memory, case.disk):
        trains = result.spikes.trains()
        assert [len(trains["E"]), len(trains["I"])] == [400, 100]  # silent neurons too
        for pop, offset in (("E", 0), ("I", 400)):
            for node in (0, 7, 99):
                assert np.array_equal(trains[pop][node], t[i == node + offset]), (pop, node)
        assert sum(v.size for pop in trains.values() for v in pop.values()) == i.size


def test_spikes_to_pandas(case: Case) -> None:
    df = case.disk.spikes.to_pandas()
    assert list(df.columns) == ["population", "node_id", "t_ms"]
    assert len(df) == case.memory.spikes.i.size and df["t_ms"].is_monotonic_increasing
    e = df[df["population"] == "E"]
    assert np.array_equal(np.sort(e["node_id"].to_numpy()), np.sort(case.memory.spikes.i[case.memory.spikes.i < 400]))
    assert case.memory.spikes.to_pandas().equals(df)


def test_rates_from_memory_and_from_the_file(case: Case) -> None:
    mem, disk = case.memory.rates, case.disk.rates
    assert mem is not None and disk is not None
    assert disk.names == mem.names == ["E", "I", "A", "B"]
    assert disk.sizes() == mem.sizes() == {"E": 400, "I": 100, "A": 50, "B": 40}
    assert disk.bin_ms == mem.bin_ms == 5.0
    a, b = mem.to_pandas(), disk.to_pandas()
    assert a.equals(b) and list(a.columns) == ["E", "I", "A", "B"]
    assert np.allclose(a.index, np.arange(8) * 5.0) and a.index.name == "t_ms"
    assert a["E"].mean() > 1


def test_traces_and_synapse_stats_from_the_files(case: Case) -> None:
    mem, disk = case.memory, case.disk
    assert disk.traces.variables == mem.traces.variables == ["v", "i_s", "i_f", "x"]
    assert np.array_equal(disk.traces.neurons, mem.traces.neurons)
    assert np.array_equal(disk.traces.t, mem.traces.t) and disk.traces.t.size == 200  # every 2 steps
    for var in mem.traces.variables:
        assert np.array_equal(disk.traces[var], mem.traces[var]), var  # float32 stored and kept
    assert disk.traces.to_pandas("v").shape == (200, mem.traces.neurons.size)
    assert mem.synapse_stats is not None and disk.synapse_stats is not None
    assert sorted(disk.synapse_stats.keys()) == sorted(mem.synapse_stats.keys())
    assert np.array_equal(disk.synapse_stats.t, mem.synapse_stats.t)
    for key in mem.synapse_stats.keys():
        assert np.array_equal(disk.synapse_stats[key], mem.synapse_stats[key]), key
    assert disk.synapse_stats.to_pandas().shape == (5, len(mem.synapse_stats.keys()))


def test_efficacies_as_a_sparse_matrix(case: Case) -> None:
    w = case.memory.efficacies()  # the engine's state now (40 ms)
    assert isinstance(w, scipy.sparse.csr_array) and w.shape == (400, 400)
    assert np.array_equal(case.disk.efficacies().toarray(), w.toarray())  # the last snapshot (40 ms)
    assert np.array_equal(case.disk.efficacies(40.0).toarray(), w.toarray())
    # Against the dense post×pre matrices of the connectivity with the engine's E→E state.
    conn, cfg = case.net.connectivity, case.net.config
    assert case.memory.engine is not None
    slow, fast = conn.to_dense(cfg, torch.float64, case.memory.engine.synapses())
    dense = (slow + fast)[:400, :400].numpy()
    np.testing.assert_allclose(w.toarray(), dense, rtol=1e-6)
    before = case.disk.efficacies(20.0)
    assert before.nnz == w.nnz and not np.array_equal(before.toarray(), w.toarray())  # it learned
    assert case.disk.snapshot_times() == [20.0, 40.0]


def test_efficacies_without_a_snapshot_say_why(case: Case, tmp_path: Path) -> None:
    with pytest.raises(WmnetError, match=r"no snapshot at 30 ms \(snapshots at: 20, 40 ms\)"):
        case.disk.efficacies(30)
    bare = shutil.copytree(case.folder, tmp_path / "bare")
    shutil.rmtree(bare / "snapshots")
    with pytest.raises(WmnetError, match=r"holds no snapshot \(record.snapshots"):
        RunResult.from_folder(bare).efficacies()


def test_from_folder_of_an_interrupted_run_and_of_no_run(case: Case, tmp_path: Path) -> None:
    with pytest.raises(WmnetError, match="not a wmnet run folder"):
        RunResult.from_folder(tmp_path)
    d = shutil.copytree(case.folder, tmp_path / "cut")
    info = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**info, "status": "interrupted", "simulated_ms": 20.0}))
    (d / "rates.h5").unlink()
    cut = RunResult.from_folder(d)
    assert cut.interrupted and cut.status == "interrupted" and cut.rates is None
    assert cut.simulated_ms == 20.0 and "interrupted" in repr(cut).splitlines()[0]
    assert np.array_equal(cut.spikes.t, case.memory.spikes.t)  # whatever the files hold


def test_a_result_in_memory_without_a_folder() -> None:
    net = Network.build(load_config(None, [*SETS[:-3], "duration=10"]))
    result = Simulation(net).run(progress=False)
    assert result.out is None and len(result.spikes) == result.spikes.i.size
    assert result.efficacies().shape == (400, 400)
    assert result.rates is not None and result.rates.to_pandas().shape == (2, 4)
    assert "in memory" in repr(result)
    with pytest.raises(WmnetError, match="no run folder"):
        result.efficacies(5.0)


def test_reprs_are_a_few_lines(case: Case) -> None:
    cfg = case.net.config
    lines = repr(cfg).splitlines()
    assert lines[0] == "Config: E 400 + I 100 neurons, 40 ms in steps of 0.1 ms, seed 0" and len(lines) <= 6
    assert "groups: A, B" in repr(cfg) and "snapshots at 20, 40 ms" in repr(cfg)
    net = repr(case.net).splitlines()
    assert net[0].startswith("Network: 500 neurons (E 400, I 100), ") and len(net) <= 4
    assert f"{case.net.connectivity.n_synapses():,} synapses" in net[0]
    res = repr(case.disk).splitlines()
    assert res[0].startswith("RunResult: 40 ms of 500 neurons, complete (sparse engine, cpu, float32)")
    assert any(line.strip().startswith("rates: E ") for line in res) and res[-1] == f"  folder: {case.folder}"
    assert len(res) <= 6
    for obj in (cfg, case.net, case.disk):
        page = obj._repr_html_()
        assert page.startswith("<table><caption") and page.endswith("</table>") and "neurons" in page
        assert page.count("<tr>") == len(repr(obj).splitlines()) - 1
