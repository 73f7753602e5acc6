"""Writes that fail (a full disk, a folder that cannot be made): one clear line, the last
checkpoint intact, and `wmnet resume` finishing the run once the problem is gone."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from wmnet.checkpoint import CHECKPOINT, load_checkpoint, resume_run
from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.io.sonata import SpikeWriter
from wmnet.network import Network
from wmnet.simulation import Simulation

SMALL = [
    "populations.E.size=400",
    "populations.I.size=100",
    "device=cpu",
    "dtype=float32",
    "seed=4",
    "duration=60",
    "record.flush_every=10",
    "record.checkpoint_every=20",
]


def test_unwritable_output_folder_is_one_line() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "wmnet.cli",
            "run",
            "--out",
            "/proc/wmnet-cannot-be-here",
            "--quiet",
            "--no-plot",
            "--duration",
            "1",
            "--set",
            "populations.E.size=80",
            "--set",
            "populations.I.size=20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot create the output folder" in lines[0], res.stderr


def test_full_disk_keeps_the_last_checkpoint_and_resume_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(None, SMALL)
    whole = tmp_path / "whole"
    Simulation(Network.build(cfg)).run(out=whole, progress=False)

    calls = {"n": 0}
    real_append = SpikeWriter.append

    def failing_append(self: SpikeWriter, times_ms: np.ndarray, global_ids: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] >= 4:  # the fourth flush finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(self, times_ms, global_ids)

    monkeypatch.setattr(SpikeWriter, "append", failing_append)
    out = tmp_path / "full"
    out.mkdir()
    (out / "config.yaml").write_text(cfg.to_yaml())  # as `wmnet run` writes it
    with pytest.raises(WmnetError, match=r"No space left on device.*checkpoint\.pt from step 200 .*intact"):
        Simulation(Network.build(cfg)).run(out=out, progress=False)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "No space left" in info["error"]
    assert load_checkpoint(out / CHECKPOINT)["steps_done"] == 200  # the 20 ms checkpoint, untouched
    with h5py.File(out / "spikes.h5", "r") as f:  # still readable
        assert f["spikes/E/timestamps"].shape[0] > 0

    monkeypatch.setattr(SpikeWriter, "append", real_append)  # space again
    resume_run(out, progress=False)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    with h5py.File(whole / "spikes.h5", "r") as a, h5py.File(out / "spikes.h5", "r") as b:
        for pop in ("E", "I"):
            for key in ("timestamps", "node_ids"):
                np.testing.assert_array_equal(a[f"spikes/{pop}/{key}"][()], b[f"spikes/{pop}/{key}"][()])
