"""Issue 12 §6: the smaller defects (report dtype, real errors instead of asserts, files closed,
exact event onsets, the matplotlib backend, compile time apart from the speed, the progress bar)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.network import Network

TINY = ["populations.E.size=80", "populations.I.size=20"]


@pytest.mark.parametrize(("dtype", "stored"), [("float64", np.float64), ("float32", np.float32)])
def test_reports_are_stored_in_the_runs_dtype(dtype: str, stored: type, tmp_path: Path) -> None:
    from wmnet.simulation import Simulation

    cfg = load_config(None, [*TINY, f"dtype={dtype}", "duration=3", "record.synapses=null", "record.rates=null"])
    res = Simulation(Network.build(cfg)).run(out=tmp_path, progress=False, keep_in_memory=True)
    for var in cfg.record.traces.variables:
        with h5py.File(tmp_path / "reports" / f"{var}.h5") as f:
            data = f["report/E/data"]
            assert data.dtype == stored
            # The very values the run kept in memory (float64 copies of the working dtype's).
            cols = np.nonzero(res.traces.neurons < 80)[0]
            assert np.array_equal(data[()], res.traces[var][:, cols].astype(stored))


def test_float16_reports_are_float32() -> None:
    from wmnet.io.sonata import ReportWriter

    assert ReportWriter.__init__.__defaults__ is not None  # dtype is a parameter
    # float16 maps to float32 (holds every float16 exactly); checked without a run.
    import tempfile

    from wmnet.io.sonata import PopulationRange

    with tempfile.TemporaryDirectory() as d:
        w = ReportWriter(Path(d) / "v.h5", "v", [PopulationRange("E", 0, 4)], np.arange(2), 0.0, 1.0, dtype=np.float16)
        w.append(np.array([[1.5, 2.25]]))
        w.close()
        with h5py.File(Path(d) / "v.h5") as f:
            assert f["report/E/data"].dtype == np.float32
            assert f["report/E/data"][0].tolist() == [1.5, 2.25]


def test_rate_monitor_checks_are_real_errors() -> None:
    """`assert` vanishes under python -O: the consistency checks raise WmnetError instead."""
    from wmnet.monitors import RateMonitor

    mon = RateMonitor({"E": (0, 4)}, 10, 0.1, 0, torch.device("cpu"), 100, None, True)
    with pytest.raises(WmnetError, match="block starts at step 5, expected 0"):
        mon.record_block(5, torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(WmnetError, match="rate bins do not match|whole rate bins"):
        mon.load({"rows": 3, "partial": torch.zeros(1, dtype=torch.int64)}, 5)


def test_checks_survive_python_O(tmp_path: Path) -> None:
    code = (
        "import torch\nfrom wmnet.monitors import RateMonitor\nfrom wmnet.errors import WmnetError\n"
        "m = RateMonitor({'E': (0, 4)}, 10, 0.1, 0, torch.device('cpu'), 100, None, True)\n"
        "try:\n    m.record_block(5, torch.zeros(3, 4, dtype=torch.bool))\nexcept WmnetError:\n    print('raised')\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "raised", out.stderr


def test_connectivity_files_are_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every archive np.load opens for --connectivity is closed by the time the load returns
    (the tracker keeps a reference, so garbage collection cannot close it behind our back)."""
    cfg = load_config(None, ["populations.E.size=8", "populations.I.size=2"])
    net = Network.build(cfg)
    dense = tmp_path / "dense.npz"
    j_slow, j_fast = net.connectivity.to_dense(cfg, torch.float64)
    np.savez(dense, j_slow=j_slow.numpy(), j_fast=j_fast.numpy())
    from wmnet.io.connectivity_files import load_connectivity, load_dense, save_snapshot

    snap = tmp_path / "snap.npz"
    save_snapshot(snap, net.connectivity, net.connectivity.initial, {"t_ms": 0.0, "step": 0, "seed": 0})
    opened: list[object] = []
    real_load = np.load

    def tracking_load(*args: Any, **kwargs: Any) -> Any:  # forwards np.load's arguments as they come
        out = real_load(*args, **kwargs)
        opened.append(out)
        return out

    monkeypatch.setattr(np, "load", tracking_load)
    for load, path in ((load_dense, dense), (load_connectivity, dense), (load_connectivity, snap)):
        opened.clear()
        conn = load(path, cfg, torch.device("cpu"), torch.float32)
        assert conn.n_synapses() == net.connectivity.n_synapses()
        archives = [o for o in opened if isinstance(o, np.lib.npyio.NpzFile)]
        assert archives and all(a.zip is None for a in archives), f"{load.__name__} left {path.name} open"


