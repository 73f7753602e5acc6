"""Engine step time alone (no monitors, no block loop): ms per step and s/s, plasticity on and off.

python bench/step_time.py [--device cpu|cuda] [--steps 500]
"""

from __future__ import annotations

import argparse
import time

import torch

from wmnet.config import load_config
from wmnet.engines import make_engine
from wmnet.network import Network
from wmnet.stimuli import make_stimulus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable"
    )
    args = ap.parse_args()
    for extra in ([], ["plasticity.enabled=false"]):
        cfg = load_config(None, args.sets + extra + [f"device={args.device}", "dtype=float32"])
        net = Network.build(cfg)
        stim = make_stimulus(cfg, net.device, net.dtype)
        eng = make_engine("sparse", net)
        for k in range(args.warmup):
            eng.step(stim(k))
        if net.device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(args.warmup, args.warmup + args.steps):
            eng.step(stim(k))
        if net.device.type == "cuda":
            torch.cuda.synchronize()
        per = (time.perf_counter() - t0) / args.steps
        cpu = (time.process_time() - c0) / args.steps  # less sensitive to other processes on a shared machine
        print(
            f"{' '.join(extra) or 'plasticity on':28s} {per * 1e3:7.2f} ms/step = {per * 1e4:7.1f} s/s "
            f"(CPU time {cpu * 1e3:.2f} ms/step)",
            flush=True,
        )


if __name__ == "__main__":
    main()
