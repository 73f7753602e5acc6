"""Checkpoints and `wmnet resume`: a stopped and resumed run is bitwise the uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from wmnet.checkpoint import CHECKPOINT, load_checkpoint, resume_run
from wmnet.config import Config, load_config
from wmnet.engines import Engine, make_engine
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.simulation import RunResult, Simulation
from wmnet.stimuli import Stimulus

SMALL = [
    "populations.E.size=800",
    "populations.I.size=200",
    "dtype=float32",
    "engine=sparse",
    "device=cpu",
    "seed=5",
    "duration=60",
]
CHECKPOINT_MS = 20.0  # every block of 200 steps (dt = 0.1 ms) crosses one


@dataclass
class Whole:
    out: Path
    result: RunResult


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Whole:
    """The uninterrupted 60 ms run every stopped one is compared with."""
    out = tmp_path_factory.mktemp("whole") / "run"
    cfg = load_config(None, [*SMALL, f"record.checkpoint_every={CHECKPOINT_MS}"])
    return Whole(out, Simulation(Network.build(cfg)).run(out=out, progress=False))


def datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_files(a: Path, b: Path) -> None:
    """Every dataset of spikes.h5 and reports/*.h5 bitwise equal (values, dtypes, shapes)."""
    names = ["spikes.h5", *sorted(str(p.relative_to(a)) for p in (a / "reports").glob("*.h5"))]
    assert len(names) > 1
    for name in names:
        da, db = datasets(a / name), datasets(b / name)
        assert da.keys() == db.keys(), name
        for key in da:
            assert da[key].dtype == db[key].dtype and da[key].shape == db[key].shape, (name, key)
            np.testing.assert_array_equal(da[key], db[key], err_msg=f"{name}:{key}")


def assert_same_engine(a: Engine, b: Engine) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert (sa["k"], sa["n_up"], sa["n_down"]) == (sb["k"], sb["n_up"], sb["n_down"])
    for name, t in sa["tensors"].items():
        assert torch.equal(t, sb["tensors"][name]), name


def assert_same_state(a: RunResult, b: RunResult) -> None:
    """Final engine state (every E→E synapse brought to the end by the summary) and summary."""
    assert a.engine is not None and b.engine is not None  # results in memory keep their engines
    assert_same_engine(a.engine, b.engine)
    assert a.summary == b.summary


class StopAt:
    """The config's stimulus, raising KeyboardInterrupt (as Ctrl-C would) when block k_stop starts;
    before that, keeps a copy of the checkpoint written at step k_copy."""

    def __init__(self, inner: Stimulus, out: Path, k_copy: int, k_stop: int):
        self.inner, self.out, self.k_copy, self.k_stop = inner, out, k_copy, k_stop

    def __call__(self, k: int) -> torch.Tensor:
        return self.inner(k)

    def block(self, k0: int, n_steps: int) -> torch.Tensor:
        if k0 == self.k_copy:
            shutil.copy(self.out / CHECKPOINT, self.out / "early.pt")
        if k0 == self.k_stop:
            raise KeyboardInterrupt
        return self.inner.block(k0, n_steps)


def start_run(cfg: Config, out: Path) -> Simulation:
    """What `wmnet run` writes before simulating: the folder and its config.yaml."""
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(cfg.to_yaml())
    return Simulation(Network.build(cfg))


def test_stop_and_resume_is_bitwise_the_uninterrupted_run(whole: Whole, tmp_path: Path) -> None:
    """Ctrl-C at 40 ms, resumed; and the same with the checkpoint rolled back to 20 ms, as if the
    process had been killed right after it wrote 20 ms more data: that data is dropped, not doubled."""
    cfg = load_config(None, [*SMALL, f"record.checkpoint_every={CHECKPOINT_MS}"])
    check_stop_and_resume(cfg, whole, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stop_and_resume_on_cuda_is_bitwise(tmp_path: Path) -> None:
    """The same on the GPU, with `deterministic: true` (float atomics make no two runs equal)."""
    cfg = load_config(None, [*SMALL, f"record.checkpoint_every={CHECKPOINT_MS}", "device=cuda", "deterministic=true"])
    out = tmp_path / "whole"
    whole = Whole(out, start_run(cfg, out).run(out=out, progress=False))
    check_stop_and_resume(cfg, whole, tmp_path)


def check_stop_and_resume(cfg: Config, whole: Whole, tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    sim = start_run(cfg, out)
    sim.stimulus = StopAt(sim.stimulus, out, k_copy=200, k_stop=400)
    with pytest.raises(KeyboardInterrupt) as exc:
        sim.run(out=out, progress=False)
    stopped = exc.value.args[0]
    assert stopped.info["status"] == "interrupted" and stopped.info["checkpoint_ms"] == pytest.approx(40.0)
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    ck = load_checkpoint(out / CHECKPOINT)
    assert ck["engine"]["k"] == 400 and ck["seed"] == 5 and ck["config"] == cfg.to_dict()
    assert ck["positions"]["spikes"]["E"] == datasets(out / "spikes.h5")["spikes/E/timestamps"].size

    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    shutil.copy(out / "early.pt", killed / CHECKPOINT)
    assert load_checkpoint(killed / CHECKPOINT)["engine"]["k"] == 200
    for run in (out, killed):
        result = resume_run(run, progress=False)
        assert result.info["status"] == "complete" and result.info["simulated_ms"] == pytest.approx(60.0)
        assert json.loads((run / "run.json").read_text())["status"] == "complete"
        assert load_checkpoint(run / CHECKPOINT)["engine"]["k"] == 600  # refreshed at the end: never stale
        assert_same_files(whole.out, run)
        assert_same_state(whole.result, result)


def test_partial_run_resumes_to_the_config_duration(whole: Whole, tmp_path: Path) -> None:
    """`run(duration=30)`, then the resume path to the config's 60 ms: the resumed blocks of 200
    steps start at 300, off the whole run's block grid, and that changes nothing."""
    cfg = load_config(None, [*SMALL, "record.checkpoint_every=10"])
    out = tmp_path / "partial"
    assert start_run(cfg, out).run(duration=30, out=out, progress=False).info["status"] == "complete"
    assert load_checkpoint(out / CHECKPOINT)["engine"]["k"] == 300
    result = resume_run(out, progress=False)
    assert_same_files(whole.out, out)
    assert_same_state(whole.result, result)


def start_cli_run(out: Path) -> tuple[list[str], subprocess.Popen]:
    """`wmnet run` of the SMALL network into `out` as a real process, checkpointing every 10 ms."""
    sets = [a for s in SMALL for a in ("--set", s)]
    cmd = [sys.executable, "-m", "wmnet.cli"]
    proc = subprocess.Popen(
        [*cmd, "run", "--out", str(out), "--no-plot", "--quiet", *sets, "--set", "record.checkpoint_every=10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return cmd, proc


def test_sigterm_stops_at_a_block_and_wmnet_resume_finishes(whole: Whole, tmp_path: Path) -> None:
    """A real `wmnet run` process, sent SIGTERM once it has checkpointed: exit ≠ 0 with one line
    saying how to resume; `wmnet resume` then gives spikes.h5 identical to the whole run's."""
    out = tmp_path / "cli"
    cmd, proc = start_cli_run(out)
    deadline = time.monotonic() + 240
    while not (out / CHECKPOINT).is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived (machine too fast for this timing)")
    assert proc.returncode == 130, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted at ") and line.endswith(f"ms: resume with `wmnet resume {out}`"), stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and 0 < info["simulated_ms"] < 60
    assert info["checkpoint_ms"] == pytest.approx(info["simulated_ms"])

    done = subprocess.run(
        [*cmd, "resume", str(out), "--no-plot", "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    da, db = datasets(whole.out / "spikes.h5"), datasets(out / "spikes.h5")
    assert da.keys() == db.keys()
    for key in da:
        np.testing.assert_array_equal(da[key], db[key], err_msg=key)
    assert_same_files(whole.out, out)


def test_resume_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(WmnetError, match="no checkpoint.pt"):
        resume_run(tmp_path)
    with pytest.raises(WmnetError, match=r"record\.checkpoint_every: 0\.25 ms is not a whole multiple of dt"):
        load_config(None, ["record.checkpoint_every=0.25"])


@pytest.mark.parametrize("engine", ["reference", "sparse"])
def test_engine_state_dict_continues_bitwise(engine: str) -> None:
    """A fresh engine loaded with another's state_dict steps on exactly as the original does."""
    cfg = load_config(None, ["populations.E.size=80", "populations.I.size=20", "dtype=float64", "seed=3"])
    net = Network.build(cfg)
    a = make_engine(engine, net)
    b = make_engine(engine, net)
    stim = Simulation(net).stimulus
    for k in range(150):
        a.step(stim(k))
    b.load_state_dict(a.state_dict())
    for k in range(150, 300):
        assert torch.equal(a.step(stim(k)), b.step(stim(k))), k
    assert_same_engine(a, b)
    with pytest.raises(WmnetError, match="written by the"):
        make_engine("reference" if engine == "sparse" else "sparse", net).load_state_dict(a.state_dict())


GPU_SCRIPT = """
import torch
from wmnet.config import load_config
from wmnet.engines.gpu import GpuSparseEngine
from wmnet.network import Network
from wmnet.stimuli import make_stimulus
from wmnet.dynamics import NeuronState

cfg = load_config(None, ["populations.E.size=80", "populations.I.size=20", "seed=3", "device=cpu",
                         "dtype=float64", "deterministic=true"])
net = Network.build(cfg)
stim = make_stimulus(cfg, net.device, net.dtype)
make = lambda: GpuSparseEngine(net, NeuronState.initial(net.n, net.device, net.dtype), net.connectivity.initial.clone())
a, b = make(), make()
a.run_block(stim.block(0, 40))
b.load_state_dict(a.state_dict())
fa, _, _ = a.run_block(stim.block(40, 40))
fb, _, _ = b.run_block(stim.block(40, 40))
assert torch.equal(fa, fb)
sa, sb = a.state_dict(), b.state_dict()
assert sa["k"] == sb["k"] == 80 and (sa["n_up"], sa["n_down"]) == (sb["n_up"], sb["n_down"])
for name, t in sa["tensors"].items():
    assert torch.equal(t, sb["tensors"][name]), name
print("ok")
"""


def test_gpu_engine_state_dict_continues_bitwise_in_the_interpreter() -> None:
    """The GPU engine's buffers, in Triton's interpreter (its own process: the flag is global)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", GPU_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_resume_reuses_the_connectivity_and_input_files(tmp_path: Path) -> None:
    """A run built from --connectivity and --input files resumes from them (run.json names them)."""
    sets = [
        "populations.E.size=160",
        "populations.I.size=40",
        "duration=50",
        "seed=4",
        "dtype=float64",
        "record.checkpoint_every=20",
    ]
    cfg = load_config(None, sets)
    j_slow, j_fast = Network.build(cfg).connectivity.to_dense(cfg, torch.float64)
    j_fast[:, 0] = 0.0  # not the seed's connectivity: a resume that regenerated it would differ
    np.savez(tmp_path / "conn.npz", j_fast=j_fast.numpy(), j_slow=j_slow.numpy())
    current = np.random.default_rng(0).uniform(0.0, 2.0, size=(cfg.n_neurons, cfg.n_steps))
    np.save(tmp_path / "in.npy", current)
    paths = {"connectivity": str(tmp_path / "conn.npz"), "input": str(tmp_path / "in.npy")}

    def simulation() -> Simulation:
        return Simulation(Network.build(cfg, connectivity=paths["connectivity"]), input_path=paths["input"])

    whole = simulation().run(out=tmp_path / "whole", progress=False, info={"input": paths["input"]})
    out = tmp_path / "part"
    out.mkdir()
    (out / "config.yaml").write_text(cfg.to_yaml())
    simulation().run(duration=20, out=out, progress=False, info={"input": paths["input"]})
    info = json.loads((out / "run.json").read_text())
    assert (info["connectivity"], info["input"]) == (paths["connectivity"], paths["input"])
    result = resume_run(out, progress=False)
    assert result.info["connectivity"] == paths["connectivity"] and result.info["input"] == paths["input"]
    assert_same_files(tmp_path / "whole", out)
    assert_same_state(whole, result)


@pytest.mark.parametrize("after_checkpoints", [1, 2])
def test_kill_9_leaves_readable_files_and_resume_completes_bitwise(
    whole: Whole, tmp_path: Path, after_checkpoints: int
) -> None:
    """A real `wmnet run` process killed with SIGKILL at several moments (after its 1st and 2nd
    checkpoint, at whatever point of the next block it then is): every file opens and reads, run.json
    says "running", and `wmnet resume` completes to the same bytes as the uninterrupted run."""
    out = tmp_path / "killed"
    cmd, proc = start_cli_run(out)
    deadline, seen, last = time.monotonic() + 240, 0, None
    while seen < after_checkpoints:
        assert time.monotonic() < deadline, "too few checkpoints within 240 s"
        if proc.poll() is not None:
            pytest.skip("the run finished before SIGKILL (machine too fast for this timing)")
        ck = out / CHECKPOINT
        stamp = ck.stat().st_mtime_ns if ck.is_file() else None
        if stamp is not None and stamp != last:
            seen, last = seen + 1, stamp
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=60)
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    for f in [out / "spikes.h5", *sorted((out / "reports").glob("*.h5")), out / "rates.h5", out / "synapses.h5"]:
        datasets(f)  # opens and reads every dataset
    done = subprocess.run(
        [*cmd, "resume", str(out), "--no-plot", "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert_same_files(whole.out, out)


def test_wmnet_extend_continues_a_finished_run_bitwise(whole: Whole, tmp_path: Path) -> None:
    """A 40 ms run, then `wmnet extend --by 20`: the same files as one 60 ms run (the whole run's
    config has periodic checkpoints, this one only the final one, which extend needs)."""
    from click.testing import CliRunner

    from wmnet.cli import cli

    out = tmp_path / "short"
    cfg = load_config(None, [*SMALL, "duration=40"])
    start_run(cfg, out).run(out=out, progress=False)
    assert load_checkpoint(out / CHECKPOINT)["engine"]["k"] == 400  # record.checkpoint_at_end
    res = CliRunner().invoke(cli, ["extend", str(out), "--by", "20", "--quiet", "--no-plot"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "run.json").read_text())["simulated_ms"] == pytest.approx(60.0)
    assert load_config(out / "config.yaml").duration == 60.0
    assert_same_files(whole.out, out)
    # A run that did not complete cannot be extended (it needs `wmnet resume` first).
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    proc = subprocess.run(
        [sys.executable, "-m", "wmnet.cli", "extend", str(out), "--by", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(
        "only a completed run with its final checkpoint can be extended "
        "(status 'interrupted'; an interrupted run needs `wmnet resume` first)"
    )
    assert "\n" not in proc.stderr.strip()
