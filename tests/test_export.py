"""NWB export and Neo objects (issue 16): round trip, validator, Neo counts/units/times, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")
neo = pytest.importorskip("neo")

from wmnet.config import load_config  # noqa: E402
from wmnet.errors import WmnetError  # noqa: E402
from wmnet.io.nodesets import read_groups  # noqa: E402
from wmnet.io.series import read_series  # noqa: E402
from wmnet.io.sonata import read_report, read_spikes  # noqa: E402
from wmnet.protocol import read_events  # noqa: E402

# 80 E + 20 I, a short protocol with two groups: events.tsv, node_sets.json, rates.h5,
# synapses.h5 and all five traces. The E background is weak, so about half the E neurons
# never fire (the default export leaves them out, --all-units keeps them).
RUN_YAML = """
populations: {E: {size: 80}, I: {size: 20}}
device: cpu
background: {E: {mean: 0.7, std: 0.4}, I: {mean: 2.5, std: 0.5}, grain: 1.0}
stimulus: {kind: background}
groups:
  prototypes: {count: 2, fraction: 0.2, fraction_I: 0.1}
protocol:
  initial_rest: 20
  epochs:
    - block: train
      repeat: 2
      shuffle: true
      groups: [P1, P2]
      epochs:
        - {name: cue, duration: 15, stimulus: {kind: selective, group: $group, contrast_E: 2.0, noise: 0.1}}
        - {name: delay, duration: 10}
record:
  synapses: {every: 10, groups: [[P1, P1], [P1, nonselective]]}
  traces: {variables: [v, i_s, i_f, x, a], neurons: [0, 1, 2, -3, -2, -1], every: 10}
  checkpoint_at_end: false
"""
N_E, N = 80, 100


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from wmnet.cli import cli

    tmp = tmp_path_factory.mktemp("export")
    (tmp / "p.yaml").write_text(RUN_YAML)
    out = tmp / "run"
    res = CliRunner().invoke(cli, ["run", str(tmp / "p.yaml"), "--out", str(out), "--quiet", "--no-plot"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def nwb_path(run_dir: Path) -> Path:
    from wmnet.io import to_nwb

    return to_nwb(run_dir, run_dir.parent / "run.nwb")


def read_units(path: Path) -> dict[str, Any]:
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        u = io.read().units
        return {
            "id": u.id.data[:],
            "index": u.spike_times_index.data[:].astype(np.int64),
            "times": u.spike_times.data[:],
            **{c: u[c].data[:] for c in u.colnames if c != "spike_times"},
        }


def spikes_global(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    s = read_spikes(run_dir / "spikes.h5")
    return (
        np.concatenate([s["E"][0], s["I"][0]]),
        np.concatenate([s["E"][1].astype(np.int64), s["I"][1].astype(np.int64) + N_E]),
    )


# --- NWB --------------------------------------------------------------------------------------


def test_units_round_trip(run_dir: Path, nwb_path: Path) -> None:
    """Each unit's spike times (s) are the neuron's onsets in spikes.h5 (ms) / 1000, in order;
    only neurons that fired are units; population, node id and groups as columns."""
    t, gid = spikes_global(run_dir)
    u = read_units(nwb_path)
    fired = np.unique(gid)
    assert 0 < fired.size < N  # the fixture has silent neurons, so the selection is tested
    assert np.array_equal(u["id"], fired)
    starts = np.r_[0, u["index"][:-1]]
    assert u["index"][-1] == t.size == u["times"].size
    for n, a, b in zip(u["id"], starts, u["index"]):
        mine = t[gid == n]
        assert np.array_equal(u["times"][a:b], mine / 1000.0), n  # bitwise: the same division
        assert np.all(np.diff(u["times"][a:b]) > 0)
    pop = np.array([p.decode() if isinstance(p, bytes) else p for p in u["population"]])
    assert np.array_equal(pop, np.where(fired < N_E, "E", "I"))
    assert np.array_equal(u["node_id"], np.where(fired < N_E, fired, fired - N_E))
    groups = read_groups(run_dir / "node_sets.json", N_E, N)
    for name in ("P1", "P2", "nonselective"):
        assert np.array_equal(u[f"in_{name}"].astype(bool), np.isin(fired, groups[name])), name
    labels = [g.decode() if isinstance(g, bytes) else g for g in u["groups"]]
    for n, label in zip(fired, labels):
        assert set(filter(None, label.split("+"))) == {g for g in ("P1", "P2", "nonselective") if n in groups[g]}


def test_all_units_keeps_silent_neurons(run_dir: Path, tmp_path: Path) -> None:
    from wmnet.io import to_nwb

    u = read_units(to_nwb(run_dir, tmp_path / "all.nwb", all_units=True))
    _, gid = spikes_global(run_dir)
    assert np.array_equal(u["id"], np.arange(N))
    assert np.array_equal(np.diff(np.r_[0, u["index"]]), np.bincount(gid, minlength=N))
    assert pynwb.validate(path=str(tmp_path / "all.nwb")) == []


def test_bucketed_spikes_equal_the_in_memory_sort(
    run_dir: Path, nwb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for 8 spikes at a time, read 16 at a time, the spikes go through the bucket file
    (a neuron with more than 8 is a bucket of its own): the same units, no temporary file left."""
    import wmnet.io.nwb
    import wmnet.io.nwb_units
    from wmnet.io import to_nwb

    _, gid = spikes_global(run_dir)
    assert gid.size > 10 * 16 and np.bincount(gid).max() > 8  # many chunks and buckets, oversized ones
    monkeypatch.setattr(wmnet.io.nwb_units, "READ_CHUNK", 16)  # spikes
    monkeypatch.setattr(wmnet.io.nwb, "READ_CHUNK", 16)  # trace rows
    small = read_units(to_nwb(run_dir, tmp_path / "b.nwb", max_spikes_in_memory=8))
    whole = read_units(nwb_path)
    for key in ("id", "index", "times"):
        assert np.array_equal(small[key], whole[key]), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.nwb"]


