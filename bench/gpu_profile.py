"""Where a GPU step's time goes, and where the GPU engine first departs from the CPU oracle.

    python bench/gpu_profile.py trace     # float64 lockstep: GPU engines vs CPU reference, per step
    python bench/gpu_profile.py time      # µs per step: graph replay, eager, each kernel alone
    python bench/gpu_profile.py kernels   # GPU time per kernel over real steps (torch.profiler)
    python bench/gpu_profile.py tune      # graph µs per step for other block sizes and warps
    python bench/gpu_profile.py split     # graph µs per step: split catch-up on/off, and exact?
    python bench/gpu_profile.py sample    # one synapse-statistics sample against one step

For the device machine; prints short tables.
"""

from __future__ import annotations

import sys
import time
from functools import partial

import numpy as np
import torch

from wmnet.config import load_config
from wmnet.dynamics import NeuronState
from wmnet.engines import make_engine
from wmnet.engines.gpu import Blocks, GpuSparseEngine
from wmnet.network import Network
from wmnet.stimuli import make_stimulus

SMALL = ["populations.E.size=800", "populations.I.size=200", "dtype=float64"]


def trace(steps: int = 120) -> None:
    cfg = load_config(None, SMALL + ["device=cpu"])
    net_cpu = Network.build(cfg)
    net_gpu = Network.build(
        load_config(None, SMALL + ["device=cuda"]),
        connectivity=net_cpu.connectivity.to(torch.device("cuda"), torch.float64),
    )
    stim = make_stimulus(cfg, net_cpu.device, net_cpu.dtype)
    engines = {
        "ref_cpu": make_engine("reference", net_cpu, keep_switch_events=True),
        "sparse_cpu": make_engine("sparse", net_cpu, keep_switch_events=True),
        "ref_gpu": make_engine("reference", net_gpu, keep_switch_events=True),
        "gpu_float": GpuSparseEngine(
            net_gpu,
            make_engine("reference", net_gpu).neurons,
            net_gpu.connectivity.initial.clone(),
            True,
            deterministic=False,
        ),
        "gpu_det": GpuSparseEngine(
            net_gpu,
            make_engine("reference", net_gpu).neurons,
            net_gpu.connectivity.initial.clone(),
            True,
            deterministic=True,
        ),
    }
    first: dict[str, int] = {}
    for k in range(steps):
        i_cpu = stim(k)
        i_gpu = i_cpu.cuda()
        sig = {name: e.step(i_cpu if name.endswith("cpu") else i_gpu).cpu() for name, e in engines.items()}
        base = engines["ref_cpu"].neurons
        line = [f"{k:4d} σ={int(sig['ref_cpu'].sum()):4d}"]
        for name, e in engines.items():
            if name == "ref_cpu":
                continue
            st = e.neurons
            d = {v: (st[v].cpu() - base[v]).abs().max().item() for v in ("v", "i_s", "i_f", "x")}
            nd = int((sig[name] != sig["ref_cpu"]).sum())
            ev = len(e.switches.table()) - len(engines["ref_cpu"].switches.table())
            if nd and name not in first:
                first[name] = k
            line.append(
                f"{name}: dσ={nd} dv={d['v']:.1e} dis={d['i_s']:.1e} dif={d['i_f']:.1e} dx={d['x']:.1e} dev={ev}"
            )
        if k < 45 or k % 10 == 0:
            print(" | ".join(line), flush=True)
    print("first σ difference per engine:", first or "none")


