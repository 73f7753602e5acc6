"""Every fast engine against the dense reference engine (the oracle), on the same network.

float64: identical spike trains, identical switch events (step, pre, post, direction) and final
efficacies; v, currents, x and L within 1e-9. float32: identical spikes for the first 50 ms,
rates and final potentiated fraction within 2% over 1000 ms.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import pytest
import torch

from wmnet.config import Config
from wmnet.engines import make_engine
from wmnet.network import Network
from wmnet.stimuli import make_stimulus

MODES = {
    "bounded": ["plasticity.bounds=[0, 1]"],
    "unbounded": ["plasticity.bounds=null"],
    "off": ["plasticity.enabled=false"],
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _lockstep(
    net: Network, steps: int, names: tuple[str, str] = ("reference", "sparse"), spikes_must_match: int | None = None
) -> tuple[list, np.ndarray]:
    """Step both engines together; returns the engines and per-step σ counts of the first."""
    stim = make_stimulus(net.config, net.device, net.dtype)
    engines = [make_engine(n, net, keep_switch_events=True) for n in names]
    counts = np.zeros((2, steps), dtype=np.int64)
    for k in range(steps):
        i_ext = stim(k)
        sig = [e.step(i_ext) for e in engines]
        counts[0, k], counts[1, k] = int(sig[0].sum()), int(sig[1].sum())
        if spikes_must_match is None or k < spikes_must_match:
            assert torch.equal(sig[0], sig[1]), f"σ differs at step {k}"
    return engines, counts


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", list(MODES))
def test_sparse_matches_reference_float64(small_config, mode: str, device: str) -> None:
    cfg = small_config("dtype=float64", "duration=300", f"device={device}", *MODES[mode])
    net = Network.build(cfg)
    (ref, fast), counts = _lockstep(net, cfg.n_steps)
    assert counts[0].mean() > 0.1 * net.n  # the network is active, so the check has teeth
    for var in ("v", "i_s", "i_f", "x", "a"):
        diff = (ref.neurons[var] - fast.neurons[var]).abs().max().item()
        assert diff <= 1e-9, f"{var} differs by {diff}"
    s_ref, s_fast = ref.synapses(), fast.synapses()
    assert torch.equal(s_ref.potentiated, s_fast.potentiated)
    assert (s_ref.L - s_fast.L).abs().max().item() <= 1e-9
    ev_ref, ev_fast = ref.switches.table(), fast.switches.table()
    np.testing.assert_array_equal(ev_ref, ev_fast)
    if mode == "off":
        assert len(ev_ref) == 0
        assert torch.equal(s_fast.potentiated, net.connectivity.initial.potentiated)
    else:
        assert len(ev_ref) > 1000  # plenty of switches were compared
        assert (ev_ref[:, 3] == 1).any() and (ev_ref[:, 3] == -1).any()


class BlocksArgs(TypedDict, total=False):
    """Keyword arguments of wmnet.engines.gpu.Blocks (GPU launch shapes)."""

    neuron: int
    synapse: int
    catch_up: int
    split_catch_up: bool


# GPU launch shapes for the CUDA tests below.
CUDA_BLOCKS: dict[str, BlocksArgs] = {
    # rows of ~160 synapses, blocks of 64: three (row, block) items per row, run by different programs
    "split64": {"split_catch_up": True, "catch_up": 64},
    # 1000 neurons in 8 neuron programs, rows in 3+ synapse and catch-up vector steps
    "small": {"neuron": 128, "synapse": 64, "catch_up": 64},
}


def _check_gpu_float64(cfg: Config, mode: str, blocks: BlocksArgs) -> None:
    """The GPU engine with these launch shapes in float64 lockstep with the reference: identical
    σ at every step and switch events; state and L within 1e-9."""
    from wmnet.engines.gpu import Blocks, GpuSparseEngine

    net = Network.build(cfg)
    stim = make_stimulus(cfg, net.device, net.dtype)
    ref = make_engine("reference", net, keep_switch_events=True)
    gpu = GpuSparseEngine(
        net, ref.neurons.clone(), net.connectivity.initial.clone(), keep_switch_events=True, blocks=Blocks(**blocks)
    )
    active = 0
    for k in range(cfg.n_steps):
        i_ext = stim(k)
        a, b = ref.step(i_ext), gpu.step(i_ext)
        assert torch.equal(a, b), f"σ differs at step {k}"
        active += int(a.sum())
    assert active > 0.1 * net.n * cfg.n_steps  # the network is active, so the check has teeth
    for var in ("v", "i_s", "i_f", "x", "a"):
        diff = (ref.neurons[var] - gpu.neurons[var]).abs().max().item()
        assert diff <= 1e-9, f"{var} differs by {diff}"
    s_ref, s_gpu = ref.synapses(), gpu.synapses()
    assert torch.equal(s_ref.potentiated, s_gpu.potentiated)
    assert (s_ref.L - s_gpu.L).abs().max().item() <= 1e-9
    ev_ref, ev_gpu = ref.switches.table(), gpu.switches.table()
    np.testing.assert_array_equal(ev_ref, ev_gpu)
    if mode == "off":
        assert len(ev_ref) == 0
    else:
        assert len(ev_ref) > 1000 and (ev_ref[:, 3] == 1).any() and (ev_ref[:, 3] == -1).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("blocks", list(CUDA_BLOCKS))
@pytest.mark.parametrize("mode", list(MODES))
def test_gpu_blocks_match_reference_on_cuda(small_config, mode: str, blocks: str) -> None:
    """1000 neurons, launch shapes that make every kernel multi-program (or split the catch-up)."""
    if blocks == "split64" and mode == "off":
        pytest.skip("no catch-up without plasticity")
    cfg = small_config("dtype=float64", "duration=300", "device=cuda", *MODES[mode])
    _check_gpu_float64(cfg, mode, CUDA_BLOCKS[blocks])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("mode", list(MODES))
def test_gpu_10k_matches_reference_on_cuda(small_config, mode: str, split: bool) -> None:
    """The default network (10,000 neurons) with the engine's own launch shapes: the neuron kernel
    runs 10 programs, which the step-counter race needed (the 1000-neuron tests ran one)."""
    if split and mode == "off":
        pytest.skip("no catch-up without plasticity")
    cfg = small_config(
        "populations.E.size=8000",
        "populations.I.size=2000",
        "dtype=float64",
        "duration=100",
        "device=cuda",
        *MODES[mode],
    )
    _check_gpu_float64(cfg, mode, {"split_catch_up": split})


@pytest.mark.parametrize("device", DEVICES)
def test_sparse_matches_reference_float32(small_config, device: str) -> None:
    cfg = small_config("dtype=float32", "duration=1000", f"device={device}")
    net = Network.build(cfg)
    first_50ms = round(50 / cfg.dt)
    (ref, fast), counts = _lockstep(net, cfg.n_steps, spikes_must_match=first_50ms)
    total = counts.sum(axis=1)
    assert abs(total[1] - total[0]) <= 0.02 * total[0]
    n_e = net.n_E
    for e in (ref, fast):  # rates: onsets are counted by the simulation; σ totals track them
        assert e.k == cfg.n_steps
    pot = [float(e.synapses().potentiated.float().mean()) for e in (ref, fast)]
    assert abs(pot[1] - pot[0]) <= 0.02 * pot[0]
    assert pot[0] > 0.25  # learning happened (starts at 0.2)
    x = [float(e.neurons.x[:n_e].mean()) for e in (ref, fast)]
    assert abs(x[1] - x[0]) <= 0.05 * x[0]


def test_lazy_drift_switch_at_theta_exactly(small_config) -> None:
    """A synapse sitting exactly at θ_X switches down in the next drift step, also lazily."""
    cfg = small_config("dtype=float64", "duration=20")
    net = Network.build(cfg)
    conn = net.connectivity
    conn.initial.L[:50] = cfg.plasticity.theta_X  # potentiated or not, exactly at θ_X
    conn.initial.potentiated[:50] = 1
    (ref, fast), _ = _lockstep(net, cfg.n_steps)
    ev_ref, ev_fast = ref.switches.table(), fast.switches.table()
    np.testing.assert_array_equal(ev_ref, ev_fast)
    pre, post = conn.ee_indices()[1][:50], conn.ee_indices()[0][:50]
    first = {(int(a), int(b)) for a, b in zip(pre, post)}
    downs_at_0 = {(r[1], r[2]) for r in ev_ref if r[0] == 0 and r[3] == -1}
    assert first <= downs_at_0


def test_switch_counts_survive_a_full_event_buffer(small_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large networks switch more synapses per step than the event buffer holds: counts stay exact."""
    from wmnet.engines.sparse import SparseEngine

    monkeypatch.setattr(SparseEngine, "MAX_EVENTS", 7)
    cfg = small_config("populations.E.size=400", "populations.I.size=100", "dtype=float64", "duration=50")
    net = Network.build(cfg)
    stim = make_stimulus(cfg, net.device, net.dtype)
    fast, ref = make_engine("sparse", net), make_engine("reference", net)
    for k in range(cfg.n_steps):
        i_ext = stim(k)
        fast.step(i_ext)
        ref.step(i_ext)
    fast.synapses()
    assert ref.switches.n_up > 7 * 20 and ref.switches.n_down > 7 * 20
    assert (fast.switches.n_up, fast.switches.n_down) == (ref.switches.n_up, ref.switches.n_down)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reference_cuda_matches_cpu(small_config) -> None:
    """The reference engine on the GPU follows the CPU run (float64, plasticity on)."""
    runs = []
    for device in ("cpu", "cuda"):
        cfg = small_config("dtype=float64", "duration=100", f"device={device}")
        net = Network.build(cfg, connectivity=Network.build(small_config("dtype=float64")).connectivity)
        stim = make_stimulus(cfg, net.device, net.dtype)
        eng = make_engine("reference", net, keep_switch_events=True)
        sig = torch.stack([eng.step(stim(k)).cpu() for k in range(cfg.n_steps)])
        runs.append((sig, eng.neurons.v.cpu(), eng.switches.table()))
    assert torch.equal(runs[0][0], runs[1][0])
    assert (runs[0][1] - runs[1][1]).abs().max().item() <= 1e-9
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def _gpu_run(cfg_overrides: list[str], small_config, block: int | None, deterministic: bool) -> tuple:
    """Run the GPU engine through blocks of `block` steps (CUDA graphs) or step by step."""
    from wmnet.engines.gpu import GpuSparseEngine

    cfg = small_config(*cfg_overrides, "device=cuda")
    net = Network.build(cfg)
    stim = make_stimulus(cfg, net.device, net.dtype)
    eng = make_engine("reference", net)
    gpu = GpuSparseEngine(
        net, eng.neurons.clone(), net.connectivity.initial.clone(), keep_switch_events=True, deterministic=deterministic
    )
    sig = []
    if block is None:
        sig = [gpu.step(stim(k)) for k in range(cfg.n_steps)]
    else:
        for k0 in range(0, cfg.n_steps, block):
            flags, _, _ = gpu.run_block(stim.block(k0, min(block, cfg.n_steps - k0)))
            sig += list((flags & 1).bool())
    syn = gpu.synapses()
    return torch.stack(sig).cpu(), gpu.neurons.clone(), syn, gpu.switches.table()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_graphs_and_determinism(small_config, dtype: str) -> None:
    """deterministic: true gives bitwise-equal runs, whether replayed as CUDA graphs or stepped."""
    over = [f"dtype={dtype}", "duration=100"]
    a = _gpu_run(over, small_config, 100, True)
    b = _gpu_run(over, small_config, None, True)
    c = _gpu_run(over, small_config, 100, True)
    for other in (b, c):
        assert torch.equal(a[0], other[0])
        for var in ("v", "i_s", "i_f", "x", "a"):
            assert torch.equal(a[1][var], other[1][var]), var
        assert torch.equal(a[2].potentiated, other[2].potentiated) and torch.equal(a[2].L, other[2].L)
        np.testing.assert_array_equal(a[3], other[3])
    assert len(a[3]) > 100
    # Float atomics (the default) follow the same trajectory up to summation order.
    d = _gpu_run(over, small_config, 100, False)
    first_50ms = 500
    assert torch.equal(a[0][:first_50ms], d[0][:first_50ms])
