"""Kernel-level checks on a real GPU: the lazy drift and one synaptic push, against the CPU.

python bench/gpu_debug.py
"""

from __future__ import annotations

import numpy as np
import torch

from wmnet.config import load_config
from wmnet.engines import make_engine
from wmnet.engines.cpu_plastic import _drift_to
from wmnet.engines.gpu import GpuSparseEngine
from wmnet.engines.gpu_drift import drift_probe
from wmnet.network import Network
from wmnet.stimuli import make_stimulus


def drift_check() -> None:
    rng = np.random.default_rng(1)
    gaps = np.array([1, 2, 3, 7, 50, 333, 1000, 4999, 30000], dtype=np.int64)
    for dtype in (np.float32, np.float64):
        for bounded in (True, False):
            c = dtype
            L0 = rng.uniform(-0.5, 1.5, size=(gaps.size, 64)).astype(dtype)
            L0[:, 0] = c(0.4)
            if bounded:
                L0 = np.clip(L0, c(0), c(1))
            exp = L0.copy()
            for g in range(gaps.size):
                for q in range(64):
                    _drift_to(
                        exp[g],
                        q,
                        int(gaps[g]),
                        c(0.1),
                        c(-0.0147),
                        c(0.01),
                        c(0),
                        c(0.4),
                        c(0),
                        c(1),
                        bounded,
                        int(np.finfo(dtype).nmant),
                    )
            L = torch.from_numpy(L0.copy()).reshape(-1).cuda()
            at = torch.zeros(L.numel(), dtype=torch.int64, device="cuda")
            d = torch.zeros(L.numel(), dtype=torch.int32, device="cuda")
            prm = torch.tensor([0.1, -0.0147, 0.01, 0.0, 0.4, 0, 1], dtype=torch.float64).to("cuda", L.dtype)
            for nw in (4, 1):
                Lw = L.clone()
                drift_probe[(gaps.size,)](
                    Lw,
                    at,
                    d,
                    torch.from_numpy(gaps).cuda(),
                    prm,
                    BOUNDED=bounded,
                    MANT=int(np.finfo(dtype).nmant),
                    BLOCK=64,
                    num_warps=nw,
                    enable_fp_fusion=False,
                )
                got = Lw.cpu().numpy().reshape(L0.shape)
                bad = got != exp
                print(
                    f"drift {dtype.__name__} bounded={bounded} warps={nw}: {int(bad.sum())} of {bad.size} differ; "
                    f"max |d| {np.abs(got - exp).max():.3g}",
                    flush=True,
                )
                # time: 20 launches
                t0 = torch.cuda.Event(enable_timing=True)
                t1 = torch.cuda.Event(enable_timing=True)
                t0.record()
                for _ in range(20):
                    drift_probe[(gaps.size,)](
                        Lw,
                        at,
                        d,
                        torch.from_numpy(gaps).cuda(),
                        prm,
                        BOUNDED=bounded,
                        MANT=int(np.finfo(dtype).nmant),
                        BLOCK=64,
                        num_warps=nw,
                        enable_fp_fusion=False,
                    )
                t1.record()
                torch.cuda.synchronize()
                print(f"   {t0.elapsed_time(t1) / 20 * 1000:.1f} µs per launch", flush=True)


def _networks() -> tuple:
    """The 1000-neuron float64 network on the CPU, the same connectivity on CUDA, its stimulus."""
    over = ["populations.E.size=800", "populations.I.size=200", "dtype=float64"]
    cfg = load_config(None, over + ["device=cpu"])
    net = Network.build(cfg)
    net_gpu = Network.build(
        load_config(None, over + ["device=cuda"]), connectivity=net.connectivity.to(torch.device("cuda"), torch.float64)
    )
    return cfg, net, net_gpu, make_stimulus(cfg, net.device, net.dtype)


