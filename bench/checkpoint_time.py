"""Time to write and to load a checkpoint of the default network (CPU), and its size.

    python bench/checkpoint_time.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from wmnet.checkpoint import load_checkpoint, save_checkpoint
from wmnet.config import load_config
from wmnet.engines import make_engine
from wmnet.network import Network


def main() -> None:
    cfg = load_config(None, ["device=cpu", "dtype=float32"])
    net = Network.build(cfg)
    eng = make_engine("sparse", net)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "checkpoint.pt"
        t0 = time.perf_counter()
        save_checkpoint(path, {"engine": eng.state_dict(), "config": cfg.to_dict(), "seed": cfg.seed})
        t1 = time.perf_counter()
        state = load_checkpoint(path)
        eng.load_state_dict(state["engine"])
        t2 = time.perf_counter()
        size = path.stat().st_size
    print(f"default network ({net.connectivity.n_synapses():,} synapses): checkpoint {size / 2**20:.0f} MiB, "
          f"write {t1 - t0:.2f} s (atomic: temporary file, fsync, rename), load into the engine {t2 - t1:.2f} s")


if __name__ == "__main__":
    main()
