"""Run folders (issue 12 §2): made atomically and locked before anything is written or deleted;
`--overwrite` replaces only a previous wmnet run that is not running and holds nothing the run
needs. Every case runs `wmnet run` as real processes (tiny networks, 20 ms)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal, overload

import numpy as np
import pytest
import yaml

TINY = ["--set", "populations.E.size=80", "--set", "populations.I.size=20", "--duration", "20", "--no-plot", "--quiet"]
N, STEPS = 100, 200  # neurons and steps of a TINY run (dt = 0.1 ms)


@overload
def wmnet(
    *args: object, cwd: Path | None = None, env: dict[str, str] | None = None, popen: Literal[False] = False
) -> subprocess.CompletedProcess[str]: ...


@overload
def wmnet(
    *args: object, cwd: Path | None = None, env: dict[str, str] | None = None, popen: Literal[True]
) -> subprocess.Popen[str]: ...


def wmnet(
    *args: object, cwd: Path | None = None, env: dict[str, str] | None = None, popen: bool = False
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """`wmnet ARGS` in a subprocess (arguments through str); with popen, started and not waited for."""
    cmd = [sys.executable, "-m", "wmnet.cli", *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def refused(proc: subprocess.CompletedProcess[str], *mentions: str) -> str:
    """Exit 2, one line `error: ...` naming every mention, no traceback, nothing on stdout."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for m in mentions:
        assert m in err, (m, err)
    assert proc.stdout == ""
    return err


def tree(path: Path) -> dict[str, str]:
    """Every file under `path` (relative name → sha256 of its bytes): what must not change."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def complete(folder: Path, seed: int | None = None) -> dict:
    """run.json complete; config.yaml, run.json and spikes.h5 all from the same run (one seed)."""
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "complete" and info["simulated_ms"] == pytest.approx(20.0), info["status"]
    assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == info["seed"]
    assert (folder / "spikes.h5").is_file() and (folder / "checkpoint.pt").is_file()
    if seed is not None:
        assert info["seed"] == seed
    return info


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed TINY run folder (seed 7) with a connectivity snapshot at 10 ms; tests copy it."""
    out = tmp_path_factory.mktemp("previous") / "run"
    ok(wmnet("run", "--out", out, "--seed", 7, "--set", "record.snapshots=[10]", *TINY))
    assert (out / "snapshots" / "connectivity_10ms.npz").is_file()
    return out


def copy_of(previous: Path, dest: Path) -> Path:
    shutil.copytree(previous, dest)
    return dest


# ---------------------------------------------------------------- concurrent runs

FROZEN_CLOCK = """import time
_strftime = time.strftime
def _frozen(fmt, *args):
    # Every run names its default folder after the same second, as runs started at once do.
    return "20260101-120000" if fmt == "%Y%m%d-%H%M%S" else _strftime(fmt, *args)
time.strftime = _frozen
"""


def test_three_concurrent_runs_without_out_get_three_folders(tmp_path: Path) -> None:
    """Three `wmnet run` at once with no --out, all in the same second (time.strftime frozen for
    the folder name through a sitecustomize): three folders, each one whole run of its own seed."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FROZEN_CLOCK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    procs = [wmnet("run", "--seed", seed, *TINY, cwd=tmp_path, env=env, popen=True) for seed in (1, 2, 3)]
    outs = [p.communicate(timeout=300) for p in procs]
    folders = []
    for seed, p, (stdout, stderr) in zip((1, 2, 3), procs, outs):
        assert p.returncode == 0, stderr
        line = stdout.strip().splitlines()[-1]
        assert line.startswith("results: runs/20260101-120000"), stdout
        folder = tmp_path / line.removeprefix("results: ")
        complete(folder, seed)
        folders.append(folder)
    assert len(set(folders)) == 3
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(f.name for f in folders)


def test_two_runs_with_the_same_new_out_at_once(tmp_path: Path) -> None:
    """Two runs into the same not-yet-existing --out: one completes, the other is refused with
    one line; the folder holds only the winner's run (never a mix of both)."""
    out = tmp_path / "same"
    procs = [wmnet("run", "--out", out, "--seed", seed, *TINY, popen=True) for seed in (1, 2)]
    results = [subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=300)) for p in procs]
    for r, p in zip(results, procs):
        r.returncode = p.returncode
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr for r in results]
    winner = 1 if results[0].returncode == 0 else 2
    refused(results[1 if winner == 1 else 0], f"--out {out}")
    complete(out, winner)