def test_traces_rates_synapses_round_trip(run_dir: Path, nwb_path: Path) -> None:
    with pynwb.NWBHDF5IO(str(nwb_path), "r") as io:
        f = io.read()
        traces = f.processing["traces"]
        rec = traces["recorded_neurons"]
        assert np.array_equal(rec.id.data[:], [0, 1, 2, 97, 98, 99])
        assert np.array_equal(rec["node_id"].data[:], [0, 1, 2, 17, 18, 19])
        units = {"v": "mV", "i_s": "mV/ms", "i_f": "mV/ms", "x": "dimensionless", "a": "dimensionless"}
        for var, unit in units.items():
            report = read_report(run_dir / "reports" / f"{var}.h5")
            ts = traces[var]
            expect = np.concatenate([report["E"][2], report["I"][2]], axis=1)
            assert np.array_equal(ts.data[:], expect), var
            assert ts.unit == unit
            t_ms = report["E"][0]
            assert ts.rate == pytest.approx(1000.0 / (t_ms[1] - t_ms[0]))  # 1 ms sampling -> 1000 Hz
            assert ts.starting_time * 1000 == pytest.approx(t_ms[0], abs=1e-9)
        for name in ("rates", "synapses"):
            t, values = read_series(run_dir / f"{name}.h5")
            module = f.processing[name]
            series = [
                k
                for k, v in values.items()
                if k != "time" and v.ndim == 1 and v.shape[0] == t.size and not k.endswith("node_ids")
            ]
            assert sorted(series) == sorted(k.replace(".", "/") for k in module.data_interfaces if k != "constants")
            for key in series:
                ts = module[key.replace("/", ".")]
                assert np.array_equal(ts.data[:], values[key]), key
                assert ts.comments == f"{name}.h5:/{key}"
                assert ts.rate == pytest.approx(1000.0 / values["time"][2])
                assert ts.starting_time == pytest.approx(values["time"][0] / 1000)
            const = module["constants"].to_dataframe()
            for path, vals in zip(const["path"], const["values"]):
                assert np.array_equal(np.asarray(vals), np.atleast_1d(values[path]).astype(np.float64)), path
        assert f.processing["rates"]["rates.P1.rate_hz"].unit == "Hz"
        assert "rates/P1/node_ids" in list(f.processing["rates"]["constants"]["path"].data[:])


