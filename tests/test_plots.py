"""`wmnet plot DIR` draws the raster, traces, rates, learning-dynamics and snapshot figures from the files."""

from __future__ import annotations

from pathlib import Path

from wmnet.config import load_config
from wmnet.network import Network
from wmnet.plotting import plot_run
from wmnet.simulation import Simulation


def test_every_figure_is_drawn_from_the_files(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "populations.E.size=400",
            "populations.I.size=100",
            "device=cpu",
            "duration=40",
            "record.synapses.every=10",
            "groups.sets={A: {start: 0, stop: 50}}",
            "record.synapses.groups=[[E, E], [A, A]]",
            "record.snapshots=[20, 40]",
        ],
    )
    Simulation(Network.build(cfg)).run(out=tmp_path / "run", progress=False)
    files = plot_run(tmp_path / "run")
    assert sorted(f.name for f in files) == [
        "efficacy_blocks.png",
        "learning.png",
        "raster.png",
        "rates.png",
        "traces.png",
    ]
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000


def test_figures_need_only_what_was_recorded(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "populations.E.size=400",
            "populations.I.size=100",
            "device=cpu",
            "duration=20",
            "record.synapses=null",
            "record.rates=null",
            "record.traces.variables=[]",
        ],
    )
    Simulation(Network.build(cfg)).run(out=tmp_path / "run", progress=False)
    assert [f.name for f in plot_run(tmp_path / "run")] == ["raster.png"]
