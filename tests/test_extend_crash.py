"""`wmnet extend` can be killed at any moment (issue 12 §5): `wmnet resume` then finishes the
extension, every output file as one uninterrupted run of the total duration wrote it; an extend
that fails before it starts (a too-short --input) leaves the completed run as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from wmnet.checkpoint import CHECKPOINT, EXTENSION, load_checkpoint, resume_run
from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.simulation import Simulation

SMALL = [
    "populations.E.size=800",
    "populations.I.size=200",
    "dtype=float32",
    "engine=sparse",
    "device=cpu",
    "seed=5",
    "record.checkpoint_every=10",
]
SHORT_MS, BY_MS = 30.0, 30.0  # the extension runs 300 steps: a checkpoint at 50 ms, the final one at 60 ms
CLI = [sys.executable, "-m", "wmnet.cli"]


def start_run(out: Path, duration: float, input_path: Path | None = None) -> None:
    """What `wmnet run` writes: the folder, config.yaml, then the run."""
    cfg = load_config(None, [*SMALL, f"duration={duration}"])
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(cfg.to_yaml())
    sim = Simulation(Network.build(cfg), input_path=input_path)
    sim.run(out=out, progress=False, info={"input": None if input_path is None else str(input_path)})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(one uninterrupted 60 ms run, a completed 30 ms run to extend): each test extends a copy."""
    root = tmp_path_factory.mktemp("extend")
    start_run(root / "whole", SHORT_MS + BY_MS)
    start_run(root / "short", SHORT_MS)
    return root / "whole", root / "short"


def _h5(path: Path) -> dict[str, object]:
    """Every dataset (values, dtype, shape) and attribute of an HDF5 file."""
    out: dict[str, object] = {}

    def visit(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = (obj.dtype.str, obj.shape, obj[()].tobytes())
        out[name + "@"] = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()}

    with h5py.File(path, "r") as f:
        out["/@"] = {k: np.asarray(v).tobytes() for k, v in f.attrs.items()}
        f.visititems(visit)
    return out


def _same(a: object, b: object, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, (where, a, b)


def assert_same_outputs(whole: Path, out: Path) -> None:
    """Every output file of `out` as in `whole`: the same names; HDF5 files dataset by dataset
    (values, dtypes, shapes) and attribute by attribute; checkpoint.pt entry by entry; run.json
    but for wall times and timestamps; every other file byte for byte."""

    def names(d: Path) -> set[str]:
        return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != ".lock"}

    assert names(whole) == names(out)
    for name in sorted(names(whole)):
        a, b = whole / name, out / name
        if name.endswith(".h5"):
            assert _h5(a) == _h5(b), name
        elif name == CHECKPOINT:
            _same(torch.load(a, weights_only=True), torch.load(b, weights_only=True), name)
        elif name == "run.json":
            ia, ib = json.loads(a.read_text()), json.loads(b.read_text())
            for key in ("status", "steps_done", "simulated_ms", "checkpoint_ms", "summary", "config", "seed"):
                assert ia[key] == ib[key], key
        else:
            assert a.read_bytes() == b.read_bytes(), name


def status(out: Path) -> str:
    return json.loads((out / "run.json").read_text())["status"]