def test_epochs_and_metadata(run_dir: Path, nwb_path: Path) -> None:
    rows = read_events(run_dir / "events.tsv")
    info = json.loads((run_dir / "run.json").read_text())
    with pynwb.NWBHDF5IO(str(nwb_path), "r") as io:
        f = io.read()
        ep = f.epochs.to_dataframe()
        assert len(ep) == len(rows) == 9
        for (_, e), r in zip(ep.iterrows(), rows):
            assert (
                e["start_time"] == int(r["start_step"]) * 0.1 / 1000
                and e["stop_time"] == int(r["stop_step"]) * 0.1 / 1000
            )
            assert e["start_time"] == pytest.approx(float(r["onset"]))
            assert e["stop_time"] - e["start_time"] == pytest.approx(float(r["duration"]))
            assert list(e["tags"]) == [r["trial_type"]]
            for col in ("trial_type", "stimulus", "group", "block"):
                assert e[col] == r[col]
            assert e["repetition"] == (-1 if r["repetition"] == "n/a" else int(r["repetition"]))
        # The config whole: the file alone reruns the same network (same seed, same groups).
        assert f.experiment_description == (run_dir / "config.yaml").read_text()
        cfg_path = run_dir.parent / "from_nwb.yaml"
        cfg_path.write_text(f.experiment_description)
        assert load_config(cfg_path).to_dict() == info["config"]
        notes = json.loads(f.notes)
        assert notes["run.json"]["seed"] == info["seed"] and notes["run.json"]["versions"] == info["versions"]
        assert notes["exported_with"]["pynwb"] == pynwb.__version__
        assert f"--seed {info['seed']}" in f.source_script


def test_validator_reports_no_errors(nwb_path: Path) -> None:
    assert pynwb.validate(path=str(nwb_path)) == []


