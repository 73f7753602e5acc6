"""Output files of a run (Python API) against an engine stepped independently by the test.

The run writes spikes.h5, reports/<var>.h5 and run.json. A second engine, built from the same
network and stepped here, gives the expected content: a pulse onset at step k ⇔ σ_k = 1 and
a_k = 0 (a is the pulse counter at t_k), its timestamp is k·dt, node ids are local to the
population; traces are the state at t_k for every `record.traces.every`-th step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from wmnet.config import Config, load_config
from wmnet.engines import make_engine
from wmnet.network import Network
from wmnet.simulation import RunResult, Simulation
from wmnet.stimuli import make_stimulus

VARIABLES = ["v", "i_s", "i_f", "x", "a"]


@dataclass
class Expected:
    """What the test's own engine produced."""

    onsets: dict[str, tuple[np.ndarray, np.ndarray]]  # pop -> (step k, local id), sorted (k, id)
    samples: dict[str, np.ndarray]  # var -> (n_samples, N) state at t_k, k % every == 0
    sample_steps: np.ndarray
    sigma_steps: int  # Σ over steps and neurons of σ
    x_end: np.ndarray
    potentiated_end: float


@dataclass
class Case:
    cfg: Config
    net: Network
    result: RunResult
    out: Path
    expected: Expected


SCENARIOS = {
    # sparse engine, float32, the seed's defaults at 1000 neurons; flush blocks (73 steps)
    # that do not line up with the sampling period (10 steps) or the duration.
    "sparse-f32": [
        "populations.E.size=800",
        "populations.I.size=200",
        "duration=100",
        "seed=11",
        "engine=sparse",
        "dtype=float32",
        "record.flush_every=7.3",
        "record.traces.every=10",
        f"record.traces.variables=[{', '.join(VARIABLES)}]",
    ],
    # reference engine, float64, small; a sampling period that does not divide the duration,
    # recorded neurons at both ends of both populations, given out of order and negative.
    "reference-f64": [
        "populations.E.size=160",
        "populations.I.size=40",
        "duration=60",
        "seed=5",
        "engine=reference",
        "dtype=float64",
        "record.flush_every=2.5",
        "record.traces.every=7",
        "record.traces.variables=[x, v, a]",
        "record.traces.neurons=[-1, 159, 0, 160, 3]",
    ],
}


def _expected(cfg: Config, net: Network, engine: str) -> Expected:
    eng = make_engine(engine, net)
    stim = make_stimulus(cfg, net.device, net.dtype)
    n_e = cfg.populations.E.size
    ks: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    samples: dict[str, list[np.ndarray]] = {v: [] for v in cfg.record.traces.variables}
    sample_steps = []
    sigma_total = 0
    every = cfg.record.traces.every
    for k in range(cfg.n_steps):
        state = eng.neurons
        if k % every == 0:
            sample_steps.append(k)
            for v in samples:
                samples[v].append(state[v].detach().cpu().numpy().astype(np.float64).copy())
        a_k = state.a.detach().clone()
        sigma = eng.step(stim(k))
        sigma_total += int(sigma.sum())
        onset = (sigma & (a_k == 0)).cpu().numpy()
        idx = np.nonzero(onset)[0]
        ks.append(np.full(idx.size, k, dtype=np.int64))
        ids.append(idx)
    k_all, id_all = np.concatenate(ks), np.concatenate(ids)
    onsets = {}
    for pop, lo, hi in (("E", 0, n_e), ("I", n_e, cfg.n_neurons)):
        m = (id_all >= lo) & (id_all < hi)
        k_p, id_p = k_all[m], id_all[m] - lo
        order = np.lexsort((id_p, k_p))
        onsets[pop] = (k_p[order], id_p[order])
    syn = eng.synapses()
    return Expected(
        onsets=onsets,
        samples={v: np.stack(s) for v, s in samples.items()},
        sample_steps=np.asarray(sample_steps),
        sigma_steps=sigma_total,
        x_end=eng.neurons.x.detach().cpu().numpy().astype(np.float64),
        potentiated_end=float(syn.potentiated.double().mean()),
    )