def test_event_onsets_are_exact(tmp_path: Path) -> None:
    from wmnet.protocol import Schedule, read_events, seconds

    # An onset past 1000 s: 6 significant digits gave 1234.57 (10 ms resolution).
    cfg = load_config(
        None,
        [
            *TINY,
            "protocol={epochs: [{name: a, duration: 1234567.8}, {name: b, duration: 0.3}, {name: c, duration: 0.1}]}",
        ],
    )
    sched = Schedule.from_config(cfg)
    sched.write_events(tmp_path / "events.tsv")
    rows = read_events(tmp_path / "events.tsv")
    assert [r["onset"] for r in rows] == ["0", "1234.5678", "1234.5681"]
    assert [r["duration"] for r in rows] == ["1234.5678", "0.0003", "0.0001"]
    for r in rows:  # the seconds give the exact step back
        assert round(float(r["onset"]) * 1000 / cfg.dt) == int(r["start_step"])
    assert seconds(3, 0.1) == "0.0003" and seconds(0, 0.1) == "0" and seconds(10**14, 0.1) == "10000000000"
    with open(tmp_path / "events.tsv") as f:
        assert next(csv.reader(f, delimiter="\t"))[0] == "onset"


def test_plotting_leaves_the_backend_alone() -> None:
    code = "import matplotlib\nmatplotlib.use('svg')\nimport wmnet.plotting\nprint(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "svg", out.stderr


def test_block_timer_separates_compile_from_speed() -> None:
    from wmnet.simulation import BlockTimer

    t = BlockTimer()
    t.add(10.0, 200, 0.1)  # first block: 20 ms simulated in 10 s (compilation)
    assert t.compile_seconds() == 0.0  # nothing to compare with yet
    t.add(1.0, 200, 0.1)  # 20 ms in 1 s: 50 wall s per simulated s
    t.add(2.0, 200, 0.1)  # 100 s/s
    # later blocks: 3 s for 400 steps → the first block's 200 steps cost 1.5 s; the rest compiled
    assert t.compile_seconds() == pytest.approx(8.5)
    # the moving average restarts after the first block, then weighs the newest block 0.3
    assert t.ema == pytest.approx(0.7 * 50 + 0.3 * 100)
    # 1000 steps of 0.1 ms left = 0.1 simulated s at 65 s/s = 6.5 s
    assert t.postfix(600, 1600, 0.1) == "65 s per simulated s, 00:06 left"


def test_run_json_reports_compile_time_apart(tmp_path: Path) -> None:
    from wmnet.simulation import Simulation

    cfg = load_config(None, [*TINY, "duration=60", "record.synapses=null"])
    res = Simulation(Network.build(cfg)).run(out=tmp_path, progress=False)
    wall = json.loads((tmp_path / "run.json").read_text())["wall_seconds"]
    assert set(wall) == {"build", "compile", "simulate"} and wall["compile"] >= 0
    assert res.info["wall_s_per_sim_s"] == pytest.approx(wall["simulate"] / 0.06)

    from wmnet.cli import _summary_lines

    assert f"compile {wall['compile']:.2f} s" in _summary_lines(res.info)[1]


def test_progress_bar_shows_ms_time_left_and_recent_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wmnet.simulation import Simulation

    cfg = load_config(None, [*TINY, "duration=100", "record.synapses=null", "record.traces.variables=[]"])
    Simulation(Network.build(cfg)).run(progress=True)
    err = capsys.readouterr().err
    assert "/100 ms simulated" in err and "s per simulated s" in err and " left" in err
    assert "sim s per wall s" not in err