def push_check() -> None:
    cfg, net, net_gpu, stim = _networks()
    cpu = make_engine("sparse", net)
    ref = make_engine("reference", net)
    for k in range(30):
        cpu.step(stim(k))
        ref.step(stim(k))
    st = cpu.neurons
    sigma = (st.v >= net.params.theta).double()
    s = st.x * sigma
    want_slow, want_fast = ref.J_slow @ s, ref.J_fast @ s
    print(f"push: {int(sigma.sum())} active", flush=True)
    for plastic in (True, False):
        for det in (False, True):
            for nw in (4, 1):
                for gap in (0, 30):
                    eng = GpuSparseEngine(net_gpu, st, cpu.synapses(), deterministic=det)
                    eng._const["PLASTIC"] = plastic
                    eng._kbuf.fill_(gap)
                    eng._synapse_step(num_warps=nw)
                    n = net_gpu.n
                    acc = eng._acc.double().cpu()
                    if det:
                        acc = acc / 2.0**44
                    es = (acc[:n] - want_slow).abs()
                    ef = (acc[n:] - want_fast).abs()
                    print(
                        f"push plastic={plastic} det={det} warps={nw} gap={gap}: slow err E {es[:800].max():.2e} "
                        f"I {es[800:].max():.2e}; fast err E {ef[:800].max():.2e} I {ef[800:].max():.2e}; "
                        f"n bad fast {(ef > 1e-9).sum().item()}",
                        flush=True,
                    )


def sequence_check() -> None:
    """Step fresh GPU engines (event log on/off, float/fixed sums, with/without neuron kernel
    reading acc) next to the CPU engine; report the first step whose i_f differs."""
    cfg, net, net_gpu, stim = _networks()
    for keep in (False, True):
        for det in (False, True):
            cpu = make_engine("sparse", net)
            eng = GpuSparseEngine(
                net_gpu, cpu.neurons, net.connectivity.initial.clone(), keep_switch_events=keep, deterministic=det
            )
            first, worst = None, 0.0
            for k in range(60):
                i = stim(k)
                cpu.step(i)
                eng.step(i.cuda())
                err = max((eng.neurons[v].cpu() - cpu.neurons[v]).abs().max().item() for v in ("i_f", "i_s", "v"))
                worst = max(worst, err)
                if err > 1e-9 and first is None:
                    first = k
            print(
                f"sequence keep={keep} det={det} (neuron kernel): "
                f"first step with error > 1e-9: {first}; worst {worst:.2e}",
                flush=True,
            )


def hybrid_check() -> None:
    """The GPU synapse kernel with torch's `advance` in place of the neuron kernel."""
    from wmnet.dynamics import NeuronState, advance, hebbian_factor, released

    cfg, net, net_gpu, stim = _networks()
    cpu = make_engine("sparse", net)
    eng = GpuSparseEngine(net_gpu, cpu.neurons, net.connectivity.initial.clone())
    p, n, n_e = net_gpu.params, net_gpu.n, net_gpu.n_E
    first, worst = None, 0.0
    for k in range(60):
        i = stim(k)
        cpu.step(i)
        eng._synapse_step()
        st = NeuronState(eng._v.clone(), eng._i_s.clone(), eng._i_f.clone(), eng._x.clone(), eng._a.clone())
        sigma, s = released(st, p)
        new = advance(st, sigma, s, eng._acc[:n].clone(), eng._acc[n:].clone(), i.cuda(), p)
        for name in ("v", "i_s", "i_f", "x", "a"):
            getattr(eng, "_" + name).copy_(new[name])
        eng._acc.zero_()
        eng._f.copy_(hebbian_factor(eng._v[:n_e], p.theta[:n_e], p.v_reset[:n_e], cfg))
        eng._kbuf += 1
        err = max((eng.neurons[v].cpu() - cpu.neurons[v]).abs().max().item() for v in ("i_f", "i_s", "v"))
        worst = max(worst, err)
        if err > 1e-9 and first is None:
            first = k
    print(
        f"hybrid (synapse kernel + torch advance): first step with error > 1e-9: {first}; worst {worst:.2e}", flush=True
    )


if __name__ == "__main__":
    import sys

    if "seq" in sys.argv:
        hybrid_check()
        sequence_check()
    else:
        drift_check()
        push_check()