@pytest.fixture(scope="module", params=list(SCENARIOS))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    cfg = load_config(None, SCENARIOS[request.param])
    net = Network.build(cfg)
    out = tmp_path_factory.mktemp(request.param) / "run"
    sim = Simulation(net)
    assert sim.engine_name == cfg.engine
    result = sim.run(out=out, progress=False, keep_in_memory=True)
    return Case(cfg, net, result, out, _expected(cfg, net, cfg.engine))


def _pop_ranges(cfg: Config) -> dict[str, tuple[int, int]]:
    n_e = cfg.populations.E.size
    return {"E": (0, n_e), "I": (n_e, cfg.n_neurons)}


def test_expected_run_is_not_trivial(case: Case) -> None:
    # Otherwise the comparisons below would prove little.
    for pop in ("E", "I"):
        assert case.expected.onsets[pop][0].size > 50, pop
    # Pulses last several steps, so σ = 1 in many more neuron-steps than there are onsets.
    n_onsets = sum(k.size for k, _ in case.expected.onsets.values())
    assert case.expected.sigma_steps > 5 * n_onsets


def test_spike_file_holds_exactly_the_engine_onsets(case: Case) -> None:
    cfg = case.cfg
    with h5py.File(case.out / "spikes.h5", "r") as f:
        assert set(f["spikes"].keys()) == {"E", "I"}
        for pop, (lo, hi) in _pop_ranges(cfg).items():
            g = f["spikes"][pop]
            ts_ds, id_ds = g["timestamps"], g["node_ids"]
            assert ts_ds.dtype == np.float64
            assert id_ds.dtype == np.uint64
            assert ts_ds.attrs["units"] == "ms"
            sorting = g.attrs["sorting"]
            assert (sorting.decode() if isinstance(sorting, bytes) else sorting) == "by_time"
            ts, ids = ts_ds[()], id_ds[()]
            assert ts.shape == ids.shape
            assert np.all(np.diff(ts) >= 0), "timestamps not sorted by time"
            assert ids.size == 0 or int(ids.max()) < hi - lo, "node ids must be local"
            k_exp, id_exp = case.expected.onsets[pop]
            order = np.lexsort((ids, ts))
            np.testing.assert_array_equal(ids[order].astype(np.int64), id_exp)
            np.testing.assert_array_equal(ts[order], k_exp * cfg.dt)


def test_in_memory_spikes_match_the_engine(case: Case) -> None:
    i, t = case.result.spikes.i, case.result.spikes.t
    for pop, (lo, hi) in _pop_ranges(case.cfg).items():
        k_exp, id_exp = case.expected.onsets[pop]
        m = (i >= lo) & (i < hi)
        order = np.lexsort((i[m], t[m]))
        np.testing.assert_array_equal(i[m][order] - lo, id_exp)
        np.testing.assert_allclose(t[m][order], k_exp * case.cfg.dt, rtol=0, atol=1e-9)


def test_reports_hold_the_sampled_state(case: Case) -> None:
    cfg = case.cfg
    tr = cfg.record.traces
    n = cfg.n_neurons
    recorded = sorted({i + n if i < 0 else i for i in tr.neurons})
    n_samples = math.ceil(cfg.n_steps / tr.every)
    assert case.expected.sample_steps.size == n_samples
    step_ms = tr.every * cfg.dt
    files = sorted(p.name for p in (case.out / "reports").iterdir())
    assert files == sorted(f"{v}.h5" for v in tr.variables)
    for var in tr.variables:
        with h5py.File(case.out / "reports" / f"{var}.h5", "r") as f:
            assert set(f["report"].keys()) == {"E", "I"}
            for pop, (lo, hi) in _pop_ranges(cfg).items():
                g = f["report"][pop]
                cols = [i for i in recorded if lo <= i < hi]
                np.testing.assert_array_equal(g["mapping/node_ids"][()], np.asarray(cols) - lo)
                start, stop, step = g["mapping/time"][()]
                assert start == 0.0
                assert step == pytest.approx(step_ms, rel=1e-12)
                assert stop == pytest.approx(start + n_samples * step_ms, rel=1e-9)
                data = g["data"][()]
                assert data.shape == (n_samples, len(cols))
                # Stored in the run's dtype (float16 runs as float32): issue 12 §6.
                stored = np.float64 if cfg.dtype == "float64" else np.float32
                assert data.dtype == stored
                expected = case.expected.samples[var][:, cols].astype(stored)
                np.testing.assert_array_equal(data, expected, err_msg=f"{var} of {pop}")


