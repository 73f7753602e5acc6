"""The stepping API (as Brian2's run/store/restore, PyGeNN's step_time, Norse's explicit state):
`step`, `iterate`, `stop`, `state`/`set_state`, `store`/`restore`, `Simulation.from_checkpoint`,
and the partial result of an interrupted run from Python. Every way of advancing the network
gives bitwise what one `run` gives."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wmnet.block import Block
from wmnet.checkpoint import resume_run
from wmnet.clock import Clock
from wmnet.config import load_config
from wmnet.engines import Engine
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.protocol import Schedule, base_scales
from wmnet.result import RunResult
from wmnet.simulation import Simulation
from wmnet.stimuli import Stimulus

SETS = [
    "populations.E.size=400",
    "populations.I.size=100",
    "device=cpu",
    "engine=sparse",
    "dtype=float32",
    "seed=3",
    "background={E: {mean: 1.2, std: 0.5}, I: {mean: 1.0, std: 0.4}, grain: 0.5}",
    "stimulus={kind: background}",
    "record.traces={variables: [v, x], neurons: [0, 5, -1], every: 10}",
    "record.rates=null",
    "record.synapses=null",
    # 15 ms plain, 15 ms with the slow E→E halved, 10 ms plain: receptor scales change twice.
    "protocol={epochs: [{name: a, duration: 15}, {name: drug, duration: 15, projections: "
    "{E->E: {slow_scale: 0.5}}}, {name: c, duration: 10}]}",
]
N_STEPS = 400  # 40 ms of dt = 0.1 ms


def new_sim(*extra: str) -> Simulation:
    return Simulation(Network.build(load_config(None, [*SETS, *extra])))


def in_folder(out: Path) -> Simulation:
    """A simulation and what `wmnet run` writes before simulating: the folder and its config.yaml."""
    sim = new_sim()
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(sim.config.to_yaml())
    return sim


def assert_same_engine(a: Engine, b: Engine) -> None:
    """The same state, every lazily updated E→E synapse brought up to date first (synapses())."""
    a.synapses(), b.synapses()
    sa, sb = a.state_dict(), b.state_dict()
    assert (sa["k"], sa["n_up"], sa["n_down"]) == (sb["k"], sb["n_up"], sb["n_down"])
    for name, t in sa["tensors"].items():
        assert torch.equal(t, sb["tensors"][name]), name


def spikes_of(blocks: list[Block]) -> tuple[np.ndarray, np.ndarray]:
    parts = [b.spikes() for b in blocks]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture(scope="module")
def whole() -> tuple[Simulation, RunResult]:
    sim = new_sim()
    return sim, sim.run(progress=False)


def test_the_run_has_spikes_and_traces(whole: tuple[Simulation, RunResult]) -> None:
    """The comparisons below compare something."""
    _, res = whole
    assert res.spikes.i.size > 100 and res.traces["v"].shape == (40, 3)
    assert np.unique(res.spikes.t[res.spikes.t >= 15]).size > 10  # spikes in and after the scaled epoch


def test_step_in_pieces_is_one_run(whole: tuple[Simulation, RunResult]) -> None:
    """step(n) in uneven pieces (across both epoch boundaries) is bitwise one run: state, spikes, traces."""
    sim_whole, res = whole
    sim = new_sim()
    blocks = [sim.step(n) for n in (1, 37, 162, 113, 87)]
    assert sum(b.steps for b in blocks) == N_STEPS and sim.engine.k == N_STEPS and sim.t == pytest.approx(40.0)
    assert [b.k0 for b in blocks] == [0, 1, 38, 200, 313]
    assert_same_engine(sim.engine, sim_whole.engine)
    i, t = spikes_of(blocks)
    np.testing.assert_array_equal(i, res.spikes.i)
    np.testing.assert_array_equal(t, res.spikes.t)
    v = np.concatenate([b.trace("v") for b in blocks])
    np.testing.assert_array_equal(v, res.traces["v"])
    np.testing.assert_array_equal(np.concatenate([b.sample_t for b in blocks]), res.traces.t)
    with pytest.raises(WmnetError, match="at least one step"):
        sim.step(0)


def test_iterate_covers_the_run(whole: tuple[Simulation, RunResult]) -> None:
    """Blocks of 7 ms, cut at the epoch boundaries (15 and 30 ms), tile 0..40 ms; bitwise one run."""
    sim_whole, res = whole
    sim = new_sim()
    blocks = list(sim.iterate(7.0))
    assert blocks[0].k0 == 0 and blocks[-1].k1 == N_STEPS
    assert all(a.k1 == b.k0 for a, b in zip(blocks, blocks[1:]))
    assert [b.t for b in blocks] == pytest.approx([7, 14, 15, 22, 29, 30, 37, 40])
    assert "onsets" in repr(blocks[0]) and blocks[0].onsets.shape == (70, 500)
    assert_same_engine(sim.engine, sim_whole.engine)
    i, t = spikes_of(blocks)
    np.testing.assert_array_equal(i, res.spikes.i)
    np.testing.assert_array_equal(t, res.spikes.t)


def test_stop_ends_iterate_after_the_current_block() -> None:
    sim = new_sim()
    seen = []
    for block in sim.iterate(5.0):
        seen.append(block)
        if len(seen) == 3:
            sim.stop()
    assert len(seen) == 3 and sim.engine.k == 150
    assert [b.steps for b in sim.iterate(5.0, duration=10.0)] == [50, 50]  # a new iterate starts afresh


def test_stop_from_a_callback_returns_the_partial_run_and_resumes_bitwise(tmp_path: Path) -> None:
    """stop() in run's on_block: the result comes back (no exception), marked interrupted, with a
    checkpoint; `wmnet resume` then completes the folder as one uninterrupted run wrote it."""
    from test_checkpoint import assert_same_files

    whole = tmp_path / "whole"
    in_folder(whole).run(out=whole, progress=False)
    out = tmp_path / "stopped"
    sim = in_folder(out)

    def stop_at_20(block: Block) -> None:
        if block.t >= 20:
            sim.stop()

    res = sim.run(out=out, progress=False, on_block=stop_at_20)
    assert res.interrupted and res.info["status"] == "interrupted"
    assert 20 <= res.info["simulated_ms"] < 40 and res.info["checkpoint_ms"] == res.info["simulated_ms"]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    done = resume_run(out, progress=False)
    assert done.info["status"] == "complete"
    assert_same_files(whole, out)


def test_set_state_then_run() -> None:
    """An initial v distribution: state reads it back (as a copy), the run starts from it, and
    the same state gives the same run."""
    n = 500
    v0 = torch.linspace(0.0, 19.9, n)  # mV, up to just below θ = 20 mV
    runs = []
    for _ in range(2):
        sim = new_sim()
        sim.set_state(v=v0, x=0.5)
        state = sim.state
        assert torch.equal(state.v, v0) and torch.equal(state.x, torch.full((n,), 0.5))
        state.v += 100  # a copy: the engine keeps its own
        assert torch.equal(sim.state.v, v0)
        runs.append(sim.run(duration=20, progress=False))
    plain = new_sim().run(duration=20, progress=False)
    a, b = runs
    np.testing.assert_array_equal(a.spikes.i, b.spikes.i)
    np.testing.assert_array_equal(a.traces["v"], b.traces["v"])
    assert a.traces["v"][0].tolist() == pytest.approx(v0[[0, 5, -1]].tolist())  # sampled at t = 0
    assert not np.array_equal(a.spikes.i, plain.spikes.i)
    sim = new_sim()
    sim.set_state(v=np.full(n, 3.0))  # arrays and scalars too
    assert torch.equal(sim.state.v, torch.full((n,), 3.0))
    with pytest.raises(WmnetError, match="unknown variables"):
        sim.set_state(w=1.0)
    with pytest.raises(WmnetError, match="shape"):
        sim.set_state(v=torch.zeros(3))


def test_store_restore_gives_the_same_continuation_twice() -> None:
    sim = new_sim()
    sim.step(120)
    sim.store("mid")
    a = sim.run(duration=20, progress=False)  # its summary brings every synapse up to date
    after_a = sim.engine.state_dict()
    sim.restore("mid")
    assert sim.engine.k == 120
    b = sim.run(duration=20, progress=False)
    np.testing.assert_array_equal(a.spikes.i, b.spikes.i)
    np.testing.assert_array_equal(a.spikes.t, b.spikes.t)
    np.testing.assert_array_equal(a.traces["v"], b.traces["v"])
    after_b = sim.engine.state_dict()
    for name, t in after_a["tensors"].items():
        assert torch.equal(t, after_b["tensors"][name]), name
    assert a.spikes.i.size > 0
    with pytest.raises(WmnetError, match="nothing stored as 'other'"):
        sim.restore("other")


def test_from_checkpoint_continues_as_resume_does(tmp_path: Path) -> None:
    """From an interrupted folder: Simulation.from_checkpoint(dir).run(rest) in memory ends in the
    state `wmnet resume` reaches, with the spikes resume appends to the folder."""
    out = tmp_path / "stopped"
    sim = in_folder(out)
    sim.run(out=out, progress=False, on_block=lambda b: sim.stop() if b.t >= 20 else None)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    back = Simulation.from_checkpoint(out)
    k = back.engine.k
    assert k == 300 and "t = 30 ms" in repr(back)  # blocks end at 15 and 30 ms (the epochs)
    rest = back.run(duration=(N_STEPS - k) * back.config.dt, progress=False)
    resumed = resume_run(copy, progress=False)
    assert resumed.info["status"] == "complete" and resumed.engine is not None
    assert_same_engine(back.engine, resumed.engine)
    t, i = file_spikes(copy)
    after = t >= 30
    assert after.sum() > 0
    np.testing.assert_array_equal(rest.spikes.t, t[after])
    np.testing.assert_array_equal(rest.spikes.i, i[after])


def test_a_folder_written_from_python_continues_as_a_cli_one(tmp_path: Path) -> None:
    """Simulation.run(out=...) from Python writes config.yaml itself (no `wmnet run`), so
    from_checkpoint continues it: the spikes after the stop are those of an uninterrupted run."""
    out = tmp_path / "python"
    sim = new_sim()
    sim.run(out=out, progress=False, on_block=lambda b: sim.stop() if b.t >= 20 else None)
    assert load_config(out / "config.yaml").to_dict() == sim.config.to_dict()
    back = Simulation.from_checkpoint(out)
    k = back.engine.k
    rest = back.run(duration=(N_STEPS - k) * back.config.dt, progress=False)
    whole = new_sim().run(progress=False)
    after = whole.spikes.t >= k * back.config.dt
    assert after.sum() > 0
    np.testing.assert_array_equal(rest.spikes.t, whole.spikes.t[after])
    np.testing.assert_array_equal(rest.spikes.i, whole.spikes.i[after])


def file_spikes(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(times in ms, global ids) of a folder's spikes.h5, sorted by time then id (as in memory)."""
    import h5py

    t, i = [], []
    with h5py.File(folder / "spikes.h5", "r") as f:
        for pop, offset in (("E", 0), ("I", 400)):
            t.append(f[f"spikes/{pop}/timestamps"][()])
            i.append(f[f"spikes/{pop}/node_ids"][()].astype(np.int64) + offset)
    tt, ii = np.concatenate(t), np.concatenate(i)
    order = np.lexsort((ii, tt))
    return tt[order], ii[order]