def _time(fn, reps: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def timing(extra: list[str], label: str) -> None:
    net, stim, eng = _warm_engine(extra)
    blk = 200
    i_blk = stim.block(eng.k, blk)
    t_graph = _time(lambda: eng.run_block(i_blk), 5) / blk
    flags = torch.empty(blk, net.n, dtype=torch.uint8, device=net.device)
    t_eager = _time(lambda: eng._issue(i_blk[:50], flags, (), None, None), 2) / 50
    # The state does not advance here (same σ each launch); L keeps learning, which is fine.
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(20):
            eng._synapse_step()
    t_syn = _time(g.replay, 10) / 20
    eng._acc.zero_()
    sigma = (eng._v >= net.params.theta).float().mean().item()
    print(
        f"{label:8s} σ={sigma:.3f}  graph {t_graph * 1e6:8.1f} µs/step  eager {t_eager * 1e6:8.1f} µs/step  "
        f"synapse kernel alone {t_syn * 1e6:8.1f} µs",
        flush=True,
    )


def _warm_engine(extra: list[str], blocks: Blocks | None = None, dtype: str = "float32") -> tuple:
    """The default network (plus overrides) on CUDA, after 600 steps: an eager block (compiles
    the kernels), then a captured one, then a replay. blocks: the launch shapes (default: Blocks())."""
    blocks = Blocks() if blocks is None else blocks
    cfg = load_config(None, extra + ["device=cuda", f"dtype={dtype}"])
    net = Network.build(cfg)
    stim = make_stimulus(cfg, net.device, net.dtype)
    eng = GpuSparseEngine(
        net, NeuronState.initial(net.n, net.device, net.dtype), net.connectivity.initial.clone(), blocks=blocks
    )
    for k0 in range(0, 600, 200):
        eng.run_block(stim.block(k0, 200))
    torch.cuda.synchronize()
    return net, stim, eng


def kernels(extra: list[str], label: str, steps: int = 400) -> None:
    """GPU time of each kernel per step over `steps` real (advancing) eager steps."""
    from torch.profiler import ProfilerActivity, profile

    net, stim, eng = _warm_engine(extra)
    i_blk = stim.block(eng.k, steps)
    flags = torch.empty(steps, net.n, dtype=torch.uint8, device=net.device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        eng._issue(i_blk, flags, (), None, None)
        torch.cuda.synchronize()
    eng.k += steps
    rows = [(e.key, e.device_time_total / steps, e.count) for e in prof.key_averages() if e.device_time_total > 0]
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    print(
        f"{label}: GPU time per step {total:.1f} µs over {steps} steps; "
        + ", ".join(f"{name[:40]} {t:.1f} µs ({c} calls)" for name, t, c in rows[:6]),
        flush=True,
    )


def tune(variants: list[Blocks] | None = None) -> None:
    """Graph replay µs per step for other launch shapes (same network, same start state), and
    the onset catch-up over (row, block) items (`Blocks.split_catch_up`) against whole rows."""
    base = Blocks()
    if variants is None:
        variants = [
            base,
            Blocks(split_catch_up=not base.split_catch_up),
            Blocks(catch_up=256, split_catch_up=True),
            Blocks(catch_up=128, split_catch_up=True),
            Blocks(synapse=256, catch_up=1024),
            Blocks(synapse=1024),
            Blocks(catch_up=256),
        ]
    for extra, label in (([], "default"), (["stimulus.amplitude_max=1.0"], "low")):
        for b in variants:
            net, stim, eng = _warm_engine(extra, b)
            i_blk = stim.block(eng.k, 200)
            t = _time(partial(eng.run_block, i_blk), 10) / 200
            print(
                f"{label:8s} blocks: synapse {b.synapse:4d} catch_up {b.catch_up:5d} split {b.split_catch_up!s:5}"
                f"  graph {t * 1e6:7.1f} µs/step",
                flush=True,
            )


def split() -> None:
    """The split catch-up against whole rows: graph µs per step (default blocks otherwise), then
    whether the two give bitwise the same float64 state and switch counts after 600 steps in
    deterministic mode (summation order cannot differ there, so any difference is a defect)."""
    tune([Blocks(), Blocks(split_catch_up=True), Blocks(catch_up=256, split_catch_up=True)])
    ends = []
    for b in (Blocks(), Blocks(split_catch_up=True)):
        net, stim, eng = _warm_engine(["deterministic=true"], b, "float64")
        syn = eng.synapses()
        ends.append(
            (eng.neurons.v.clone(), syn.L.clone(), syn.potentiated.clone(), (eng.switches.n_up, eng.switches.n_down))
        )
    same = (
        torch.equal(ends[0][0], ends[1][0])
        and torch.equal(ends[0][1], ends[1][1])
        and torch.equal(ends[0][2], ends[1][2])
        and ends[0][3] == ends[1][3]
    )
    print(
        f"split vs whole rows, float64 deterministic, 600 steps: bitwise equal {same}; switches "
        f"{ends[0][3]} vs {ends[1][3]}",
        flush=True,
    )


def sample_cost() -> None:
    """engine.synapses() (the full catch-up a synapse-statistics sample starts with) against one
    step, on the default network at two points 2000 steps apart."""
    net, stim, eng = _warm_engine([])
    for _ in range(2):
        i_blk = stim.block(eng.k, 200)
        t_step = _time(partial(eng.run_block, i_blk), 5) / 200
        t_syn = _time(eng.synapses, 1)  # the first call pays for a long gap, as a real sample does
        t_syn2 = _time(eng.synapses, 3)
        print(
            f"after {eng.k} steps: step {t_step * 1e6:.1f} µs; engine.synapses() {t_syn * 1e3:.2f} ms "
            f"(= {t_syn / t_step:.0f} steps; repeated at once {t_syn2 * 1e3:.2f} ms)",
            flush=True,
        )
        for k0 in range(eng.k, eng.k + 1000, 200):
            eng.run_block(stim.block(k0, 200))


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "time"
    if what == "trace":
        trace()
    elif what == "kernels":
        kernels([], "default")
        kernels(["plasticity.enabled=false"], "no-plast")
        kernels(["stimulus.amplitude_max=1.0"], "low")
    elif what == "tune":
        tune()
    elif what == "split":
        split()
    elif what == "sample":
        sample_cost()
    else:
        timing([], "default")
        timing(["plasticity.enabled=false"], "no-plast")
        timing(["stimulus.amplitude_max=1.0"], "low")
        timing(["deterministic=true"], "det")


if __name__ == "__main__":
    np.set_printoptions(linewidth=200)
    main()
