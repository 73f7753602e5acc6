"""Same seed → same bytes; different seed → different spikes; both engines agree; and the
reference behaviour of MODEL.md at 1000 neurons."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from wmnet.config import load_config
from wmnet.network import Network
from wmnet.simulation import Simulation

SMALL = ["populations.E.size=800", "populations.I.size=200"]
HALF = ["populations.E.size=400", "populations.I.size=100"]


def wmnet_run(out: Path, *sets: str, extra: tuple[str, ...] = ()) -> Path:
    args = [sys.executable, "-m", "wmnet.cli", "run", "--out", str(out), "--no-plot", "--quiet", *extra]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def datasets(path: Path) -> dict[str, tuple[str, bytes]]:
    """Every dataset of an HDF5 file: name → (dtype, raw bytes)."""
    out: dict[str, tuple[str, bytes]] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = (str(obj.dtype), obj[()].tobytes())

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def summary(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())["summary"]


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seed 21 twice (separate processes) and seed 22 once, 400 E + 100 I, 100 ms, run concurrently."""
    root = tmp_path_factory.mktemp("seeds")
    jobs = {"a": "seed=21", "b": "seed=21", "c": "seed=22"}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {k: pool.submit(wmnet_run, root / k, *HALF, "duration=100", seed) for k, seed in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def test_same_seed_gives_identical_bytes(seeded_runs: dict[str, Path]) -> None:
    a, b = seeded_runs["a"], seeded_runs["b"]
    sa, sb = datasets(a / "spikes.h5"), datasets(b / "spikes.h5")
    assert set(sa) == {"spikes/E/timestamps", "spikes/E/node_ids", "spikes/I/timestamps", "spikes/I/node_ids"}
    assert sa == sb
    assert len(sa["spikes/E/node_ids"][1]) > 0
    for var in ("v", "i_s", "i_f", "x"):
        assert datasets(a / "reports" / f"{var}.h5") == datasets(b / "reports" / f"{var}.h5"), var
    assert summary(a) == summary(b)
    ja, jb = (json.loads((r / "run.json").read_text()) for r in (a, b))
    assert ja["config"] == jb["config"] and ja["n_synapses"] == jb["n_synapses"]


def test_different_seed_gives_different_spikes(seeded_runs: dict[str, Path]) -> None:
    sa, sc = datasets(seeded_runs["a"] / "spikes.h5"), datasets(seeded_runs["c"] / "spikes.h5")
    assert sa["spikes/E/node_ids"] != sc["spikes/E/node_ids"]
    assert sa["spikes/I/node_ids"] != sc["spikes/I/node_ids"]
    assert summary(seeded_runs["a"]) != summary(seeded_runs["c"])


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both engines, float64, plasticity on (so E→E synapses switch), same seed.

    160 E + 40 I: the reference engine's dense plasticity step grows as N_E², so a larger
    network would take minutes.
    """
    root = tmp_path_factory.mktemp("engines")
    sets = ("populations.E.size=160", "populations.I.size=40", "duration=100", "seed=3", "dtype=float64")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {e: pool.submit(wmnet_run, root / e, *sets, extra=("--engine", e)) for e in ("reference", "sparse")}
        return {e: f.result() for e, f in futures.items()}


def test_engines_give_identical_spike_files(engine_runs: dict[str, Path]) -> None:
    ref, sp = engine_runs["reference"], engine_runs["sparse"]
    assert json.loads((ref / "run.json").read_text())["engine"] == "reference"
    assert json.loads((sp / "run.json").read_text())["engine"] == "sparse"
    assert datasets(ref / "spikes.h5") == datasets(sp / "spikes.h5")
    s_ref, s_sp = summary(ref), summary(sp)
    # Plasticity was exercised: many synapses switched, and both engines switched the same ones.
    assert s_ref["ee_switches"]["up"] > 100 and s_ref["ee_switches"]["down"] > 100
    assert s_ref["ee_switches"] == s_sp["ee_switches"]
    assert s_ref["ee_potentiated_fraction"] == s_sp["ee_potentiated_fraction"]
    assert s_ref["spikes"] == s_sp["spikes"] > 0
    # Traces agree to rounding (float64 sums in a different order).
    for var in ("v", "i_s", "i_f", "x"):
        with h5py.File(ref / "reports" / f"{var}.h5") as fr, h5py.File(sp / "reports" / f"{var}.h5") as fs:
            for pop in ("E", "I"):
                np.testing.assert_allclose(
                    fr[f"report/{pop}/data"][()],
                    fs[f"report/{pop}/data"][()],
                    rtol=1e-5,
                    atol=1e-5,
                    err_msg=f"{var} {pop}",
                )


@pytest.mark.slow
def test_reference_behaviour_at_1000_neurons() -> None:
    """MODEL.md's reference figures: 800 E + 200 I, float32, the seed's sinusoid, plasticity
    off, 1000 ms. E ≈ 124 Hz, I ≈ 72 Hz, σ = 1 in ≈ 24% of neuron-steps, mean x of E ≈ 0.17."""
    cfg = load_config(
        None,
        [
            *SMALL,
            "dtype=float32",
            "plasticity.enabled=false",
            "duration=1000",
            "engine=sparse",
            "record.traces.variables=[]",
        ],
    )
    assert cfg.stimulus.kind == "sinusoid"
    result = Simulation(Network.build(cfg)).run(progress=False)
    s = result.summary
    e, i = s["populations"]["E"], s["populations"]["I"]
    measured = (
        f"E {e['rate_hz']:.1f} Hz, I {i['rate_hz']:.1f} Hz, sigma {s['sigma_fraction']:.3f}, x_E {e['mean_x_end']:.3f}"
    )
    assert e["rate_hz"] == pytest.approx(124, rel=0.15), measured
    assert i["rate_hz"] == pytest.approx(72, rel=0.20), measured
    assert 0.20 <= s["sigma_fraction"] <= 0.28, measured
    assert 0.12 <= e["mean_x_end"] <= 0.22, measured
    # With plasticity off no synapse switches.
    assert s["ee_switches"] == {"up": 0, "down": 0}
    assert s["ee_potentiated_fraction"]["start"] == s["ee_potentiated_fraction"]["end"]
