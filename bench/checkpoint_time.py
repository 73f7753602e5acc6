"""Time to write and to load a checkpoint of the default network, and its size.

python bench/checkpoint_time.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from wmnet.checkpoint import load_checkpoint, save_checkpoint
from wmnet.config import load_config
from wmnet.engines import make_engine
from wmnet.network import Network


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    cfg = load_config(None, [f"device={args.device}", "dtype=float32"])
    net = Network.build(cfg)
    eng = make_engine("sparse", net)
    sync = torch.cuda.synchronize if net.device.type == "cuda" else (lambda: None)
    sync()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "checkpoint.pt"
        t0 = time.perf_counter()
        save_checkpoint(path, {"engine": eng.state_dict(), "config": cfg.to_dict(), "seed": cfg.seed})
        t1 = time.perf_counter()
        state = load_checkpoint(path)
        eng.load_state_dict(state["engine"])
        sync()
        t2 = time.perf_counter()
        size = path.stat().st_size
    print(
        f"{net.device} default network ({net.connectivity.n_synapses():,} synapses): "
        f"checkpoint {size / 2**20:.0f} MiB, "
        f"write {t1 - t0:.2f} s (atomic: temporary file, fsync, rename), load into the engine {t2 - t1:.2f} s"
    )


if __name__ == "__main__":
    main()