def test_report_values_are_not_constant(case: Case) -> None:
    # The sampled values move (so the equality above compared real traces).
    for var in ("v", "x"):
        assert np.ptp(case.expected.samples[var]) > 0.1, var


def test_run_json_summary_agrees_with_files(case: Case) -> None:
    cfg = case.cfg
    on_disk = json.loads((case.out / "run.json").read_text())
    assert on_disk["status"] == "complete"
    assert on_disk["config"] == cfg.to_dict()
    assert Config.model_validate(on_disk["config"]) == cfg
    assert on_disk["seed"] == cfg.seed
    assert on_disk["engine"] == cfg.engine
    assert on_disk["dtype"] == cfg.dtype
    assert on_disk["steps_done"] == cfg.n_steps
    assert on_disk["simulated_ms"] == pytest.approx(cfg.duration)
    s = on_disk["summary"]
    assert cfg.duration is not None
    seconds = cfg.duration / 1000
    with h5py.File(case.out / "spikes.h5", "r") as f:
        counts = {pop: f["spikes"][pop]["node_ids"].shape[0] for pop in ("E", "I")}
    sizes = {"E": cfg.populations.E.size, "I": cfg.populations.I.size}
    for pop in ("E", "I"):
        assert s["populations"][pop]["rate_hz"] == pytest.approx(counts[pop] / (sizes[pop] * seconds), rel=1e-12)
        lo, hi = _pop_ranges(cfg)[pop]
        assert s["populations"][pop]["mean_x_end"] == pytest.approx(case.expected.x_end[lo:hi].mean(), rel=1e-6)
    assert s["spikes"] == counts["E"] + counts["I"]
    assert s["sigma_fraction"] == pytest.approx(case.expected.sigma_steps / (cfg.n_neurons * cfg.n_steps), rel=1e-12)
    pot0 = float(case.net.connectivity.initial.potentiated.double().mean())
    assert s["ee_potentiated_fraction"]["start"] == pytest.approx(pot0, rel=1e-12)
    assert s["ee_potentiated_fraction"]["end"] == pytest.approx(case.expected.potentiated_end, rel=1e-12)
    # With plasticity on, some synapses switched in these runs, and the counts say so.
    assert s["ee_switches"]["up"] + s["ee_switches"]["down"] > 0
    assert s["ee_potentiated_fraction"]["end"] != s["ee_potentiated_fraction"]["start"]


def test_continued_run_writes_the_rest_of_one_long_run(tmp_path: Path) -> None:
    """Two `run` calls on one Simulation continue the state: the second file starts at t_k."""
    cfg = load_config(
        None,
        ["populations.E.size=80", "populations.I.size=20", "duration=20", "dtype=float64", "record.traces.every=4"],
    )
    net = Network.build(cfg)
    sim = Simulation(net)
    sim.run(out=tmp_path / "a", progress=False)
    sim.run(duration=10, out=tmp_path / "b", progress=False)
    # One uninterrupted 30 ms run for comparison.
    whole = Simulation(Network.build(cfg)).run(duration=30, out=tmp_path / "w", progress=False)
    assert whole.info["status"] == "complete"
    with (
        h5py.File(tmp_path / "w" / "spikes.h5") as fw,
        h5py.File(tmp_path / "a" / "spikes.h5") as fa,
        h5py.File(tmp_path / "b" / "spikes.h5") as fb,
    ):
        for pop in ("E", "I"):
            tw, iw = fw["spikes"][pop]["timestamps"][()], fw["spikes"][pop]["node_ids"][()]
            ta = np.concatenate([fa["spikes"][pop]["timestamps"][()], fb["spikes"][pop]["timestamps"][()]])
            ia = np.concatenate([fa["spikes"][pop]["node_ids"][()], fb["spikes"][pop]["node_ids"][()]])
            np.testing.assert_array_equal(ia, iw)
            np.testing.assert_allclose(ta, tw, rtol=0, atol=1e-9)
    with h5py.File(tmp_path / "b" / "reports" / "v.h5") as f:
        start, _, step = f["report/E/mapping/time"][()]
        assert start == pytest.approx(20.0)
        assert step == pytest.approx(0.4)