class InterruptAt:
    """The config's stimulus, raising KeyboardInterrupt (as Ctrl-C in a notebook) when block k_stop starts."""

    def __init__(self, inner: Stimulus, k_stop: int):
        self.inner, self.k_stop = inner, k_stop

    def __call__(self, k: int) -> torch.Tensor:
        return self.inner(k)

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        if k0 == self.k_stop:
            raise KeyboardInterrupt
        return self.inner.block(k0, n_steps)


def test_an_interrupted_run_from_python_returns_its_partial_result(
    whole: tuple[Simulation, RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """on_interrupt="return": the partial result, marked interrupted; in an interactive session
    (a notebook) that is the default; elsewhere (scripts, the CLI) KeyboardInterrupt(result)."""
    _, res = whole
    sim = new_sim()
    sim.stimulus = InterruptAt(sim.stimulus, 300)  # blocks start at 0, 150 and 300 (the epochs)
    part = sim.run(progress=False, on_interrupt="return")
    assert part.interrupted and part.info["status"] == "interrupted" and part.info["simulated_ms"] == 30
    early = res.spikes.t < 30
    np.testing.assert_array_equal(part.spikes.i, res.spikes.i[early])
    np.testing.assert_array_equal(part.spikes.t, res.spikes.t[early])
    sim = new_sim()
    sim.stimulus = InterruptAt(sim.stimulus, 150)
    with pytest.raises(KeyboardInterrupt) as exc:
        sim.run(progress=False)  # not interactive: as before
    assert exc.value.args[0].interrupted
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)  # as the REPL or a notebook kernel
    sim = new_sim()
    sim.stimulus = InterruptAt(sim.stimulus, 150)
    assert sim.run(progress=False).info["simulated_ms"] == 15


def test_the_clock_ends_blocks_at_every_boundary() -> None:
    """Block length, synapse samples (from k_start), snapshots, epoch ends, the run's end; and
    checkpoints due after the block that crosses a multiple, without cutting it."""
    cfg = load_config(None, SETS)
    sched = Schedule.from_config(cfg)  # epochs end at steps 150, 300, 400
    clock = Clock(200, 30, base_scales(cfg), sched, sample_every=70, snapshots=(250,), checkpoint_every=120)
    ends, k = [], 0
    while k < 420:
        k = clock.block_end(k, 420)
        ends.append(k)
    assert ends == [30, 100, 150, 170, 240, 250, 300, 310, 380, 400, 420]
    assert clock.scales(160)["E->E"][0] == 0.5 and clock.scales(100) == clock.scales(410) == base_scales(cfg)
    assert clock.snapshot_due(250) and not clock.snapshot_due(240)
    assert clock.checkpoint_due(100, 150) and not clock.checkpoint_due(120, 200) and clock.checkpoint_due(200, 240)


def test_the_progress_bar_reports_simulated_ms(capsys: pytest.CaptureFixture[str]) -> None:
    """tqdm.auto on a terminal (or a captured stream): simulated ms out of the total, on stderr."""
    res = new_sim().run(duration=10, progress=True)
    err = capsys.readouterr().err
    assert "10/10 ms simulated" in err and res.info["status"] == "complete"
