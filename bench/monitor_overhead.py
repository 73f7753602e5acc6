"""Overhead of each monitor: the same run with monitors added one at a time (files written).

python bench/monitor_overhead.py [--device cpu|cuda] [--duration 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from wmnet.config import load_config
from wmnet.network import Network
from wmnet.simulation import Simulation

OFF = ["record.spikes=false", "record.traces.variables=[]", "record.rates=null", "record.synapses=null"]
STAGES = {
    "nothing recorded": OFF,
    "+ spikes": OFF[1:],
    "+ traces (6 neurons, every 10 steps)": OFF[2:],
    "+ rates (10 ms bins)": OFF[3:],
    "+ synapse statistics (every 100 ms)": [],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--duration", type=float, default=100.0)
    args = ap.parse_args()
    base = load_config(None, [f"device={args.device}", "dtype=float32"])
    net = Network.build(base)
    for label, sets in STAGES.items():
        cfg = load_config(None, sets + [f"device={args.device}", "dtype=float32", f"duration={args.duration}"])
        net.config = cfg  # same connectivity; only the recording differs
        sim = Simulation(net)
        sim.run(duration=20.0, progress=False)  # warm-up (compilation)
        with tempfile.TemporaryDirectory() as d:
            if net.device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            sim2 = Simulation(net)
            sim2.run(out=d, progress=False)
            if net.device.type == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{label:40s} {wall / (args.duration / 1000):8.2f} s/s  (CPU time {cpu:6.2f} s)", flush=True)


if __name__ == "__main__":
    main()
