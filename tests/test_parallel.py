"""The sparse engine's chunked parallel path: bitwise reproducible, and bitwise the serial path.

The chunk count (config `threads`) fixes the rounding; whether the chunks run in parallel must
not change a single bit.
"""

from __future__ import annotations

import pytest
import torch

import wmnet.engines.sparse as sparse
from wmnet.engines import make_engine
from wmnet.network import Network
from wmnet.stimuli import make_stimulus


def _run(cfg, parallel: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[torch.Tensor, ...]:  # noqa: ANN001
    monkeypatch.setattr(sparse, "PARALLEL_MIN_SYNAPSES", 0 if parallel else 10**18)
    net = Network.build(cfg)
    eng = make_engine("sparse", net)
    assert isinstance(eng, sparse.SparseEngine) and eng._parallel is parallel
    stim = make_stimulus(cfg, net.device, net.dtype)
    sig = torch.stack([eng.step(stim(k)) for k in range(cfg.n_steps)])
    syn = eng.synapses()  # the full catch-up: in parallel chunks too
    return sig, eng.neurons.v.clone(), syn.L, syn.potentiated, torch.tensor([eng.switches.n_up, eng.switches.n_down])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parallel_chunks_are_bitwise_serial(small_config, monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    cfg = small_config(f"dtype={dtype}", "duration=60", "threads=3")
    par1 = _run(cfg, True, monkeypatch)
    par2 = _run(cfg, True, monkeypatch)
    ser = _run(cfg, False, monkeypatch)
    assert par1[0].sum() > 0
    for a, b, c in zip(par1, par2, ser):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_serial_and_parallel_are_separate_functions() -> None:
    """numba's disk cache is keyed by the Python function: one body jitted twice (serial and
    parallel) shares cache entries, and either dispatcher then loads whichever was compiled first
    (the parallel path ran serially after a test run had compiled the serial one)."""
    par, ser = sparse._step_chunks_parallel, sparse._step_chunks_serial
    assert par.py_func is not ser.py_func
    assert par.py_func.__qualname__ != ser.py_func.__qualname__
    assert par.targetoptions.get("parallel") and not ser.targetoptions.get("parallel")
