"""`wmnet plot DIR` draws the raster, traces, rates, learning-dynamics and snapshot figures from the files
(save_run_figures); the plot functions return figures, draw into an `ax`, and write nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from wmnet.config import load_config
from wmnet.network import Network
from wmnet.plotting import (
    NothingToPlot,
    plot_efficacy_blocks,
    plot_learning,
    plot_raster,
    plot_rates,
    plot_traces,
    plot_trials,
    save_run_figures,
)
from wmnet.result import RunResult
from wmnet.simulation import Simulation

FULL = [
    "populations.E.size=400",
    "populations.I.size=100",
    "device=cpu",
    "duration=40",
    "record.synapses.every=10",
    "groups.sets={A: {start: 0, stop: 50}}",
    "record.synapses.groups=[[E, E], [A, A]]",
    "record.snapshots=[20, 40]",
]


@pytest.fixture(autouse=True)
def no_open_figures() -> None:
    """Start each test with no pyplot figure open, so `plt.get_fignums() == []` below checks what the
    plotting code itself left open (other test files, e.g. the notebook ones, may leave figures)."""
    plt.close("all")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    out = tmp_path_factory.mktemp("plots") / "run"
    result = Simulation(Network.build(load_config(None, FULL))).run(out=out, progress=False, keep_in_memory=True)
    return out, result


def test_every_figure_is_drawn_from_the_files(full_run: tuple[Path, RunResult]) -> None:
    files = save_run_figures(full_run[0])
    assert sorted(f.name for f in files) == [
        "efficacy_blocks.png",
        "learning.png",
        "raster.png",
        "rates.png",
        "traces.png",
    ]
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000
    assert plt.get_fignums() == []  # every figure closed


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
    assert [f.name for f in save_run_figures(tmp_path / "run")] == ["raster.png"]
    for plot in (plot_traces, plot_rates, plot_learning, plot_efficacy_blocks, plot_trials):
        with pytest.raises(NothingToPlot):
            plot(tmp_path / "run")


@pytest.mark.parametrize("source", ["folder", "reloaded", "memory"])
def test_plots_return_figures_and_draw_into_an_ax(full_run: tuple[Path, RunResult], source: str) -> None:
    out, memory = full_run
    sources: dict[str, Path | RunResult] = {"folder": out, "reloaded": RunResult.from_folder(out), "memory": memory}
    what = sources[source]
    before = sorted(p.name for p in out.rglob("*"))
    for plot in (plot_raster, plot_traces, plot_rates, plot_learning, plot_efficacy_blocks):
        fig = plot(what)
        assert isinstance(fig, Figure) and fig.axes, plot.__name__
        plt.close(fig)
        mine, ax = plt.subplots()
        assert plot(what, ax=ax) is mine, plot.__name__
        assert ax.has_data() or ax.images, plot.__name__
        plt.close(mine)
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written
    assert plt.get_fignums() == []


def test_traces_of_chosen_variables(full_run: tuple[Path, RunResult]) -> None:
    fig = plot_traces(full_run[1], variables=["v", "x"])
    assert [a.get_ylabel() for a in fig.axes] == ["v (mV)", "x"]
    plt.close(fig)
    with pytest.raises(NothingToPlot, match="of a"):
        plot_traces(full_run[1], variables=["a"])


def test_plots_of_tables(full_run: tuple[Path, RunResult]) -> None:
    """A raster from a spikes table and rates from a rates table (arrays, no result needed)."""
    result = full_run[1]
    assert result.rates is not None
    fig = plot_raster(result.spikes.to_pandas(), sizes={"E": 400, "I": 100})
    assert fig.axes[1].get_legend_handles_labels()[1] == ["E (400 neurons)", "I (100 neurons)"]
    plt.close(fig)
    mine, ax = plt.subplots()
    assert plot_rates(result.rates.to_pandas(), ax=ax) is mine
    assert ax.get_legend_handles_labels()[1] == ["E", "I", "A"] and ax.get_ylabel() == "rate (Hz, 10 ms bins)"
    plt.close(mine)
