"""Output files can be read while a `wmnet run` process is still writing them.

HDF5 ≥ 1.10 locks a file for the process that opens it for writing; a writer holding that lock
makes every other process's `h5py.File(path, "r")` fail ("unable to lock file"). The writers
open their files without it, and wmnet's readers (`read_spikes`, `read_report`, `read_series`)
retry a read that overlaps a flush and return a consistent prefix.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from wmnet.io.series import read_series
from wmnet.io.sonata import read_report, read_spikes

N_E, N_I, DURATION = 400, 100, 3000.0
SETS = [
    f"populations.E.size={N_E}",
    f"populations.I.size={N_I}",
    f"duration={DURATION:g}",
    "record.flush_every=10",
    "device=cpu",
    "engine=sparse",
    "dtype=float32",
    "seed=3",
]


def spike_rows(path: Path) -> int:
    """Rows of spikes.h5 so far, read without taking HDF5's lock (works whoever holds it), 0
    when the file is not there yet or the read overlapped a flush."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return sum(g["timestamps"].shape[0] for g in f["spikes"].values())
    except Exception:  # not there yet, or a half-written object
        return 0


def plain_open(path: Path) -> list[str]:
    """What a user types: h5py.File(path, "r"), default locking. A lock error fails at once; an
    unlucky read that overlaps the writer's flush is retried (HDF5 has no isolation without SWMR)."""
    for attempt in range(10):
        try:
            with h5py.File(path, "r") as f:
                names: list[str] = []
                f.visit(names.append)
                return names
        except Exception as e:  # OSError, or RuntimeError, KeyError... from a half-written object
            assert "lock" not in str(e), f"{path.name}: {e}"
            if attempt == 9:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def check(out: Path) -> dict[str, int]:
    """Open spikes.h5, reports/v.h5, rates.h5 and synapses.h5 as they are now; check them; count rows."""
    names = plain_open(out / "spikes.h5")
    assert {"spikes/E/timestamps", "spikes/E/node_ids", "spikes/I/timestamps", "spikes/I/node_ids"} <= set(names)
    assert "report/E/mapping/time" in plain_open(out / "reports" / "v.h5")
    assert "rates/E/rate_hz" in plain_open(out / "rates.h5")

    spikes = read_spikes(out / "spikes.h5")
    assert set(spikes) == {"E", "I"}
    for pop, size in (("E", N_E), ("I", N_I)):
        t, ids = spikes[pop]
        assert t.dtype == np.float64 and ids.dtype == np.uint64 and t.shape == ids.shape
        assert np.all(np.diff(t) >= 0), f"{pop} timestamps not sorted"
        assert t.size == 0 or (t[0] >= 0 and t[-1] < DURATION)
        assert ids.size == 0 or ids.max() < size

    report = read_report(out / "reports" / "v.h5")
    assert set(report) == {"E", "I"}
    n_samples = {t.size for t, _, _ in report.values()}
    assert len(n_samples) == 1  # every population holds the same samples
    for pop, size in (("E", N_E), ("I", N_I)):
        t, ids, data = report[pop]
        assert data.shape == (t.size, ids.size) and ids.size > 0 and ids.max() < size
        assert np.all(np.isfinite(data))
        if t.size > 1:
            np.testing.assert_allclose(np.diff(t), 1.0)  # every 10 steps of 0.1 ms

    t_rates, rates = read_series(out / "rates.h5")
    for pop, size in (("E", N_E), ("I", N_I)):
        assert rates[f"rates/{pop}/rate_hz"].shape == t_rates.shape
        assert rates[f"rates/{pop}/node_ids"].size == size
        assert np.all(rates[f"rates/{pop}/rate_hz"] >= 0)
    np.testing.assert_array_equal(rates["time"], [0.0, t_rates.size * 10.0, 10.0])

    t_syn, syn = read_series(out / "synapses.h5")
    assert all(v.shape == t_syn.shape for k, v in syn.items() if k.startswith("switches/") or k.endswith("mean_L"))
    return {"spikes": sum(t.size for t, _ in spikes.values()), "report": n_samples.pop(), "rates": t_rates.size}


def test_files_are_readable_while_the_run_writes_them(tmp_path: Path) -> None:
    out = tmp_path / "live"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wmnet.cli",
            "run",
            "--out",
            str(out),
            "--no-plot",
            "--quiet",
            *[a for s in SETS for a in ("--set", s)],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while spike_rows(out / "spikes.h5") == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no spikes written within 240 s"
            time.sleep(0.05)
        assert proc.poll() is None
        assert json.loads((out / "run.json").read_text())["status"] == "running"
        first = check(out)
        assert first["spikes"] > 0
        second = first
        while not all(second[k] > first[k] for k in first):
            assert proc.poll() is None, "the run ended before the files grew between two reads"
            assert time.monotonic() < deadline, f"the files did not grow: {first} then {second}"
            time.sleep(0.2)
            second = check(out)
        # The figures drawn from the SONATA files (`wmnet plot` draws these first) work too.
        from wmnet.plotting import plot_raster, plot_traces

        plot_raster(out).savefig(tmp_path / "raster.png")
        assert (tmp_path / "raster.png").stat().st_size > 0
        plot_traces(out).savefig(tmp_path / "traces.png")
        assert (tmp_path / "traces.png").stat().st_size > 0
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=120)


def test_a_second_writer_of_the_same_folder_is_refused(tmp_path: Path) -> None:
    """Two runs writing one folder would interleave their files: the second stops with one line."""
    from wmnet.config import load_config
    from wmnet.errors import WmnetError
    from wmnet.io.runinfo import lock_folder
    from wmnet.network import Network
    from wmnet.simulation import Simulation

    out = tmp_path / "run"
    held = lock_folder(out)  # as a running `wmnet run` holds it
    sim = Simulation(
        Network.build(load_config(None, ["populations.E.size=80", "populations.I.size=20", "device=cpu", "duration=5"]))
    )
    with pytest.raises(WmnetError, match=r"another wmnet process is writing this run folder"):
        sim.run(out=out, progress=False)
    held.close()
    assert sim.run(out=out, progress=False).info["status"] == "complete"