def test_overwrite_of_a_running_run_is_refused_and_the_run_completes(tmp_path: Path) -> None:
    """A run is stopped (SIGSTOP) once it is writing; `--overwrite` of its folder is refused and
    deletes nothing; resumed (SIGCONT), the run completes with its own seed and files."""
    out = tmp_path / "running"
    a = wmnet("run", "--out", out, "--seed", 1, *TINY, popen=True)
    assert isinstance(a, subprocess.Popen)
    deadline = time.monotonic() + 240
    try:
        while True:
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline, "the run never wrote run.json"
            try:
                if json.loads((out / "run.json").read_text())["status"] == "running":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        a.send_signal(signal.SIGSTOP)
        before = tree(out)
        b = wmnet("run", "--out", out, "--seed", 2, "--overwrite", *TINY)
        refused(b, f"--out {out}", "a wmnet process is writing this run folder", "nothing was deleted")
        assert tree(out) == before
    finally:
        a.send_signal(signal.SIGCONT)
    stdout, stderr = a.communicate(timeout=300)
    assert a.returncode == 0, stderr
    complete(out, 1)


# ---------------------------------------------------------------- refused --overwrite


def test_overwrite_of_the_working_folder_is_refused(previous: Path, tmp_path: Path) -> None:
    """`--out . --overwrite` inside a previous run folder: refused, nothing deleted."""
    cwd = copy_of(previous, tmp_path / "run")
    before = tree(cwd)
    refused(
        wmnet("run", "--out", ".", "--overwrite", *TINY, cwd=cwd),
        "--out .",
        "it is the working folder",
        "nothing was deleted",
    )
    assert tree(cwd) == before


def test_overwrite_of_a_parent_of_the_working_folder_is_refused(previous: Path, tmp_path: Path) -> None:
    """`--out` a run folder that holds the working folder (cwd = run/work): refused."""
    run = copy_of(previous, tmp_path / "run")
    (run / "work").mkdir()
    (run / "work" / "notes.txt").write_text("mine")
    before = tree(run)
    refused(wmnet("run", "--out", run, "--overwrite", *TINY, cwd=run / "work"), "it holds the working folder")
    refused(wmnet("run", "--out", "..", "--overwrite", *TINY, cwd=run / "work"), "it holds the working folder")
    assert tree(run) == before


def test_overwrite_of_a_folder_that_is_no_run_is_refused(tmp_path: Path) -> None:
    """A folder of the user's (files, a subfolder, a run.json that wmnet did not write)."""
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "1.tex").write_text("precious")
    (thesis / "run.json").write_text(json.dumps({"status": "complete"}))
    before = tree(thesis)
    refused(wmnet("run", "--out", thesis, "--overwrite", *TINY), "not a wmnet run folder", "nothing was deleted")
    assert tree(thesis) == before
    assert sorted(p.name for p in thesis.iterdir()) == ["chapters", "run.json"]  # not even a .lock


@pytest.mark.parametrize("what", ["--connectivity", "--input", "config file", "array stimulus"])
def test_overwrite_of_a_folder_holding_the_runs_input_is_refused(previous: Path, tmp_path: Path, what: str) -> None:
    """A previous run folder holding a file this run reads (its snapshot as --connectivity, an
    --input array, the config file itself, an array stimulus named in the config): refused."""
    run = copy_of(previous, tmp_path / "run")
    np.save(run / "input.npy", np.zeros((N, STEPS)))
    by_what: dict[str, list[str | Path]] = {
        "--connectivity": ["--connectivity", run / "snapshots" / "connectivity_10ms.npz"],
        "--input": ["--input", run / "input.npy"],
        "config file": [run / "config.yaml"],
        "array stimulus": ["--set", "stimulus.kind=array", "--set", f"stimulus.path={run / 'input.npy'}"],
    }
    args = by_what[what]
    before = tree(run)
    refused(
        wmnet("run", *args, "--out", run, "--overwrite", *TINY), f"it holds this run's {what}", "nothing was deleted"
    )
    assert tree(run) == before


