"""Every registered engine meets the contract of engines.base.Engine, on the CPU.

The GPU engine runs here under Triton's interpreter (as in tests/test_gpu_kernels.py) when no
GPU is present: its state must have the same semantics as the CPU engines' (a value, never a
live buffer), and `set_state` must continue exactly like the reference engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from wmnet import model
from wmnet.config import Config, load_config
from wmnet.dynamics import NeuronState
from wmnet.engines import KINDS, REGISTRY, Engine, ReferenceEngine, SparseEngine, engine_class, make_engine
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.stimuli import make_stimulus

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is first imported

TINY = ["populations.E.size=80", "populations.I.size=20", "seed=3", "device=cpu", "dtype=float64"]
TOL = 1e-9  # float64: the engines agree to rounding (tests/test_equivalence.py)


def _have_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _gpu_engine(net: Network) -> Engine:
    from wmnet.engines.gpu import Blocks, GpuSparseEngine, _patch_interpreter

    if net.device.type == "cpu":
        _patch_interpreter()
    neurons = NeuronState.initial(net.n, net.device, net.dtype)
    return GpuSparseEngine(net, neurons, net.connectivity.initial.clone(), blocks=Blocks(32, 8, 4))


def _cpu(kind: str) -> Callable[[Network], Engine]:
    return lambda net: make_engine(kind, net)


MAKERS: dict[str, Callable[[Network], Engine]] = {"reference": _cpu("reference"), "sparse": _cpu("sparse")}
if _have_triton() and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
    MAKERS["gpu-sparse"] = _gpu_engine


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(None, TINY)


def _net(cfg: Config, kind: str) -> Network:
    dev = "cuda" if kind == "gpu-sparse" and torch.cuda.is_available() else "cpu"
    return Network.build(cfg, device=dev)


def _run(eng: Engine, stim: Callable[[int], torch.Tensor], steps: int) -> torch.Tensor:
    return torch.stack([eng.step(stim(eng.k).to(eng.net.device)).cpu() for _ in range(steps)])


# --- registry ---------------------------------------------------------------------------------


def test_registry_lookups() -> None:
    assert KINDS == ("reference", "sparse")
    assert engine_class("reference", "cpu") is ReferenceEngine
    assert engine_class("sparse", "cpu") is SparseEngine
    for (kind, device), entry in REGISTRY.items():
        assert (entry.kind, entry.device) == (kind, device)
        if device == "cpu" or _have_triton():
            cls = entry.load()
            assert issubclass(cls, Engine) and cls.name == kind and device in cls.devices


def test_registry_gives_the_gpu_engine_for_cuda() -> None:
    pytest.importorskip("triton")
    assert engine_class("sparse", "cuda").__name__ == "GpuSparseEngine"


def test_unknown_kind_or_device_is_a_clear_error(cfg: Config) -> None:
    net = Network.build(cfg)
    with pytest.raises(WmnetError, match=r"unknown engine 'dense' \(known: auto, reference, sparse\)"):
        make_engine("dense", net)
    with pytest.raises(WmnetError, match="no engine 'sparse' for device 'tpu'"):
        engine_class("sparse", "tpu")
    assert isinstance(make_engine("auto", net), SparseEngine)


def test_sparse_engine_refuses_float16() -> None:
    net = Network.build(load_config(None, [*TINY[:-1], "dtype=float16"]))
    with pytest.raises(WmnetError, match="float32 or float64"):
        make_engine("sparse", net)
    assert isinstance(make_engine("auto", net), ReferenceEngine)


# --- state ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MAKERS))
def test_state_is_a_copy(cfg: Config, kind: str) -> None:
    net = _net(cfg, kind)
    eng = MAKERS[kind](net)
    stim = make_stimulus(cfg, net.device, net.dtype)
    _run(eng, stim, 30)
    before = eng.state
    kept = {name: t.clone() for name, t in before.as_dict().items()}
    before.v.fill_(123.0)  # writing to the copy changes nothing in the engine
    assert torch.equal(eng.state.v, kept["v"])
    _run(eng, stim, 30)  # nor does stepping change the copy
    after = eng.state
    assert (before.v == 123.0).all()
    for name in model.VARIABLES:
        if name != "v":
            assert torch.equal(before[name], kept[name]), name
    assert any(not torch.equal(after[name], kept[name]) for name in model.VARIABLES)
    assert after.v.device == net.device and after.v.dtype == net.dtype


@pytest.mark.parametrize("kind", list(MAKERS))
def test_set_state_then_step_is_the_reference(cfg: Config, kind: str) -> None:
    """An initial v distribution, then a mid-run change (lazy E→E synapses must catch up)."""
    net = _net(cfg, kind)
    ref_net = Network.build(cfg)
    g = torch.Generator().manual_seed(11)
    v0 = 20 * torch.rand(net.n, generator=g, dtype=torch.float64)
    v1 = 20 * torch.rand(net.n, generator=g, dtype=torch.float64)
    stim = make_stimulus(cfg, torch.device("cpu"), net.dtype)
    results = []
    for eng in (make_engine("reference", ref_net, keep_switch_events=True), MAKERS[kind](net)):
        eng.set_state(v=v0)
        sig_a = _run(eng, stim, 30)
        eng.set_state({"v": v1}, x=0.5)
        sig_b = _run(eng, stim, 30)
        results.append((torch.cat([sig_a, sig_b]), eng.state, eng.synapses()))
    (sig_r, st_r, syn_r), (sig_e, st_e, syn_e) = results
    assert sig_r.sum() > 0
    assert torch.equal(sig_r, sig_e)
    for name in model.VARIABLES:
        assert (st_r[name] - st_e[name].cpu()).abs().max().item() <= TOL, name
    assert torch.equal(syn_r.potentiated, syn_e.potentiated.cpu())
    assert (syn_r.L - syn_e.L.cpu()).abs().max().item() <= TOL


@pytest.mark.parametrize("kind", ["reference", "sparse"])
def test_set_state_checks_its_input(cfg: Config, kind: str) -> None:
    eng = MAKERS[kind](Network.build(cfg))
    with pytest.raises(WmnetError, match=r"unknown variables \['w'\]"):
        eng.set_state(w=0.0)
    with pytest.raises(WmnetError, match="expected \\(100,\\) or a scalar"):
        eng.set_state(v=torch.zeros(7))
    given = torch.linspace(0, 19, eng.net.n, dtype=torch.float32)  # converted to the engine's dtype
    eng.set_state(NeuronState.initial(eng.net.n, eng.net.device, eng.net.dtype), v=given)
    assert eng.state.v.dtype == eng.net.dtype and torch.equal(eng.state.v, given.double())
    given += 1  # copied: the caller's tensor is not the engine's
    assert eng.state.v[0].item() == 0.0
    assert torch.equal(eng.state.x, torch.ones(eng.net.n, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["reference", "sparse"])
def test_state_dict_round_trip_and_run_block(cfg: Config, kind: str) -> None:
    net = Network.build(cfg)
    stim = make_stimulus(cfg, net.device, net.dtype)
    a, b = make_engine(kind, net), make_engine(kind, net)
    _run(a, stim, 25)
    b.load_state_dict(a.state_dict())
    assert b.k == a.k == 25
    flags, _, _ = a.run_block(stim.block(25, 30))  # the base class's stepwise fallback
    sig = _run(b, stim, 30)
    assert torch.equal(flags & 1 == 1, sig)
    assert torch.equal(a.state.v, b.state.v)
    assert a.stored_L().isfinite().all() and a.stored_L().dtype == net.dtype
    assert kind in repr(a) and "k=55" in repr(a)
