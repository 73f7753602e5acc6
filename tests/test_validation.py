"""Issue 12 §3: everything is validated before anything is written, and bad input of every kind
(absurd sizes, corrupt or foreign files, non-finite values) ends in one line naming the field or
file, exit status 2, and no output folder.

The CLI runs in this process through `wmnet.cli.main` (its error handling included), with
sys.argv, stdout and stderr swapped: a subprocess per case would spend seconds importing torch.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from wmnet.cli import main
from wmnet.config import ArrayInput, Config, load_config
from wmnet.io.connectivity_files import save_snapshot
from wmnet.network import Network

TINY = ["--set", "populations.E.size=80", "--set", "populations.I.size=20"]  # N = 100
N = 100


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str | Path, cwd: Path | None = None) -> Result:
    """`wmnet ARGS` through main(): its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["wmnet", *map(str, args)]
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return Result(code, out.getvalue(), err.getvalue())


def refused(r: Result, *needles: str) -> str:
    """Exit 2 with exactly one line on stderr, `error: ...`, containing every needle."""
    assert r.code == 2, f"exit {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
    lines = [line for line in r.err.splitlines() if line.strip() and not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert "Traceback" not in r.err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed tiny run (20 ms, final checkpoint, every recorder on)."""
    d = tmp_path_factory.mktemp("done") / "run"
    r = cli("run", "--out", d, "--duration", "20", "--quiet", "--no-plot", *TINY)
    assert r.code == 0, r.err
    return d


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# ------------------------------------------------------------------------ memory estimate


def test_info_refuses_a_network_too_large_for_the_host_before_building() -> None:
    t0 = time.perf_counter()
    line = refused(
        cli("info", "--set", "populations.E.size=1000000"), "needs about", "GiB", "available", "1,002,000 neurons"
    )
    assert time.perf_counter() - t0 < 30  # refused from the config, not after minutes of building
    assert line.count("GiB") == 2  # both numbers


def test_run_refuses_a_network_too_large_before_the_folder(tmp_path: Path) -> None:
    refused(cli("run", "--out", tmp_path / "r", "--set", "populations.E.size=1000000"), "needs about", "available")
    assert not (tmp_path / "r").exists()


def test_config_show_never_builds_even_for_a_trillion_neurons() -> None:
    r = cli("config", "show", "--set", "populations.E.size=1000000000000")
    assert r.code == 0, r.err
    assert yaml.safe_load(r.out)["populations"]["E"]["size"] == 10**12


def test_groups_of_a_huge_network_are_refused_with_both_numbers() -> None:
    refused(
        cli(
            "config",
            "show",
            "--set",
            "populations.E.size=1000000000000",
            "--set",
            "groups.prototypes.count=2",
            "--set",
            "groups.prototypes.fraction=0.1",
        ),
        "groups",
        "needs about",
        "available",
    )


def test_float16_auto_engine_says_why_dense_and_refuses_when_it_does_not_fit(tmp_path: Path) -> None:
    refused(cli("info", "--dtype", "float16", "--set", "populations.E.size=100000"), "reference engine", "available")
    r = cli("run", "--out", tmp_path / "r", "--duration", "2", "--dtype", "float16", "--quiet", "--no-plot", *TINY)
    assert r.code == 0, r.err
    assert "dense reference engine was chosen because" in r.err and "float16" in r.err
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["engine"] == "reference" and "float16" in info["engine_reason"]


def test_estimate_counts_synapses_and_bytes_by_hand() -> None:
    from wmnet.memory import estimate, expected_synapses

    cfg = load_config(
        None,
        [
            "populations.E.size=100",
            "populations.I.size=50",
            "projections.I->I.k_in=7",
            "projections.E->E.slow_fraction=0.5",
            "projections.E->E.p=0.2",
        ],
    )
    syn = expected_synapses(cfg)
    # E->E: 100 pre × 99 post × (p r + p (1 − r)(1 − p r)) = 9900 × (0.1 + 0.1 × 0.9)
    assert syn["E->E"] == pytest.approx(9900 * 0.19)
    assert syn["I->I"] == 50 * 7  # fixed in-degree: n_post × k_in
    assert syn["E->I"] == pytest.approx(100 * 50 * 0.2)  # slow_fraction 0: p
    sparse = estimate(cfg, torch.device("cpu"), "sparse")
    dense = estimate(cfg, torch.device("cpu"), "reference")
    assert sparse["synapses"] == pytest.approx(2 * sum(syn.values()))  # uint16 post indices on the CPU
    assert sparse["ee_state"] == pytest.approx(3 * syn["E->E"] * (4 + 1))  # L float32 + bit, three copies
    assert dense["dense"] == pytest.approx(3 * 150**2 * 4 + 100**2 * (2 * 4 + 2))
    assert dense["total"] > sparse["total"]


# ------------------------------------------------------------------ corrupt or foreign files


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(None, ["populations.E.size=80", "populations.I.size=20"])
    net = Network.build(cfg)
    path = tmp_path_factory.mktemp("snap") / "snap.npz"
    save_snapshot(path, net.connectivity, net.connectivity.initial, {"t_ms": 0.0, "step": 0, "seed": 0})
    return path


def _rewrite_npz(
    src: Path,
    dest: Path,
    drop: str | None = None,
    extra: dict[str, np.ndarray] | None = None,
    allow_pickle: bool = False,
) -> Path:
    with np.load(src, allow_pickle=allow_pickle) as d:
        arrays = {k: d[k] for k in d.files if k != drop}
    arrays.update(extra or {})
    with open(dest, "wb") as f:
        np.savez(f, **arrays)
    return dest


def _crc_broken(src: Path, dest: Path) -> Path:
    """Flip one byte inside a stored (uncompressed) member: the zip's CRC check fails."""
    tmp = _rewrite_npz(src, dest.with_suffix(".plain.npz"))
    raw = bytearray(tmp.read_bytes())
    with zipfile.ZipFile(tmp) as z:
        info = z.getinfo("EE_post.npy")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size - 1
    raw[at] ^= 0xFF
    dest.write_bytes(bytes(raw))
    return dest


def _bad_connectivity(kind: str, snap: Path, d: Path) -> Path:
    p = d / f"{kind}.npz"
    if kind == "truncated":
        p.write_bytes(snap.read_bytes()[: snap.stat().st_size // 2])
    elif kind == "crc":
        _crc_broken(snap, p)
    elif kind == "missing_array":
        _rewrite_npz(snap, p, drop="EE_L")
    elif kind == "object_array":
        np.savez(p, j_fast=np.array([{"a": 1}], dtype=object), j_slow=np.zeros((N, N)))
    elif kind == "npy_renamed":
        with open(p, "wb") as f:
            np.save(f, np.zeros((N, N)))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "random":
        p.write_bytes(np.random.default_rng(0).bytes(4096))
    return p


@pytest.mark.parametrize(
    "kind", ["truncated", "crc", "missing_array", "object_array", "npy_renamed", "empty", "random"]
)
def test_bad_connectivity_file_is_one_line_naming_it(kind: str, snapshot: Path, tmp_path: Path) -> None:
    bad = _bad_connectivity(kind, snapshot, tmp_path)
    refused(
        cli("run", "--out", tmp_path / "r", "--duration", "1", "--quiet", "--no-plot", "--connectivity", bad, *TINY),
        str(bad.name),
    )
    assert not (tmp_path / "r").exists()


def test_a_valid_snapshot_still_loads(snapshot: Path, tmp_path: Path) -> None:
    r = cli(
        "run", "--out", tmp_path / "r", "--duration", "1", "--quiet", "--no-plot", "--connectivity", snapshot, *TINY
    )
    assert r.code == 0, r.err


def _bad_checkpoint(kind: str, path: Path) -> None:
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(1).bytes(10_000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "missing_key":
        data = torch.load(path, weights_only=True)
        del data["positions"]
        torch.save(data, path)
    elif kind == "not_a_dict":
        torch.save([1, 2, 3], path)


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "missing_key", "not_a_dict"])
@pytest.mark.parametrize("command", ["resume", "extend"])
def test_bad_checkpoint_is_one_line_naming_it(kind: str, command: str, done_run: Path, tmp_path: Path) -> None:
    d = copy_run(done_run, tmp_path / "run")
    _bad_checkpoint(kind, d / "checkpoint.pt")
    args = ("--by", "1") if command == "extend" else ()
    refused(cli(command, d, *args, "--quiet", "--no-plot"), "checkpoint.pt")


@pytest.mark.parametrize("name", ["spikes.h5", "rates.h5", "synapses.h5", "reports/v.h5"])
@pytest.mark.parametrize("damage", ["garbage", "empty_hdf5"])
def test_damaged_h5_on_plot_and_extend(name: str, damage: str, done_run: Path, tmp_path: Path) -> None:
    d = copy_run(done_run, tmp_path / "run")
    if damage == "garbage":
        (d / name).write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(2).bytes(3000))
    else:
        (d / name).unlink()
        h5py.File(d / name, "w").close()  # a valid HDF5 file without the run's datasets
    if damage == "empty_hdf5" and name.startswith("reports/"):
        # A report of no neurons (record.traces.neurons: []) is such a file: plot skips it.
        assert cli("plot", d).code == 0
    else:
        refused(cli("plot", d), Path(name).name)
    refused(cli("extend", d, "--by", "1", "--quiet", "--no-plot"), Path(name).name)


@pytest.mark.parametrize("content", [b"", b"not an array"])
def test_empty_or_foreign_input_is_one_line_not_aborted(content: bytes, tmp_path: Path) -> None:
    bad = tmp_path / "in.npy"
    bad.write_bytes(content)
    r = cli("run", "--out", tmp_path / "r", "--duration", "1", "--quiet", "--no-plot", "--input", bad, *TINY)
    refused(r, "in.npy")
    assert "aborted" not in r.err and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize(
    "assignment",
    [
        "duration=inf",
        "duration=.inf",
        "record.checkpoint_every=inf",
        "record.rates.bin=inf",
        "record.synapses.every=inf",
        "record.snapshots=[.inf]",
        "background.grain=inf",
        "record.flush_every=inf",
        "protocol={epochs: [{name: a, duration: .inf}]}",
        "protocol={initial_rest: .inf, epochs: [{name: a, duration: 1}]}",
        "populations.E.theta=nan",
        "populations.I.theta=.nan",
        "plasticity.theta_X=nan",
        "plasticity.alpha=inf",
        "plasticity.bounds=[0, .inf]",
        "plasticity.bounds=null",
        "projections.E->E.J_p=-inf",
        "stp.U=nan",
        "stimulus={kind: constant, E: .inf}",
        "dt=nan",
    ],
)
def test_non_finite_parameters_are_refused(assignment: str, tmp_path: Path) -> None:
    if assignment == "plasticity.bounds=null":  # unbounded L is fine; alpha = inf with it is not
        refused(
            cli("config", "show", "--set", assignment, "--set", "plasticity.alpha=inf"), "plasticity.alpha", "finite"
        )
        return
    field = assignment.split("=")[0]
    line = refused(cli("run", "--out", tmp_path / "r", "--set", assignment, *TINY))
    assert "finite" in line and field.split(".")[0] in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("by", ["inf", "nan", "1e-7"])
def test_extend_by_non_finite_or_less_than_a_step(by: str, done_run: Path, tmp_path: Path) -> None:
    d = copy_run(done_run, tmp_path / "run")
    before = (d / "config.yaml").read_text()
    refused(cli("extend", d, "--by", by, "--quiet", "--no-plot"), "--by")
    assert (d / "config.yaml").read_text() == before


def test_blow_up_check_covers_L() -> None:
    from wmnet.dynamics import NeuronState
    from wmnet.stopping import first_non_finite as _first_non_finite

    state = NeuronState.initial(4, torch.device("cpu"), torch.float32)
    L = torch.tensor([0.5, -float("inf"), 0.2])
    assert _first_non_finite(state, 10, 5, 0.1, torch.tensor([0.5, 0.2])) is None
    msg = _first_non_finite(state, 10, 5, 0.1, L)
    assert msg is not None and "L of E→E synapse 1" in msg and "-inf" in msg and "step 10" in msg


def test_absurd_step_counts_are_refused_before_the_folder(tmp_path: Path) -> None:
    refused(cli("run", "--out", tmp_path / "r", "--set", "dt=1e-300", *TINY), "dt", "2^48")
    refused(cli("run", "--out", tmp_path / "r", "--set", "record.rates.bin=1e300", *TINY), "record.rates.bin", "2^48")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------- inputs found bad only after the folder


def test_big_endian_input_runs_like_the_native_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    native = (rng.random((N, 30)) * 40).astype("<f4")  # strong: spikes within 3 ms
    np.save(tmp_path / "le.npy", native)
    np.save(tmp_path / "be.npy", native.astype(">f4"))
    for name in ("le", "be"):
        r = cli(
            "run",
            "--out",
            tmp_path / name,
            "--duration",
            "3",
            "--quiet",
            "--no-plot",
            "--input",
            tmp_path / f"{name}.npy",
            "--set",
            "record.synapses=null",
            *TINY,
        )
        assert r.code == 0, r.err
    with h5py.File(tmp_path / "le" / "spikes.h5") as a, h5py.File(tmp_path / "be" / "spikes.h5") as b:
        for pop in ("E", "I"):
            assert np.array_equal(a[f"spikes/{pop}/node_ids"][()], b[f"spikes/{pop}/node_ids"][()])
        assert a["spikes/E/node_ids"].shape[0] > 0


@pytest.mark.parametrize("dtype", ["m8[ms]", "M8[s]", "c8", "c16", "U3"])
def test_non_real_input_is_refused_before_the_folder(dtype: str, tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", np.zeros((N, 30), dtype=dtype))
    refused(
        cli("run", "--out", tmp_path / "r", "--duration", "1", "--quiet", "--input", tmp_path / "in.npy", *TINY),
        "in.npy",
        "real numbers",
    )
    assert not (tmp_path / "r").exists()


# -------------------------------------------------------- valid configs that crashed after the run


def test_no_traced_neurons_plots(tmp_path: Path) -> None:
    r = cli("run", "--out", tmp_path / "r", "--duration", "5", "--quiet", "--set", "record.traces.neurons=[]", *TINY)
    assert r.code == 0, r.err
    assert (tmp_path / "r" / "figures" / "raster.png").is_file()
    assert not (tmp_path / "r" / "figures" / "traces.png").exists()


def test_no_spikes_recorded_plots_the_rest(tmp_path: Path) -> None:
    r = cli("run", "--out", tmp_path / "r", "--duration", "5", "--quiet", "--set", "record.spikes=false", *TINY)
    assert r.code == 0, r.err
    assert not (tmp_path / "r" / "spikes.h5").exists()
    r = cli("plot", tmp_path / "r")
    assert r.code == 0, r.err
    figs = {Path(line.split(": ", 1)[1]).name for line in r.out.splitlines() if line.startswith("figure: ")}
    assert "raster.png" not in figs and "traces.png" in figs and "rates.png" in figs


# ------------------------------------------------------------------------- --input + protocol


def test_input_with_a_protocol_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", np.zeros((N, 100), dtype=np.float32))
    refused(
        cli(
            "run",
            "--out",
            tmp_path / "r",
            "--input",
            tmp_path / "in.npy",
            "--set",
            "protocol={epochs: [{name: cue, duration: 5}]}",
            *TINY,
        ),
        "--input",
        "protocol",
    )
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------ relative array paths


def test_relative_array_path_is_stored_absolute_and_resumes_elsewhere(tmp_path: Path) -> None:
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    np.save(work / "in.npy", (np.random.default_rng(4).random((N, 100)) * 3).astype(np.float32))
    cfg = {
        "populations": {"E": {"size": 80}, "I": {"size": 20}},
        "duration": 4.0,
        "stimulus": {"kind": "array", "path": "in.npy"},
        "record": {"synapses": None},
    }
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("run", "c.yaml", "--out", "r", "--quiet", "--no-plot", cwd=work)
    assert r.code == 0, r.err
    stored = yaml.safe_load((work / "r" / "config.yaml").read_text())["stimulus"]["path"]
    assert stored == str(work / "in.npy")
    r = cli("extend", work / "r", "--by", "1", "--quiet", "--no-plot", cwd=other)
    assert r.code != 2 or "in.npy" not in r.err, r.err  # the array is found from another folder
    assert r.code in (0, 2), r.err
    if r.code == 2:  # the 100-step array ends at 10 ms: only a too-short array may be refused
        assert "shape" in r.err, r.err


def test_array_path_is_resolved_in_the_config() -> None:
    cfg = Config.model_validate({"stimulus": {"kind": "array", "path": "x/in.npy"}})
    assert isinstance(cfg.stimulus, ArrayInput)
    assert cfg.stimulus.path == str(Path.cwd() / "x" / "in.npy")


# ---------------------------------------------------------------------------------- smaller


def test_non_utf8_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_bytes(b"seed: 1\n# caf\xe9\n")
    refused(cli("config", "show", tmp_path / "c.yaml"), "c.yaml", "UTF-8")


@pytest.mark.parametrize("text", ["a: &x [*x]\n", "stimulus: &s {kind: sum, terms: [*s]}\n"])
def test_self_referencing_anchor(text: str, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(text)
    refused(cli("config", "show", tmp_path / "c.yaml", "--set", "seed=2"), "c.yaml", "anchor")


def test_over_long_out_name(tmp_path: Path) -> None:
    refused(cli("run", "--out", tmp_path / ("x" * 300), "--duration", "1", "--quiet", *TINY), "x" * 20)


def _read_only(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
    """Make `target.name` fail as on a read-only file system (the tests run as root, for whom
    chmod does not make a folder read-only)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(args[1] if len(args) > 1 else args[0]))

    monkeypatch.setattr(target, name, fail)


def test_plot_on_a_read_only_folder(done_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    d = copy_run(done_run, tmp_path / "run")
    _read_only(monkeypatch, matplotlib.figure.Figure, "savefig")
    refused(cli("plot", d), "Read-only file system", "raster.png")


def test_extend_on_a_read_only_folder(done_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = copy_run(done_run, tmp_path / "run")
    _read_only(monkeypatch, os, "replace")
    _read_only(monkeypatch, Path, "write_text")
    refused(cli("extend", d, "--by", "1", "--quiet", "--no-plot"), "Read-only file system")
