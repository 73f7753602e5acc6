"""The GPU engine's Triton kernels, run by Triton's interpreter on the CPU (no GPU needed).

Where CUDA is present these are skipped: test_equivalence runs the same engine on the GPU.
The interpreter executes the kernels' own code with NumPy, so these check the kernels' logic
(indexing, lazy drift, switch rules, event logging, fixed-point sums); not their speed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if torch.cuda.is_available():
    pytest.skip("CUDA present: the kernels are tested on the GPU in test_equivalence", allow_module_level=True)
# Before Triton is first imported: it decides then whether its own library functions interpret.
os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from wmnet.config import Config  # noqa: E402
from wmnet.dynamics import NeuronState  # noqa: E402
from wmnet.engines import make_engine  # noqa: E402
from wmnet.engines.cpu_plastic import _drift_to  # noqa: E402
from wmnet.engines.gpu import Blocks, GpuSparseEngine, _patch_interpreter  # noqa: E402
from wmnet.engines.gpu_drift import drift_probe  # noqa: E402
from wmnet.network import Network  # noqa: E402
from wmnet.stimuli import make_stimulus  # noqa: E402

TINY = ["populations.E.size=80", "populations.I.size=20", "seed=3", "device=cpu"]
# Launch shapes: the engine's, under which the tiny network's neuron kernel is one program, and
# small ones, under which every kernel runs several programs and rows take several vector steps
# (100 neurons: 4 neuron programs; E→E rows of ~16 synapses: 2+ synapse and 4+ catch-up blocks).
BLOCKS = {"default": Blocks(), "small": Blocks(neuron=32, synapse=8, catch_up=4)}
SPLIT = Blocks(32, 8, 4, split_catch_up=True)  # also a row's catch-up in 4+ (row, block) items


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), None, (0.0, 0.3)])  # last: θ_X above L_max
def test_drift_kernel_is_bitwise_the_cpu_replay(dtype: type, bounds: tuple[float, float] | None) -> None:
    """Lazy drift over many gaps and start values: L, crossing step and direction identical."""
    _patch_interpreter()
    block = 64
    gaps = np.array([1, 2, 3, 7, 50, 333, 1000, 4999, 30000], dtype=np.int64)
    rng = np.random.default_rng(1)
    thx = dtype(0.4)
    L0: np.ndarray = rng.uniform(-0.5, 1.5, size=(gaps.size, block)).astype(dtype)
    L0[:, :4] = [thx, np.nextafter(thx, dtype(1)), np.nextafter(thx, dtype(0)), dtype(0.0)]
    L0[:, 4:8] = [dtype(1.0), dtype(1e-6), dtype(-3.0), dtype(0.25)]
    # Starts outside the bounds too: their first step clips, which may cross θ_X.
    lo, hi = bounds if bounds is not None else (0.0, 0.0)
    c = dtype
    prm: np.ndarray = np.array([0.1, -0.0147, 0.01, 0.0, 0.4, lo, hi], dtype=dtype)
    for beta in (0.01, 0.02):  # β < α: drift-only crossings at θ_X go down; β > α: up
        prm[2] = beta
        expect_L, expect_at, expect_dir = L0.copy(), np.full(L0.shape, -1), np.zeros(L0.shape, dtype=np.int64)
        for g in range(gaps.size):
            for q in range(block):
                at, d = _drift_to(
                    expect_L[g],
                    q,
                    int(gaps[g]),
                    c(0.1),
                    c(-0.0147),
                    c(beta),
                    c(0),
                    thx,
                    c(lo),
                    c(hi),
                    bounds is not None,
                    int(np.finfo(dtype).nmant),
                )
                expect_at[g, q], expect_dir[g, q] = at, d
        L = torch.from_numpy(L0.copy()).reshape(-1)
        at = torch.zeros(L.numel(), dtype=torch.int64)
        direction = torch.zeros(L.numel(), dtype=torch.int32)
        drift_probe[(gaps.size,)](
            L,
            at,
            direction,
            torch.from_numpy(gaps),
            torch.from_numpy(prm),
            BOUNDED=bounds is not None,
            MANT=int(np.finfo(dtype).nmant),
            BLOCK=block,
        )
        np.testing.assert_array_equal(L.numpy().reshape(L0.shape), expect_L)
        np.testing.assert_array_equal(at.numpy().reshape(L0.shape), expect_at)
        np.testing.assert_array_equal(direction.numpy().reshape(L0.shape), expect_dir)
        assert (expect_at >= 0).any()  # the θ_X cases crossed, so the check has teeth


def _lockstep(net: Network, steps: int, deterministic: bool, blocks: Blocks) -> tuple:
    stim = make_stimulus(net.config, net.device, net.dtype)
    ref = make_engine("reference", net, keep_switch_events=True)
    gpu = GpuSparseEngine(
        net,
        ref.neurons.clone(),
        net.connectivity.initial.clone(),
        keep_switch_events=True,
        deterministic=deterministic,
        blocks=blocks,
    )
    active = 0
    for k in range(steps):
        i_ext = stim(k)
        a, b = ref.step(i_ext), gpu.step(i_ext)
        assert torch.equal(a, b), f"σ differs at step {k}"
        active += int(a.sum())
    return ref, gpu, active


@pytest.mark.parametrize("blocks", list(BLOCKS))
@pytest.mark.parametrize(
    "mode,deterministic",
    [
        ("plasticity.bounds=[0, 1]", False),
        ("plasticity.bounds=null", True),
        ("plasticity.enabled=false", False),
        # receptor scales: each projection's slow and fast efficacies from their own parameters
        (
            "projections={E->E: {slow_scale: 0.5, fast_scale: 1.25}, I->E: {fast_scale: 1.5}, "
            "I->I: {slow_scale: 3, fast_scale: 0.5}}",
            False,
        ),
    ],
)
def test_kernels_match_reference_float64(small_config, mode: str, deterministic: bool, blocks: str) -> None:
    """With small blocks this failed before the step counter was double-buffered: programs of the
    neuron kernel that ran after program 0 advanced k filed their onsets under the wrong parity
    (bounded: L off by 0.126, 94 switch events against the reference's 91)."""
    cfg = small_config(*TINY, "dtype=float64", "duration=15", mode)
    check_against_reference(cfg, mode, deterministic, BLOCKS[blocks])


@pytest.mark.parametrize("mode", ["plasticity.bounds=[0, 1]", "plasticity.bounds=null"])
def test_split_catch_up_matches_reference_float64(small_config, mode: str) -> None:
    """The onset catch-up over (row, block) items, 4 synapses a block: a row's blocks are separate
    items, none of which may move the row's last-update step before the others have read it.
    Small blocks for the other kernels too (the default split run would repeat the above)."""
    cfg = small_config(*TINY, "dtype=float64", "duration=15", mode)
    net = Network.build(cfg)
    eng = GpuSparseEngine(
        net, NeuronState.initial(net.n, net.device, net.dtype), net.connectivity.initial.clone(), blocks=SPLIT
    )
    assert eng._nchunk >= 3  # rows of ~16 synapses in blocks of 4
    check_against_reference(cfg, mode, False, SPLIT)


def check_against_reference(cfg: Config, mode: str, deterministic: bool, blocks: Blocks) -> None:
    net = Network.build(cfg)
    if blocks.neuron < 1024:  # the launch shapes really are multi-program on this network
        rows = net.connectivity.projections["E->E"].row_lengths()
        assert -(-net.n // blocks.neuron) >= 3
        assert int(rows.max()) > 2 * blocks.synapse and int(rows.max()) > 3 * blocks.catch_up
    ref, gpu, active = _lockstep(net, cfg.n_steps, deterministic, blocks)
    assert active > 0.1 * net.n * cfg.n_steps  # an active network, so the check has teeth
    for var in ("v", "i_s", "i_f", "x", "a"):
        diff = (ref.neurons[var] - gpu.neurons[var]).abs().max().item()
        assert diff <= 1e-9, f"{var} differs by {diff}"
    s_ref, s_gpu = ref.synapses(), gpu.synapses()
    diff = (s_ref.L - s_gpu.L).abs().max().item()
    assert diff <= 1e-9, f"L differs by {diff}"
    assert torch.equal(s_ref.potentiated, s_gpu.potentiated)
    ev_ref, ev_gpu = ref.switches.table(), gpu.switches.table()
    np.testing.assert_array_equal(ev_ref, ev_gpu)
    if "enabled=false" in mode:
        assert len(ev_ref) == 0
    else:
        assert len(ev_ref) > 20 and (ev_ref[:, 3] == 1).any() and (ev_ref[:, 3] == -1).any()
        assert (gpu.switches.n_up, gpu.switches.n_down) == (ref.switches.n_up, ref.switches.n_down)
    assert gpu._kbuf2.tolist() == [cfg.n_steps, cfg.n_steps]  # k and k + 1 of the last step


@pytest.mark.parametrize("blocks", list(BLOCKS))
def test_kernels_run_block_equals_steps(small_config, blocks: str) -> None:
    """The block path (flags, trace samples) gives what stepping one at a time gives."""
    from wmnet.engines.base import TraceRequest, run_block_stepwise

    cfg = small_config(*TINY, "dtype=float32", "duration=5")
    net = Network.build(cfg)
    stim = make_stimulus(cfg, net.device, net.dtype)
    trace = TraceRequest(("v", "x"), torch.tensor([0, 5, 90]), 3)
    a = GpuSparseEngine(
        net, make_engine("reference", net).neurons, net.connectivity.initial.clone(), blocks=BLOCKS[blocks]
    )
    b = make_engine("reference", net)
    block = stim.block(0, cfg.n_steps)
    fa, sa, xa = a.run_block(block, trace)
    fb, sb, xb = run_block_stepwise(b, block, trace)
    assert sa == sb == list(range(0, cfg.n_steps, 3))
    assert torch.equal(fa, fb)
    assert (fa & 2).any()  # some pulse onsets
    assert xa is not None and xb is not None  # a trace was asked for
    assert torch.allclose(xa, xb, rtol=0, atol=1e-4)


def test_kernels_compile_for_hopper() -> None:
    """Every kernel variant compiles for sm_90 (the interpreter accepts code the compiler rejects)."""
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("compile_kernels.py")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("compiled") == 40