def cli_resume(out: Path) -> None:
    done = subprocess.run(
        [*CLI, "resume", str(out), "--no-plot", "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert status(out) == "complete" and not (out / EXTENSION).exists()


# Moments of an extend to kill it at: each a condition polled on the folder.
def _recorded(out: Path, ck_mtime: int) -> bool:  # the extension is recorded; nothing simulated yet
    return (out / EXTENSION).exists()


def _writing(out: Path, ck_mtime: int) -> bool:  # simulating and appending, no new checkpoint yet
    try:
        return status(out) == "running"
    except (OSError, ValueError):
        return False


def _checkpointed(out: Path, ck_mtime: int) -> bool:  # the extension's first checkpoint (50 ms) is written
    return (out / CHECKPOINT).stat().st_mtime_ns != ck_mtime


MOMENTS: dict[str, Callable[[Path, int], bool]] = {
    "recorded": _recorded,
    "writing": _writing,
    "checkpointed": _checkpointed,
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_kill_9_during_extend_then_resume_is_one_uninterrupted_run(
    runs: tuple[Path, Path], tmp_path: Path, moment: str
) -> None:
    """A real `wmnet extend --by 30` of the completed 30 ms run, killed with SIGKILL once the
    extension is recorded, once it is writing (before its first checkpoint), and after its first
    checkpoint: `wmnet resume` finishes it to the same files as one 60 ms run."""
    whole, short = runs
    out = shutil.copytree(short, tmp_path / "run")
    ck_mtime = (out / CHECKPOINT).stat().st_mtime_ns
    proc = subprocess.Popen(
        [*CLI, "extend", str(out), "--by", str(BY_MS), "--no-plot", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not MOMENTS[moment](out, ck_mtime):
        assert time.monotonic() < deadline, f"no {moment!r} moment within 240 s"
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.communicate()
            pytest.skip(f"the extend finished before the {moment!r} moment (machine too fast for this timing)")
        time.sleep(0.002)
    proc.kill()
    proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the extend finished before SIGKILL (machine too fast for this timing)")
    assert (out / EXTENSION).exists()
    if moment == "writing":  # not extendable again until resumed; one line that says so
        again = subprocess.run([*CLI, "extend", str(out), "--by", "5"], capture_output=True, text=True, timeout=300)
        assert again.returncode == 2 and again.stderr.strip().endswith(
            f"an extension to {SHORT_MS + BY_MS:g} ms is unfinished: `wmnet resume {out}` completes it first"
        ), again.stderr
    cli_resume(out)
    assert_same_outputs(whole, out)


def test_resume_finishes_an_extension_from_either_config_yaml(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """The two states a kill leaves before the extension's first checkpoint, made exactly: the
    extension recorded with config.yaml still the old one, and with config.yaml already the new
    one (the old checkpoint in both). resume_run finishes each to the same files as one run."""
    whole, short = runs
    for name, new_yaml in (("old-yaml", False), ("new-yaml", True)):
        out = shutil.copytree(short, tmp_path / name)
        (out / EXTENSION).write_text(json.dumps({"from_ms": SHORT_MS, "to_ms": SHORT_MS + BY_MS}))
        if new_yaml:
            (out / "config.yaml").write_text((whole / "config.yaml").read_text())
        result = resume_run(out, progress=False)
        assert result.info["status"] == "complete" and not (out / EXTENSION).exists()
        assert_same_outputs(whole, out)


def test_resume_after_a_kill_between_the_end_and_the_cleanup(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """Killed after the extension completed but before extension.json was removed: resume has
    nothing left to simulate, removes the record, and the files stay those of one run."""
    whole, short = runs
    out = shutil.copytree(short, tmp_path / "run")
    resume_run(out, progress=False, extend_ms=BY_MS)
    (out / EXTENSION).write_text(json.dumps({"from_ms": SHORT_MS, "to_ms": SHORT_MS + BY_MS}))
    resume_run(out, progress=False)
    assert not (out / EXTENSION).exists()
    assert_same_outputs(whole, out)


def test_a_pending_extension_that_does_not_fit_the_folder_is_one_line(runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = shutil.copytree(runs[1], tmp_path / "run")
    (out / EXTENSION).write_text(json.dumps({"from_ms": 10.0, "to_ms": 20.0}))
    with pytest.raises(WmnetError, match=r"config\.yaml's duration 30 ms is neither end of the pending extension"):
        resume_run(out, progress=False)
    (out / EXTENSION).write_text("{not json")
    with pytest.raises(WmnetError, match=r"extension\.json: cannot read the pending extension"):
        resume_run(out, progress=False)


def test_an_extend_that_fails_on_a_too_short_input_leaves_the_run_extendable(tmp_path: Path) -> None:
    """A run driven by --input covering its 30 ms: `wmnet extend --by 30` is refused with one line
    before anything is written (config.yaml, checkpoint.pt and run.json unchanged, status
    complete with its summary); with an input long enough it then extends normally."""
    rng = np.random.default_rng(0)
    long = rng.uniform(0.0, 3.0, size=(1000, 600)).astype(np.float32)
    np.save(tmp_path / "input.npy", long[:, :300])
    out = tmp_path / "run"
    start_run(out, SHORT_MS, tmp_path / "input.npy")
    before = {name: (out / name).read_bytes() for name in ("config.yaml", CHECKPOINT, "run.json")}
    proc = subprocess.run(
        [*CLI, "extend", str(out), "--by", str(BY_MS), "--no-plot", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.startswith("error: ") and "\n" not in err and "input.npy" in err, err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert status(out) == "complete" and "summary" in json.loads((out / "run.json").read_text())
    assert not (out / EXTENSION).exists()
    np.save(tmp_path / "input.npy", long)  # the same first 30 ms, and 30 ms more
    proc = subprocess.run(
        [*CLI, "extend", str(out), "--by", str(BY_MS), "--no-plot", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["simulated_ms"] == pytest.approx(SHORT_MS + BY_MS)
    assert load_checkpoint(out / CHECKPOINT)["engine"]["k"] == 600


def test_extend_of_a_folder_being_written_is_refused_before_any_write(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """The folder's lock is taken before anything is read or written: with another process
    holding it, extend stops with one line and config.yaml, checkpoint.pt and run.json stay."""
    from wmnet.io.runinfo import lock_folder

    out = shutil.copytree(runs[1], tmp_path / "run")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    held = lock_folder(out)  # as a running `wmnet resume` holds it
    try:
        with pytest.raises(WmnetError, match="another wmnet process is writing this run folder"):
            resume_run(out, progress=False, extend_ms=BY_MS)
    finally:
        held.close()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
