"""A numerical blow-up stops the run with one line naming the variable, neuron and step; data kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py


def test_blow_up_stops_with_a_clear_message(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Efficacies of 1e38 overflow float32 sums to inf as soon as E neurons fire.
    cmd = [
        sys.executable,
        "-m",
        "wmnet.cli",
        "run",
        "--out",
        str(out),
        "--quiet",
        "--no-plot",
        "--duration",
        "100",
        "--device",
        "cpu",
        "--set",
        "populations.E.size=800",
        "--set",
        "populations.I.size=200",
        "--set",
        "projections.E->E.J_p=1e38",
        "--set",
        "projections.E->E.J_d=1e38",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "numerical blow-up" in lines[0] and "of neuron" in lines[0] and "at step" in lines[0]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "numerical blow-up" in info["error"]
    assert 0 < info["steps_done"] < 1000
    with h5py.File(out / "spikes.h5") as f:  # the data up to the blow-up is readable
        assert f["spikes/E/timestamps"].shape[0] > 0