def test_overwrite_of_a_run_holding_a_running_run_is_refused(previous: Path, tmp_path: Path) -> None:
    """A previous run folder with a run writing in a subfolder of it (its lock held): refused."""
    from wmnet.io.runinfo import lock_folder

    run = copy_of(previous, tmp_path / "run")
    held = lock_folder(run / "inner")  # as a running `wmnet run --out run/inner` holds it
    try:
        before = tree(run)
        refused(
            wmnet("run", "--out", run, "--overwrite", *TINY),
            f"a wmnet process is writing the run folder {run / 'inner'} inside it",
        )
        assert tree(run) == before
    finally:
        held.close()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("precious")
    refused(wmnet("run", "--out", f, "--overwrite", *TINY), "exists and is not a folder")
    assert f.read_text() == "precious"


# ---------------------------------------------------------------- accepted


def test_overwrite_replaces_a_finished_run(previous: Path, tmp_path: Path) -> None:
    """A finished run (not running, holds nothing this run needs) is replaced: its files are
    gone (the snapshot, a stale file), the folder holds the new run alone."""
    run = copy_of(previous, tmp_path / "run")
    (run / "stale.txt").write_text("old")
    ok(wmnet("run", "--out", run, "--seed", 2, "--overwrite", *TINY))
    complete(run, 2)
    assert not (run / "stale.txt").exists() and not (run / "snapshots").exists()


def test_new_empty_and_symlinked_folders_are_used_as_they_are(tmp_path: Path) -> None:
    """A missing --out (with missing parents) is created; an empty folder and a symlink to an
    empty folder are used in place (the symlink stays a symlink, the run lands in its target)."""
    new = tmp_path / "a" / "b" / "new"
    ok(wmnet("run", "--out", new, *TINY))
    complete(new)
    empty = tmp_path / "empty"
    empty.mkdir()
    ok(wmnet("run", "--out", empty, *TINY))
    complete(empty)
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    ok(wmnet("run", "--out", link, *TINY))
    assert link.is_symlink()
    complete(target)


def test_the_claimed_lock_is_held_from_creation_to_the_end_of_the_run(tmp_path: Path) -> None:
    """claim_run_folder returns the folder locked; Simulation.run(lock=...) runs under that same
    lock and leaves it held (no moment where another process could take it) until closed."""
    from wmnet.config import load_config
    from wmnet.errors import WmnetError
    from wmnet.io.claim import claim_run_folder
    from wmnet.io.runinfo import lock_folder
    from wmnet.network import Network
    from wmnet.simulation import Simulation

    folder = claim_run_folder(tmp_path / "new", overwrite=False)
    try:
        with pytest.raises(WmnetError, match="another wmnet process is writing this run folder"):
            lock_folder(folder.path).close()
        cfg = load_config(None, ["populations.E.size=80", "populations.I.size=20", "device=cpu", "duration=5"])
        info = Simulation(Network.build(cfg)).run(out=folder.path, progress=False, lock=folder.lock).info
        assert info["status"] == "complete"
        with pytest.raises(WmnetError, match="another wmnet process is writing this run folder"):
            lock_folder(folder.path).close()
    finally:
        folder.close()
    lock_folder(folder.path).close()  # free once closed


def test_unusable_out_names_are_one_line(tmp_path: Path) -> None:
    """A name too long for the file system, and a path through a file: WmnetError, nothing made."""
    from wmnet.errors import WmnetError
    from wmnet.io.claim import claim_run_folder

    (tmp_path / "file").write_text("x")
    for out in (tmp_path / ("x" * 300), tmp_path / ("x" * 300) / "y", tmp_path / "file" / "run"):
        with pytest.raises(WmnetError, match=r"^--out .*: cannot (use|create) the output folder \(.+\)$"):
            claim_run_folder(out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_config_inputs_finds_every_array_stimulus(tmp_path: Path) -> None:
    """The array paths of `stimulus`, of protocol epochs and of sums inside them."""
    from wmnet.config import load_config
    from wmnet.io.claim import config_inputs

    paths = [tmp_path / f"{name}.npy" for name in ("top", "epoch", "sum")]
    for p in paths:
        np.save(p, np.zeros((N, 10_000)))
    cfg = load_config(
        None,
        [
            "populations.E.size=80",
            "populations.I.size=20",
            f"stimulus={{kind: array, path: {paths[0]}}}",
            f"protocol={{epochs: [{{name: a, duration: 1, stimulus: {{kind: array, path: {paths[1]}}}}}, "
            f"{{name: b, duration: 1, stimulus: {{kind: sum, terms: [{{kind: constant}}, "
            f"{{kind: array, path: {paths[2]}}}]}}}}]}}",
        ],
    )
    assert sorted(map(str, config_inputs(cfg))) == sorted(map(str, paths))
