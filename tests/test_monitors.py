"""Learning-dynamics monitors: rates.h5 (group rates) and synapses.h5 (E→E statistics)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_checkpoint import StopAt, Whole, datasets, start_run

from wmnet.checkpoint import CHECKPOINT, load_checkpoint, resume_run
from wmnet.config import load_config
from wmnet.engines.sparse import SparseEngine
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.simulation import RunResult, Simulation

C_IDS = list(range(0, 800, 3))  # an explicit E group for the synapse statistics
SETS = [
    "populations.E.size=800",
    "populations.I.size=200",
    "dtype=float32",
    "engine=sparse",
    "device=cpu",
    "seed=7",
    "duration=60",
    "record.checkpoint_every=20",
    "record.synapses.every=10",
    # 7 ms bins: 8 whole bins in 60 ms, and the checkpoints at 20 and 40 ms fall inside a bin.
    "record.rates.bin=7",
    f"groups.sets={{A: [3, 1, 799, 500, 950, 3], B: {{start: 100, stop: 300}}, C: {C_IDS}}}",
    "groups.overlap=true",
    "record.synapses.groups=[[E, E], [B, C]]",
]
GROUPS = {
    "E": np.arange(800),
    "I": np.arange(800, 1000),
    "A": np.array([1, 3, 500, 799, 950]),
    "B": np.arange(100, 300),
    "C": np.array(C_IDS),
}


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Whole:
    out = tmp_path_factory.mktemp("monitors") / "run"
    sim = Simulation(Network.build(load_config(None, SETS)))
    return Whole(out, sim.run(out=out, progress=False, keep_in_memory=True))


def test_rates_are_the_binned_spikes(whole: Whole) -> None:
    """rate = onsets of the group's neurons in the bin / (size · 7 ms), for whole bins only."""
    assert whole.result.rates is not None  # record.rates is set
    offset = {"E": 0, "I": 800}
    with h5py.File(whole.out / "spikes.h5") as f:
        t = np.concatenate([f[f"spikes/{p}/timestamps"][()] for p in offset])
        ids = np.concatenate([f[f"spikes/{p}/node_ids"][()].astype(np.int64) + offset[p] for p in offset])
    with h5py.File(whole.out / "rates.h5") as f:
        np.testing.assert_array_equal(f["time"][()], [0.0, 56.0, 7.0])
        assert set(f["rates"]) == set(GROUPS)
        for name, members in GROUPS.items():
            np.testing.assert_array_equal(f[f"rates/{name}/node_ids"][()], members)
            bins = np.round(t[np.isin(ids, members)] / 0.1).astype(np.int64) // 70
            counts = np.bincount(bins, minlength=9)[:8]  # the partial 9th bin is not written
            expected = (counts / (members.size * 0.007)).astype(np.float32)
            np.testing.assert_array_equal(f[f"rates/{name}/rate_hz"][()], expected, err_msg=name)
            np.testing.assert_array_equal(whole.result.rates[name], expected, err_msg=name)
    assert whole.result.rates["E"].mean() > 10  # the network is active
    np.testing.assert_allclose(whole.result.rates.t, np.arange(8) * 7.0)


def direct_stats(result: RunResult, pre: np.ndarray, post: np.ndarray) -> dict[str, float]:
    """The statistics of the E→E synapses from `pre` to `post`, from engine.synapses() itself."""
    assert isinstance(result.engine, SparseEngine)  # SETS: engine=sparse
    conn, ee = result.engine.net.connectivity, result.config.projections.EE
    syn = result.engine.synapses()
    post_of, pre_of = conn.ee_indices()
    m = torch.as_tensor(np.isin(pre_of.numpy(), pre) & np.isin(post_of.numpy(), post))
    slow = conn.projections["E->E"].is_slow()
    pot, L = syn.potentiated.bool(), syn.L.double()
    j = ee.J_d + (ee.J_p - ee.J_d) * pot.double()  # J_p or J_d per synapse, in float64
    return {
        "potentiated_fraction": pot[m].double().mean().item(),
        "mean_L": L[m].mean().item(),
        "mean_J_slow": j[m & slow].mean().item(),
        "mean_J_fast": j[m & ~slow].mean().item(),
    }


