"""The `wmnet` command line, run as a real subprocess (so stderr is what a user sees)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import yaml

from wmnet.config import Config, load_config
from wmnet.network import Network
from wmnet.simulation import Simulation

SMALL = ["--set", "populations.E.size=800", "--set", "populations.I.size=200"]
TINY = ["--set", "populations.E.size=80", "--set", "populations.I.size=20"]  # N = 100
TINY_N = 100


def wmnet(*args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wmnet.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def spikes(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with h5py.File(path, "r") as f:
        return {p: (g["timestamps"][()], g["node_ids"][()]) for p, g in f["spikes"].items()}


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > 10_000, f"{path} is only {path.stat().st_size} bytes"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 400, img.shape
    # Not a blank canvas: a fair share of pixels differ from the background colour.
    background = img[0, 0]
    differs = np.any(np.abs(img - background) > 0.05, axis=-1)
    assert differs.mean() > 0.01


# --------------------------------------------------------------------------------- end to end

SEED = 7
DURATION = 100.0


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("e2e") / "run"
    proc = ok(wmnet("run", "--out", out, "--duration", DURATION, "--seed", SEED, "--device", "cpu", "--quiet", *SMALL))
    return out, proc


def test_run_writes_every_output(e2e: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, proc = e2e
    for name in (
        "spikes.h5",
        "run.json",
        "config.yaml",
        "reports/v.h5",
        "reports/i_s.h5",
        "reports/i_f.h5",
        "reports/x.h5",
        "figures/raster.png",
        "figures/traces.png",
    ):
        assert (out / name).is_file(), name
    assert str(out) in proc.stdout
    assert "Traceback" not in proc.stderr
    s = spikes(out / "spikes.h5")
    assert set(s) == {"E", "I"}
    assert s["E"][1].max() < 800 and s["I"][1].max() < 200  # local node ids
    with h5py.File(out / "reports" / "v.h5") as f:
        assert set(f["report"]) == {"E", "I"}
        assert f["report/E/data"].shape[0] == round(DURATION / 0.1 / 10)


def test_run_json(e2e: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = e2e
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["seed"] == SEED
    expected_cfg = load_config(
        None, ["populations.E.size=800", "populations.I.size=200", f"duration={DURATION}", f"seed={SEED}", "device=cpu"]
    )
    assert info["config"] == expected_cfg.to_dict()
    # config.yaml is the same effective config, and loads back as a valid config file.
    assert yaml.safe_load((out / "config.yaml").read_text()) == info["config"]
    assert load_config(out / "config.yaml") == expected_cfg
    for pkg in ("python", "wmnet", "torch", "numpy"):
        assert info["versions"][pkg], pkg
    assert info["device"] == "cpu"
    assert info["dtype"] == "float32"
    assert info["engine"] in ("reference", "sparse")
    assert info["wall_seconds"]["build"] > 0 and info["wall_seconds"]["simulate"] > 0
    s = info["summary"]
    sp = spikes(out / "spikes.h5")
    for pop, size in (("E", 800), ("I", 200)):
        rate = sp[pop][0].size / (size * DURATION / 1000)
        assert s["populations"][pop]["rate_hz"] == pytest.approx(rate, rel=1e-9)
        assert rate > 10  # the seed's network is active
        assert 0 < s["populations"][pop]["mean_x_end"] <= 1
    assert 0 < s["sigma_fraction"] < 1
    pot = s["ee_potentiated_fraction"]
    assert 0.15 < pot["start"] < 0.25  # 20% start potentiated (MODEL.md)
    assert 0 <= pot["end"] <= 1


def test_figures_are_real_images(e2e: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = e2e
    assert_png(out / "figures" / "raster.png")
    assert_png(out / "figures" / "traces.png")


def test_plot_redraws_the_figures(e2e: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(e2e[0], run)
    shutil.rmtree(run / "figures")
    proc = ok(wmnet("plot", run))
    assert_png(run / "figures" / "raster.png")
    assert_png(run / "figures" / "traces.png")
    assert "raster.png" in proc.stdout


def test_plot_of_a_folder_that_is_no_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = wmnet("plot", tmp_path / "empty")
    assert_one_line_error(proc, "empty")
    assert not (tmp_path / "empty" / "figures").exists()


def test_overwrite_and_no_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(wmnet("run", "--out", out, "--duration", 5, "--no-plot", "--quiet", *TINY))  # a wmnet run folder
    (out / "stale.txt").write_text("old")
    ok(wmnet("run", "--out", out, "--duration", 10, "--no-plot", "--quiet", "--overwrite", *TINY))
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert (out / "spikes.h5").is_file() and (out / "config.yaml").is_file()
    assert not (out / "figures").exists()


# ---------------------------------------------------------------------------- config and info


def test_config_show_reflects_overrides(tmp_path: Path) -> None:
    cfg_file = tmp_path / "my.yaml"
    cfg_file.write_text("seed: 5\nduration: 200\npopulations:\n  E: {tau_m: 30}\n")
    proc = ok(
        wmnet(
            "config", "show", cfg_file, "--set", "seed=9", "--set", "dt=0.05", "--set", "projections.E->I.efficacy=0.1"
        )
    )
    shown = yaml.safe_load(proc.stdout)
    assert shown["seed"] == 9  # --set beats the file
    assert shown["duration"] == 200  # from the file
    assert shown["dt"] == 0.05
    assert shown["populations"]["E"]["tau_m"] == 30
    assert shown["populations"]["E"]["v_reset"] == 15  # untouched defaults (MODEL.md)
    assert shown["populations"]["I"]["tau_m"] == 10
    assert shown["projections"]["E->I"]["efficacy"] == 0.1
    assert shown["projections"]["E->I"]["p"] == 0.2
    # The printed YAML is a complete config that loads back to the same thing.
    printed = tmp_path / "printed.yaml"
    printed.write_text(proc.stdout)
    assert load_config(printed) == load_config(cfg_file, ["seed=9", "dt=0.05", "projections.E->I.efficacy=0.1"])
    assert proc.stderr == ""


def test_config_show_defaults_are_the_seed_model() -> None:
    shown = yaml.safe_load(ok(wmnet("config", "show")).stdout)
    assert shown["populations"]["E"]["size"] == 8000 and shown["populations"]["I"]["size"] == 2000
    assert shown["dt"] == 0.1 and shown["duration"] == 1000
    assert shown["stp"] == {"U": 0.45, "tau_rec": 200}
    assert shown["dtype"] == "float32"


def test_info_prints_sizes() -> None:
    proc = ok(wmnet("info", *SMALL))
    text = proc.stdout
    assert re.search(r"1,000 neurons", text) and "E 800" in text and "I 200" in text
    counts = {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"(\S+->\S+): ([\d,]+) synapses", text)}
    assert set(counts) == {"E->E", "E->I", "I->E", "I->I"}
    # The counts are those of the network the same config builds (seed 0) ...
    net = Network.build(load_config(None, ["populations.E.size=800", "populations.I.size=200"]))
    for name, p in net.connectivity.projections.items():
        assert counts[name] == p.n_synapses, name
    # ... and what MODEL.md's probabilities give: E→E 0.19 without self-connections, others 0.2.
    assert counts["E->E"] == pytest.approx(800 * 799 * 0.19, rel=0.03)
    assert counts["E->I"] == pytest.approx(800 * 200 * 0.2, rel=0.03)
    assert counts["I->E"] == pytest.approx(200 * 800 * 0.2, rel=0.03)
    assert counts["I->I"] == pytest.approx(200 * 199 * 0.2, rel=0.05)
    assert "MiB" in text


# --------------------------------------------------------------------------------- bad input


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *mentions: str) -> None:
    assert proc.returncode != 0, f"exit 0; stdout:\n{proc.stdout}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not one line:\n{proc.stderr}"
    for word in mentions:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


@dataclass
class Bad:
    """A bad invocation: `setup(tmp)` writes its files and returns the extra arguments."""

    setup: Callable[[Path], list[str]]
    mentions: tuple[str, ...]
    prefill: bool = False  # the --out folder exists with content that must stay untouched


def _yaml(text: str) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "bad.yaml").write_text(text)
        return [str(tmp / "bad.yaml")]

    return setup


def _npy(make: Callable[[], np.ndarray]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        np.save(tmp / "input.npy", make())
        return ["--input", str(tmp / "input.npy")]

    return setup


def _npz(make: Callable[[], dict[str, np.ndarray]]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        np.savez(tmp / "conn.npz", allow_pickle=False, **make())
        return ["--connectivity", str(tmp / "conn.npz")]

    return setup


def _sets(*assignments: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [a for s in assignments for a in ("--set", s)]


BAD_STEPS = 100  # the bad runs last 10 ms (dt 0.1)


def _nan_input() -> np.ndarray:
    a = np.ones((TINY_N, BAD_STEPS))
    a[17, 42] = np.nan
    return a


def _overlap() -> dict[str, np.ndarray]:
    fast = np.zeros((TINY_N, TINY_N))
    slow = np.zeros((TINY_N, TINY_N))
    fast[3, 5] = slow[3, 5] = 0.03  # E→E, same synapse in both channels
    return {"j_fast": fast, "j_slow": slow}


BAD: dict[str, Bad] = {
    "malformed-yaml": Bad(_yaml("seed: 3\npopulations: {E: [size\n"), ("bad.yaml",)),
    "unknown-key": Bad(_yaml("seed: 3\npopulations:\n  E:\n    tau_mem: 5\n"), ("bad.yaml", "tau_mem")),
    "unknown-key-set": Bad(_sets("stimulus.amplitude=3"), ("amplitude",)),
    "zero-time-constant": Bad(_sets("populations.E.tau_m=0"), ("populations.E.tau_m",)),
    "negative-time-constant": Bad(_sets("stp.tau_rec=-5"), ("stp.tau_rec",)),
    "negative-tau-in-file": Bad(_yaml("populations:\n  I: {tau_s: -1}\n"), ("bad.yaml", "populations.I.tau_s")),
    "p-above-1": Bad(_sets("projections.E->I.p=1.5"), ("E->I.p",)),
    "p-below-0": Bad(_sets("projections.I->E.p=-0.1"), ("I->E.p",)),
    "dt-does-not-divide": Bad(_sets("dt=0.3"), ("dt", "duration")),
    "input-wrong-neurons": Bad(_npy(lambda: np.zeros((TINY_N + 1, BAD_STEPS))), ("input.npy", "shape")),
    "input-too-few-steps": Bad(_npy(lambda: np.zeros((TINY_N, BAD_STEPS - 1))), ("input.npy", "shape")),
    "input-nan": Bad(_npy(_nan_input), ("input.npy", "NaN", "neuron 17", "step 42")),
    "input-missing-file": Bad(lambda tmp: ["--input", str(tmp / "nothere.npy")], ("nothere.npy",)),
    "connectivity-wrong-shape": Bad(
        _npz(lambda: {"j_fast": np.zeros((TINY_N, TINY_N - 1)), "j_slow": np.zeros((TINY_N, TINY_N - 1))}),
        ("conn.npz", "shape"),
    ),
    "connectivity-overlap": Bad(_npz(_overlap), ("conn.npz", "j_fast", "j_slow")),
    "out-not-empty": Bad(lambda tmp: [], ("--out", "not empty"), prefill=True),
    "device-unavailable": Bad(lambda tmp: ["--device", "cuda"], ("cuda",)),
}


def _run_bad(name: str, root: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    case = BAD[name]
    tmp = root / name
    tmp.mkdir()
    extra = case.setup(tmp)
    out = tmp / "out"
    if case.prefill:
        out.mkdir()
        (out / "keep.txt").write_text("precious")
    config = [a for a in extra if a.endswith(".yaml")]
    options = [a for a in extra if not a.endswith(".yaml")]
    proc = wmnet("run", *config, "--out", out, "--duration", BAD_STEPS * 0.1, "--quiet", *TINY, *options)
    return out, proc


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """All bad invocations, run concurrently (each is a fresh interpreter; most time is imports)."""
    root = tmp_path_factory.mktemp("bad")
    names = [n for n in BAD if not (n == "device-unavailable" and torch.cuda.is_available())]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda n: _run_bad(n, root), names))
    return dict(zip(names, results))


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input(name: str, bad_results: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]) -> None:
    if name == "device-unavailable" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out, proc = bad_results[name]
    assert_one_line_error(proc, *BAD[name].mentions)
    assert proc.stdout == "", proc.stdout
    if BAD[name].prefill:
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
        assert (out / "keep.txt").read_text() == "precious"
    else:
        assert not out.exists(), f"{out} was created: {list(out.rglob('*'))}"


# -------------------------------------------------------------------- --input, --connectivity


def test_zero_input_gives_no_spikes(tmp_path: Path) -> None:
    np.save(tmp_path / "zero.npy", np.zeros((TINY_N, 500)))
    out = tmp_path / "run"
    ok(wmnet("run", "--out", out, "--duration", 50, "--input", tmp_path / "zero.npy", "--no-plot", "--quiet", *TINY))
    for pop, (t, ids) in spikes(out / "spikes.h5").items():
        assert t.size == 0 and ids.size == 0, pop
    info = json.loads((out / "run.json").read_text())
    assert info["summary"]["sigma_fraction"] == 0
    assert info["input"] == str(tmp_path / "zero.npy")


def test_input_array_drives_the_network(tmp_path: Path) -> None:
    """Element [n, k] is the current into neuron n during step k.

    Only neuron 5 (E) gets input: I0 from step k0 on. Before its first pulse nothing else
    moves, so its first onset is where its own Euler iteration v' = v + dt(−v/τ_m + I)
    (MODEL.md step 6, float64) first reaches θ. A strong constant current into every I
    neuron from step k1 on must make all of them fire.
    """
    dt, steps, k0, i0, k1 = 0.1, 600, 100, 2.0, 400
    arr = np.zeros((TINY_N, steps))
    arr[5, k0:] = i0
    arr[80:, k1:] = 20.0
    np.save(tmp_path / "in.npy", arr)
    out = tmp_path / "run"
    ok(
        wmnet(
            "run",
            "--out",
            out,
            "--duration",
            steps * dt,
            "--input",
            tmp_path / "in.npy",
            "--dtype",
            "float64",
            "--no-plot",
            "--quiet",
            *TINY,
        )
    )
    v, tau_m, theta = 0.0, 20.0, 20.0
    first = None
    for k in range(steps):
        if v >= theta:
            first = k
            break
        v = v + (-v / tau_m + arr[5, k]) * dt
    assert first is not None and k0 < first < k1
    sp = spikes(out / "spikes.h5")
    t_e, id_e = sp["E"]
    t_i, id_i = sp["I"]
    assert t_e.size > 0
    assert t_e[0] == pytest.approx(first * dt, abs=1e-9) and id_e[0] == 5
    assert t_i.size == 0 or t_i.min() > first * dt  # I neurons only hear about it afterwards
    assert set(id_i[t_i >= k1 * dt].tolist()) == set(range(20))


def test_dense_connectivity_file_is_used(tmp_path: Path) -> None:
    """The network's own matrices, exported to .npz and passed back, give the same run."""
    sets = ["populations.E.size=160", "populations.I.size=40", "duration=50", "seed=4", "dtype=float64"]
    cfg: Config = load_config(None, sets)
    net = Network.build(cfg)
    j_slow, j_fast = net.connectivity.to_dense(cfg, torch.float64)
    np.savez(tmp_path / "conn.npz", j_fast=j_fast.numpy(), j_slow=j_slow.numpy())
    expected = Simulation(net).run(out=tmp_path / "api", progress=False)
    assert expected.summary["spikes"] > 0
    out = tmp_path / "run"
    ok(
        wmnet(
            "run",
            "--out",
            out,
            "--connectivity",
            tmp_path / "conn.npz",
            "--no-plot",
            "--quiet",
            *[a for s in sets for a in ("--set", s)],
        )
    )
    info = json.loads((out / "run.json").read_text())
    assert info["n_synapses"] == net.connectivity.n_synapses()
    assert info["connectivity"].endswith("conn.npz")
    got, want = spikes(out / "spikes.h5"), spikes(tmp_path / "api" / "spikes.h5")
    for pop in ("E", "I"):
        np.testing.assert_array_equal(got[pop][0], want[pop][0])
        np.testing.assert_array_equal(got[pop][1], want[pop][1])