def test_cli_export(run_dir: Path, tmp_path: Path) -> None:
    """`wmnet export`: writes the file; an existing one only with --overwrite (exit 2, one line)."""
    wmnet = [sys.executable, "-c", "from wmnet.cli import main; main()"]
    out = tmp_path / "x.nwb"
    ok = subprocess.run([*wmnet, "export", str(run_dir), "--nwb", str(out), "--quiet"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == f"nwb: {out}", ok.stderr
    before = out.read_bytes()
    again = subprocess.run([*wmnet, "export", str(run_dir), "--nwb", str(out)], capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: --nwb {out}: exists (use --overwrite to replace it)"
    assert out.read_bytes() == before


# --- bad input ---------------------------------------------------------------------------------


def test_not_a_run(tmp_path: Path) -> None:
    from wmnet.io import to_neo, to_nwb

    (tmp_path / "file").write_text("x")
    with pytest.raises(WmnetError, match="not a folder"):
        to_nwb(tmp_path / "file", tmp_path / "o.nwb")
    with pytest.raises(WmnetError, match=r"not a wmnet run folder \(no run.json\)"):
        to_nwb(tmp_path, tmp_path / "o.nwb")
    with pytest.raises(WmnetError, match=r"not a wmnet run folder"):
        to_neo(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def copy_with_status(run_dir: Path, dest: Path, **changes: Any) -> Path:
    shutil.copytree(run_dir, dest)
    info = json.loads((dest / "run.json").read_text())
    for k, v in changes.items():
        if v is None:
            info.pop(k, None)
        else:
            info[k] = v
    (dest / "run.json").write_text(json.dumps(info))
    return dest


def cut_at(d: Path, t_ms: float) -> None:
    """Truncate a run's files at t_ms, as a run stopped there leaves them (the writers' truncate)."""
    from wmnet.io.series import SeriesWriter
    from wmnet.io.sonata import PopulationRange, ReportWriter, SpikeWriter

    pops = [PopulationRange("E", 0, N_E), PopulationRange("I", N_E, N - N_E)]
    s = read_spikes(d / "spikes.h5")
    w = SpikeWriter(d / "spikes.h5", pops, append=True)
    w.truncate({p: int((s[p][0] < t_ms).sum()) for p in s})
    w.close()
    for f in (d / "reports").glob("*.h5"):
        r = ReportWriter(f, f.stem, pops, np.array([0, 1, 2, 97, 98, 99]), 0.0, 1.0, append=True)
        r.truncate(round(t_ms))  # one sample per ms
        r.close()
    for name, step in (("rates", 10.0), ("synapses", 10.0)):
        _, values = read_series(d / f"{name}.h5")
        series = {
            k: (v.dtype.type, "")
            for k, v in values.items()
            if k != "time" and v.ndim == 1 and not k.endswith("node_ids")
        }
        sw = SeriesWriter(d / f"{name}.h5", series, {}, 0.0, step, append=True)
        sw.truncate(round(t_ms / step))
        sw.close()


@pytest.mark.parametrize("status", ["interrupted", "failed", "running"])
def test_incomplete_run_needs_partial(run_dir: Path, tmp_path: Path, status: str) -> None:
    from wmnet.io import to_neo, to_nwb

    d = copy_with_status(run_dir, tmp_path / "r", status=status, simulated_ms=None if status == "running" else 50.0)
    if status != "running":
        cut_at(d, 50.0)
    with pytest.raises(WmnetError, match=r"the run (was interrupted|failed|is still running).*--partial"):
        to_nwb(d, tmp_path / "o.nwb")
    with pytest.raises(WmnetError, match="--partial"):
        to_neo(d)
    assert not (tmp_path / "o.nwb").exists()
    to_nwb(d, tmp_path / "o.nwb", partial=True)
    with pynwb.NWBHDF5IO(str(tmp_path / "o.nwb"), "r") as io:
        ep = io.read().epochs.to_dataframe()
    if status == "running":  # the end of the data: the files' last sample time, 120 ms
        assert len(ep) == 9 and ep["stop_time"].iloc[-1] == pytest.approx(0.12)
    else:  # epochs that started before 50 ms, the last one (cue 45-60 ms) cut at 50 ms
        assert list(ep["stop_step"]) == [200, 350, 450, 500] and ep["stop_time"].iloc[-1] == pytest.approx(0.05)
        block = to_neo(d, partial=True)
        assert float(block.segments[0].spiketrains[0].t_stop) == pytest.approx(50.0)


def test_existing_output_and_failed_export_leave_nothing_half_written(run_dir: Path, tmp_path: Path) -> None:
    from wmnet.io import to_nwb

    out = tmp_path / "o.nwb"
    out.write_bytes(b"keep me")
    with pytest.raises(WmnetError, match=r"exists \(use --overwrite"):
        to_nwb(run_dir, out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(WmnetError, match="is a folder"):
        to_nwb(run_dir, tmp_path)
    with pytest.raises(WmnetError, match="no folder"):
        to_nwb(run_dir, tmp_path / "missing" / "o.nwb")
    # A run whose spikes.h5 names a neuron that does not exist: the export fails midway.
    bad = copy_with_status(run_dir, tmp_path / "bad")
    with h5py.File(bad / "spikes.h5", "r+") as f:
        f["spikes/I/node_ids"][0] = 20
    with pytest.raises(WmnetError, match=r"spikes/I/node_ids holds ids outside 0\.\.19"):
        to_nwb(bad, out, overwrite=True)
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "o.nwb"]  # no temporary files
    to_nwb(run_dir, out, overwrite=True)
    assert pynwb.validate(path=str(out)) == []


# --- Neo -------------------------------------------------------------------------------------


def test_neo_block(run_dir: Path) -> None:
    import quantities as pq

    from wmnet.io import to_neo

    t, gid = spikes_global(run_dir)
    block = to_neo(run_dir)
    (seg,) = block.segments
    assert len(seg.spiketrains) == N
    for n, st in enumerate(seg.spiketrains):
        assert st.annotations["global_id"] == n and st.annotations["population"] == ("E" if n < N_E else "I")
        assert st.units == pq.ms and float(st.t_stop) == 120.0 and float(st.t_start) == 0.0
        assert np.array_equal(st.magnitude, t[gid == n])
    groups = read_groups(run_dir / "node_sets.json", N_E, N)
    assert [st.annotations["global_id"] for st in seg.spiketrains if "P1" in st.annotations["groups"]] == groups[
        "P1"
    ].tolist()
    signals = {a.name: a for a in seg.analogsignals}
    assert sorted(signals) == ["a", "i_f", "i_s", "rates", "v", "x"]
    v = signals["v"]
    report = read_report(run_dir / "reports" / "v.h5")
    assert np.array_equal(v.magnitude, np.concatenate([report["E"][2], report["I"][2]], axis=1))
    assert v.units == pq.mV and signals["i_s"].units == pq.mV / pq.ms and signals["x"].units == pq.dimensionless
    assert float(v.sampling_period.rescale(pq.ms)) == pytest.approx(1.0)
    assert np.allclose(v.times.rescale(pq.ms).magnitude, report["E"][0])
    assert list(v.array_annotations["global_id"]) == [0, 1, 2, 97, 98, 99]
    rt, rv = read_series(run_dir / "rates.h5")
    assert np.array_equal(
        signals["rates"].magnitude[:, list(signals["rates"].array_annotations["group"]).index("P1")],
        rv["rates/P1/rate_hz"],
    )
    (ep,) = seg.epochs
    rows = read_events(run_dir / "events.tsv")
    assert list(ep.labels) == [r["trial_type"] for r in rows]
    assert np.allclose(ep.times.magnitude, [float(r["onset"]) * 1000 for r in rows])
    assert np.allclose(ep.durations.magnitude, [float(r["duration"]) * 1000 for r in rows])
    assert list(ep.array_annotations["stimulus"]) == [r["stimulus"] for r in rows]


def test_neo_in_seconds_and_elephant(run_dir: Path) -> None:
    import quantities as pq
    from elephant.statistics import cv, isi, mean_firing_rate

    from wmnet.io import to_neo

    ms = to_neo(run_dir).segments[0]
    s = to_neo(run_dir, time_units="s").segments[0]
    assert s.spiketrains[0].units == pq.s and float(s.spiketrains[0].t_stop) == pytest.approx(0.12)
    for a, b in zip(ms.spiketrains, s.spiketrains):
        assert np.allclose(a.rescale(pq.s).magnitude, b.magnitude, rtol=1e-15, atol=0)
    assert np.allclose(s.epochs[0].times.magnitude * 1000, ms.epochs[0].times.magnitude)
    # Elephant works on them directly: rates and the CV of interspike intervals by hand.
    st = max(ms.spiketrains, key=len)
    assert float(mean_firing_rate(st).rescale(pq.Hz)) == pytest.approx(len(st) / 0.12)
    d = np.diff(st.magnitude)
    assert cv(isi(st)) == pytest.approx(d.std() / d.mean())
    with pytest.raises(WmnetError, match="time_units 'h'"):
        to_neo(run_dir, time_units="h")


def test_result_objects(run_dir: Path, tmp_path: Path) -> None:
    """A RunResult exports through its folder; one without a folder says so."""
    from types import SimpleNamespace

    from wmnet.io import to_neo, to_nwb

    u = read_units(to_nwb(SimpleNamespace(out=run_dir), tmp_path / "r.nwb"))
    assert u["id"].size == np.unique(spikes_global(run_dir)[1]).size
    assert len(to_neo(SimpleNamespace(out=run_dir)).segments[0].spiketrains) == N
    with pytest.raises(WmnetError, match="this result has no run folder"):
        to_nwb(SimpleNamespace(out=None), tmp_path / "n.nwb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nwb"]