def test_synapse_stats_are_those_of_engine_synapses(whole: Whole) -> None:
    cfg, stats = whole.result.config, whole.result.synapse_stats
    assert stats is not None
    np.testing.assert_allclose(stats.t, np.arange(7) * 10.0)  # 0, 10, …, 60 ms
    with h5py.File(whole.out / "synapses.h5") as f:
        np.testing.assert_array_equal(f["time"][()], [0.0, 70.0, 10.0])
        for name, pre, post in (("E->E", GROUPS["E"], GROUPS["E"]), ("B->C", GROUPS["B"], GROUPS["C"])):
            g = f[f"synapses/{name}"]
            expected = direct_stats(whole.result, pre, post)  # the engine ended at 60 ms: the last sample
            for stat, value in expected.items():
                # mean_L is summed in float32 (L's dtype) by the monitor, in float64 here.
                assert g[stat][-1] == pytest.approx(value, rel=1e-6 if stat == "mean_L" else 1e-12), (name, stat)
                np.testing.assert_array_equal(stats[f"synapses/{name}/{stat}"], g[stat][()])
            assert 0 < g["n_slow"][()] < g["n_synapses"][()]
        e = f["synapses/E->E"]
        assert e["potentiated_fraction"][0] == pytest.approx(cfg.projections.EE.p_potentiated, abs=0.01)
        assert e["potentiated_fraction"][0] == whole.result.summary["ee_potentiated_fraction"]["start"]
        assert e["potentiated_fraction"][-1] != e["potentiated_fraction"][0]  # plasticity acted
        # Whole-network switch counts since the previous sample: they add up to the run's.
        up, down = f["switches/up"][()], f["switches/down"][()]
    assert up[0] == down[0] == 0
    assert {"up": int(up.sum()), "down": int(down.sum())} == whole.result.summary["ee_switches"]
    assert up.sum() > 0 and down.sum() > 0


def test_stop_and_resume_gives_the_same_monitor_files(whole: Whole, tmp_path: Path) -> None:
    """Ctrl-C at 40 ms (mid-bin), resumed; and rolled back to the 20 ms checkpoint (data dropped)."""
    cfg = load_config(None, SETS)
    out = tmp_path / "stopped"
    sim = start_run(cfg, out)
    sim.stimulus = StopAt(sim.stimulus, out, k_copy=200, k_stop=400)
    with pytest.raises(KeyboardInterrupt):
        sim.run(out=out, progress=False)
    monitors = load_checkpoint(out / CHECKPOINT)["monitors"]
    assert monitors["rates"]["rows"] == 5 and monitors["rates"]["partial"].sum() > 0  # 35..40 ms
    assert monitors["synapses"]["rows"] == 5  # 0, 10, 20, 30, 40 ms
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    shutil.copy(out / "early.pt", killed / CHECKPOINT)
    for run in (out, killed):
        result = resume_run(run, progress=False)
        assert result.info["status"] == "complete"
        for name in ("rates.h5", "synapses.h5", "spikes.h5"):
            da, db = datasets(whole.out / name), datasets(run / name)
            assert da.keys() == db.keys(), name
            for key in da:
                assert da[key].dtype == db[key].dtype, (name, key)
                np.testing.assert_array_equal(da[key], db[key], err_msg=f"{run.name}: {name}:{key}")


def test_monitors_can_be_switched_off(tmp_path: Path) -> None:
    cfg = load_config(None, [*SETS[:6], "duration=10", "record.rates=null", "record.synapses.every=null"])
    result = Simulation(Network.build(cfg)).run(out=tmp_path / "off", progress=False)
    assert result.rates is None and result.synapse_stats is None
    assert not (tmp_path / "off" / "rates.h5").exists() and not (tmp_path / "off" / "synapses.h5").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("record.rates.bin=0.25", r"record\.rates\.bin: 0\.25 ms is not a whole multiple of dt = 0\.1 ms"),
        ("record.synapses.every=1.05", r"record\.synapses\.every: 1\.05 ms is not a whole multiple of dt"),
        ("record.synapses.groups=[[E, X]]", r"record\.synapses\.groups: unknown group 'X' \(known: E, I\)"),
        ("record.synapses.groups=[[I, E]]", r"record\.synapses\.groups: group 'I' has no E neurons"),
        ("groups.sets={A: [0, 1000]}", r"groups\.sets\.A: indices must lie in 0\.\.999"),
        ("groups.sets={A: {start: 5, stop: 5}}", r"groups\.sets: A: stop = 5 must exceed start = 5"),
        ("groups.sets={E: [1]}", r"groups\.sets\.E: invalid or repeated name"),
        ("groups.sets={A: [1, 2], B: {start: 2, stop: 4}}", r"groups\.sets\.B: shares neuron 2 with another group"),
    ],
)
def test_bad_monitor_config_is_one_clear_line(setting: str, message: str) -> None:
    with pytest.raises(WmnetError, match=message) as exc:
        load_config(None, ["populations.E.size=800", "populations.I.size=200", setting])
    assert "\n" not in str(exc.value)
