"""Each term of MODEL.md's Euler step against hand-computed numbers.

Every expected value below is derived by hand in a comment from MODEL.md's equations and the
default parameters (dt = 0.1 ms, τ_s = 10 ms, τ_rec = 200 ms, U = 0.45, τ_ref = 2 ms,
E: τ_m = 20, θ = 20, v_reset = 15; I: τ_m = 10, θ = 20, v_reset = 10; α = 0.0147, β = 0.01,
θ_X = 0.4, a_H = 0.25, b_H = 0.17, θ_LTP = 17.5, θ_LTD = 15.5, J_p = 0.21, J_d = 0.03,
E→I = 0.08, I→E = I→I = −0.18). Nothing is compared against the code's own output.

Tiny networks are imported from hand-made dense .npz files (post × pre), and every
engine-level check runs on both engines in float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wmnet.config import Config, load_config
from wmnet.dynamics import NeuronParams, NeuronState, advance, drift, hebbian_factor, released
from wmnet.engines import make_engine
from wmnet.network import Network

F64 = torch.float64
CPU = torch.device("cpu")
ENGINES = ["reference", "sparse"]
TOL = 1e-12  # float64: every hand value below is a handful of roundings away


def cfg_of(n_e: int, n_i: int, *overrides: str) -> Config:
    return load_config(
        None,
        [
            f"populations.E.size={n_e}",
            f"populations.I.size={n_i}",
            "dtype=float64",
            "device=cpu",
            "stimulus.kind=constant",
            *overrides,
        ],
    )


def tensor(values: list[float], dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def build(
    tmp_path: Path,
    n_e: int,
    n_i: int,
    slow: dict[tuple[int, int], float],
    fast: dict[tuple[int, int], float],
    l: dict[tuple[int, int], float] | None = None,
    overrides: tuple[str, ...] = (),
    dtype: torch.dtype = F64,
) -> Network:
    """A network from dense matrices given as {(post, pre): value}."""
    n = n_e + n_i
    arrays = {"j_slow": np.zeros((n, n)), "j_fast": np.zeros((n, n))}
    for key, entries in (("j_slow", slow), ("j_fast", fast)):
        for (post, pre), value in entries.items():
            arrays[key][post, pre] = value
    if l is not None:
        arrays["l"] = np.zeros((n, n))
        for (post, pre), value in l.items():
            arrays["l"][post, pre] = value
    path = tmp_path / "conn.npz"
    np.savez(path, allow_pickle=False, **arrays)
    return Network.build(cfg_of(n_e, n_i, *overrides), device="cpu", dtype=dtype, connectivity=path)


def state(v, i_s, i_f, x, a, dtype: torch.dtype = F64) -> NeuronState:  # noqa: ANN001
    return NeuronState(*(tensor(list(t), dtype) for t in (v, i_s, i_f, x, a)))


def ee_state(engine) -> dict[tuple[int, int], tuple[int, float]]:  # noqa: ANN001
    """E→E synapses as {(pre, post): (potentiated, L)}."""
    syn = engine.synapses()
    post, pre = engine.net.connectivity.ee_indices()
    return {(int(j), int(i)): (int(b), float(L)) for i, j, b, L in zip(post, pre, syn.potentiated, syn.L, strict=True)}


def switch_rows(engine) -> list[tuple[int, ...]]:  # noqa: ANN001
    return [tuple(int(v) for v in row) for row in engine.switches.table()]


# ---------------------------------------------------------------------------------------------
# Parameters and the pure per-neuron functions


def test_neuron_params_from_config():
    cfg = cfg_of(2, 1, "populations.I.tau_s=5", "populations.E.tau_ref=4")
    p = NeuronParams.from_config(cfg, CPU, F64)
    assert p.theta.tolist() == [20.0, 20.0, 20.0]
    assert p.v_reset.tolist() == [15.0, 15.0, 10.0]
    assert p.tau_m.tolist() == [20.0, 20.0, 10.0]
    # dt/τ_s: E 0.1/10 = 0.01, I 0.1/5 = 0.02
    assert p.dt_tau_s.tolist() == pytest.approx([0.01, 0.01, 0.02], abs=1e-15)
    # dt/τ_ref: E 0.1/4 = 0.025, I 0.1/2 = 0.05
    assert p.pulse_inc.tolist() == pytest.approx([0.025, 0.025, 0.05], abs=1e-15)
    assert (p.dt, p.U, p.tau_rec) == (0.1, 0.45, 200.0)


def test_sigma_and_released_resources():
    cfg = cfg_of(3, 1)
    p = NeuronParams.from_config(cfg, CPU, F64)
    # v = θ exactly counts as on; 19.99 does not.
    st = state(v=[20.0, 19.99, 25.0, -3.0], i_s=[0] * 4, i_f=[0] * 4, x=[0.5, 0.7, 0.3, 1.0], a=[0] * 4)
    sigma, s = released(st, p)
    assert sigma.dtype == F64
    assert sigma.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert s.tolist() == [0.5, 0.0, 0.3, 0.0]  # s = x·σ


def test_advance_pulse_counter_membrane_and_resources():
    """Step 6 and 7 on five neurons (E 0..2, I 3..4), with hand-made synaptic sums."""
    cfg = cfg_of(3, 2)
    p = NeuronParams.from_config(cfg, CPU, F64)
    st = state(
        v=[22.0, 20.0, 25.0, 30.0, 5.0],
        i_s=[1.0, 0.0, 0.0, 0.0, 0.4],
        i_f=[0.5, 0.0, 0.0, 0.0, 2.0],
        x=[1.0, 0.6, 0.2, 0.5, 0.5],
        a=[0.3, 0.0, 1.0, 1.0, 0.0],
    )
    i_ext = tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    syn_slow = tensor([0.0, 0.0, 0.0, 0.0, 0.3])
    syn_fast = tensor([0.7, 0.0, 0.0, 0.0, -0.25])
    sigma, s = released(st, p)  # σ = [1, 1, 1, 1, 0]
    new = advance(st, sigma, s, syn_slow, syn_fast, i_ext, p)
    # a' = (a + dt/τ_ref·σ)·[a < 1]: 0.3+0.05, 0+0.05, reset, reset, silent stays 0
    assert new.a.tolist() == pytest.approx([0.35, 0.05, 0.0, 0.0, 0.0], abs=TOL)
    # v': n0 frozen above θ (22 > 20, a < 1) -> 22 exactly;
    #     n1 v = θ still integrates: 20 + 0.1·(−20/20 + 0) = 19.9;
    #     n2 (E) a ≥ 1 -> v_reset 15; n3 (I) a ≥ 1 -> v_reset 10;
    #     n4 (I): 5 + 0.1·(−5/10 + 0.4 + 2.0 + 1.0) = 5 + 0.1·2.9 = 5.29
    assert new.v[0].item() == 22.0
    assert new.v.tolist() == pytest.approx([22.0, 19.9, 15.0, 10.0, 5.29], abs=TOL)
    # i_s' = i_s + 0.01·(−i_s + syn_slow): n0 1 − 0.01 = 0.99; n4 0.4 + 0.01·(−0.1) = 0.399
    assert new.i_s.tolist() == pytest.approx([0.99, 0.0, 0.0, 0.0, 0.399], abs=TOL)
    # i_f' = syn_fast
    assert new.i_f.tolist() == [0.7, 0.0, 0.0, 0.0, -0.25]
    # x' = x + dt(1−x)/τ_rec − U·x·σ:
    #   n0 1 + 0 − 0.45 = 0.55; n1 0.6 + 0.1·0.4/200 − 0.27 = 0.3302;
    #   n2 0.2 + 0.1·0.8/200 − 0.09 = 0.1104; n3 0.5 + 0.00025 − 0.225 = 0.27525;
    #   n4 silent: 0.5 + 0.00025 = 0.50025
    assert new.x.tolist() == pytest.approx([0.55, 0.3302, 0.1104, 0.27525, 0.50025], abs=TOL)
    # advance() must not modify the state at t_k
    assert st.v.tolist() == [22.0, 20.0, 25.0, 30.0, 5.0]


# ---------------------------------------------------------------------------------------------
# Step 8's factors


def test_hebbian_factor_ltp_window_and_ltd_gate():
    cfg = cfg_of(2, 1)
    v = tensor([14.0, 15.0, 15.2, 15.5, 16.0, 17.4, 17.5, 19.0, 20.0, 20.5])
    theta = torch.full_like(v, 20.0)
    e_reset = torch.full_like(v, 15.0)
    f = hebbian_factor(v, theta, e_reset, cfg)
    # E cells: −b_H needs v ≤ 15 (v_reset) AND v ≤ 15.5; +a_H needs 17.5 ≤ v ≤ 20.
    # v = 15.2 is below θ_LTD = 15.5 but above v_reset = 15: f = 0, not −0.17.
    assert f.tolist() == pytest.approx([-0.17, -0.17, 0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.0], abs=1e-15)
    # With v_reset = 10 (as I cells), LTD needs v ≤ 10.
    i_reset = torch.full_like(v, 10.0)
    f = hebbian_factor(tensor([9.0, 10.0, 12.0, 18.0]), theta[:4], i_reset[:4], cfg)
    assert f.tolist() == pytest.approx([-0.17, -0.17, 0.0, 0.25], abs=1e-15)


def test_hebbian_factor_follows_config():
    cfg = cfg_of(2, 1, "plasticity.a_H=0.5", "plasticity.b_H=0.3", "plasticity.theta_LTP=16", "plasticity.theta_LTD=14")
    v = tensor([13.0, 14.5, 15.0, 16.0, 19.0])
    f = hebbian_factor(v, torch.full_like(v, 20.0), torch.full_like(v, 15.0), cfg)
    # LTD needs v ≤ 14 (now the tighter gate); LTP 16 ≤ v ≤ 20
    assert f.tolist() == pytest.approx([-0.3, 0.0, 0.0, 0.5, 0.5], abs=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drift_below_above_and_at_theta_x(dtype):
    cfg = cfg_of(2, 1)
    L = tensor([0.0, 0.2, 0.39, 0.4, 0.41, 0.6, 1.0], dtype)
    R = drift(L, cfg)
    assert R.dtype == dtype
    # below: −α = −0.0147; above: +β = 0.01; at θ_X = 0.4 exactly: β − α = −0.0047
    expected = [-0.0147, -0.0147, -0.0147, -0.0047, 0.01, 0.01, 0.01]
    assert R.tolist() == pytest.approx(expected, abs=1e-7 if dtype == torch.float32 else 1e-15)


# ---------------------------------------------------------------------------------------------
# Currents through the engines (plasticity off, so J is fixed)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_currents_and_one_step_delay(tmp_path, engine_name):
    """E0 pulses; E0→E1 slow (J_p), E0→I2 fast (0.08), E1→E0 fast (J_d), I2→E0/E1 fast."""
    net = build(
        tmp_path,
        2,
        1,
        slow={(1, 0): 0.21},
        fast={(2, 0): 0.08, (0, 1): 0.03, (0, 2): -0.18, (1, 2): -0.18},
        overrides=("plasticity.enabled=false",),
    )
    st = state(v=[25.0, 10.0, 0.0], i_s=[0.5, 1.0, 0.0], i_f=[0.2, 0.3, 0.0], x=[0.8, 1.0, 1.0], a=[0, 0, 0])
    eng = make_engine(engine_name, net, neurons=st)
    i_ext = tensor([0.0, 0.5, 0.0])

    sig = eng.step(i_ext)  # k = 0
    assert sig.tolist() == [True, False, False]
    n = eng.neurons
    # σ = [1,0,0], s = [0.8,0,0]; Σ J^slow s = [0, 0.21·0.8 = 0.168, 0]; Σ J^fast s = [0, 0, 0.064]
    # i_s' = i_s + 0.01(−i_s + Σ): 0.5 − 0.005 = 0.495; 1 + 0.01(−1 + 0.168) = 0.99168; 0
    assert n.i_s.tolist() == pytest.approx([0.495, 0.99168, 0.0], abs=TOL)
    assert n.i_f.tolist() == pytest.approx([0.0, 0.0, 0.064], abs=TOL)
    # I = old i_s + old i_f + I_ext = [0.7, 1.8, 0]
    # v': frozen 25; 10 + 0.1(−10/20 + 1.8) = 10.13; I2: 0 (the pulse has not arrived yet)
    assert n.v.tolist() == pytest.approx([25.0, 10.13, 0.0], abs=TOL)
    assert n.v[2].item() == 0.0
    assert n.a.tolist() == pytest.approx([0.05, 0.0, 0.0], abs=TOL)
    # x0' = 0.8 + 0.1·0.2/200 − 0.45·0.8 = 0.4401
    assert n.x.tolist() == pytest.approx([0.4401, 1.0, 1.0], abs=TOL)

    sig = eng.step(i_ext)  # k = 1
    assert sig.tolist() == [True, False, False]
    n = eng.neurons
    # s = [0.4401,0,0]; Σ J^slow s = 0.21·0.4401 = 0.092421; Σ J^fast s = 0.08·0.4401 = 0.035208
    # i_s'' = 0.495 − 0.00495 = 0.49005; 0.99168 + 0.01(−0.99168 + 0.092421) = 0.98268741
    assert n.i_s.tolist() == pytest.approx([0.49005, 0.98268741, 0.0], abs=TOL)
    assert n.i_f.tolist() == pytest.approx([0.0, 0.0, 0.035208], abs=TOL)
    # I = [0.495, 0.99168 + 0.5, 0.064]
    # v'': 25; 10.13 + 0.1(−0.5065 + 1.49168) = 10.228518; I2: 0 + 0.1·0.064 = 0.0064
    assert n.v.tolist() == pytest.approx([25.0, 10.228518, 0.0064], abs=TOL)
    assert n.a.tolist() == pytest.approx([0.1, 0.0, 0.0], abs=TOL)
    # x0'' = 0.4401 + 0.1·0.5599/200 − 0.45·0.4401 = 0.24233495
    assert n.x.tolist() == pytest.approx([0.24233495, 1.0, 1.0], abs=TOL)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_inhibitory_pulse_slow_and_fast(tmp_path, engine_name):
    """I2 pulses into E0 (fast, −0.18) and I3 (slow, −0.18); E1 → I2 (fast 0.08) is silent."""
    net = build(
        tmp_path,
        2,
        2,
        slow={(3, 2): -0.18},
        fast={(0, 2): -0.18, (2, 1): 0.08},
        overrides=("plasticity.enabled=false",),
    )
    st = state(v=[0.0, 0.0, 21.0, 0.0], i_s=[0.0] * 4, i_f=[0.0] * 4, x=[1.0, 1.0, 0.5, 1.0], a=[0.0] * 4)
    eng = make_engine(engine_name, net, neurons=st)
    eng.step(tensor([0.0] * 4))
    n = eng.neurons
    # s2 = 0.5: i_f'[0] = −0.18·0.5 = −0.09; i_s'[3] = 0 + 0.01·(−0.09) = −0.0009
    assert n.i_f.tolist() == pytest.approx([-0.09, 0.0, 0.0, 0.0], abs=TOL)
    assert n.i_s.tolist() == pytest.approx([0.0, 0.0, 0.0, -0.0009], abs=TOL)
    eng.step(tensor([0.0] * 4))
    n = eng.neurons
    # v0'' = 0 + 0.1·(0 + 0 − 0.09) = −0.009; v3'' = 0 + 0.1·(−0.0009) = −0.00009
    assert n.v.tolist() == pytest.approx([-0.009, 0.0, 21.0, -0.00009], abs=TOL)


# ---------------------------------------------------------------------------------------------
# Pulse length


def _pulse_runs(engine_name: str, dtype: torch.dtype, tmp_path: Path, n_steps: int = 110):
    net = build(tmp_path, 1, 1, slow={}, fast={}, overrides=("plasticity.enabled=false",), dtype=dtype)
    eng = make_engine(engine_name, net)
    i_ext = torch.tensor([30.0, 0.0], dtype=dtype)
    sig, vs = [], []
    for _ in range(n_steps):
        vs.append(eng.neurons.v[0].item())
        sig.append(bool(eng.step(i_ext)[0]))
    runs, start = [], None
    for k, on in enumerate(sig):
        if on and start is None:
            start = k
        if not on and start is not None:
            runs.append((start, k - start))
            start = None
    return runs, vs, sig


@pytest.mark.parametrize(
    ("engine_name", "dtype", "length"),
    [
        ("reference", torch.float16, 22),
        ("reference", torch.float32, 21),
        ("reference", torch.float64, 21),
        ("sparse", torch.float32, 21),
        ("sparse", torch.float64, 21),
    ],
)
def test_pulse_length(tmp_path, engine_name, dtype, length):
    # 110 steps: float16 matmuls are slow on CPU; this still holds 4 complete pulses
    runs, vs, sig = _pulse_runs(engine_name, dtype, tmp_path)
    assert len(runs) >= 4
    assert {n for _, n in runs} == {length}
    for start, n in runs:
        # v is frozen above threshold for the whole pulse, then reset to 15 the step after
        assert vs[start] >= 20.0
        assert all(v == vs[start] for v in vs[start : start + n])
        assert vs[start + n] == 15.0
        assert not sig[start + n]


def test_first_pulse_onset_float64(tmp_path):
    # v_{k+1} = v_k + 0.1·(−v_k/20 + 30) = 0.995·v_k + 3 from v_0 = 0:
    # 3, 5.985, 8.955075, 11.910299625, 14.850748126875, 17.776494386240625, 20.68761...
    # so v_7 ≥ 20 and the first pulse starts at step 7; the next one 21 + 2 steps later
    # (after reset to 15: 15·0.995 + 3 = 17.925, then 20.835... ≥ 20).
    runs, vs, _ = _pulse_runs("reference", F64, tmp_path, 60)
    assert vs[6] == pytest.approx(17.776494386240625, abs=1e-12)
    assert runs[0] == (7, 21)
    assert runs[1] == (7 + 21 + 2, 21)


# ---------------------------------------------------------------------------------------------
# The hidden variable L and the efficacy switch


@pytest.mark.parametrize("engine_name", ENGINES)
def test_L_one_step(tmp_path, engine_name):
    """E0 pulses; E0→E1 (fast J_d, L 0.3), E0→E2 (slow J_d, L 0.3), E0→E3 (fast J_d, L 0.3),
    E1→E0 (slow J_p, L 0.7, pre silent), E2→E3 (fast J_d, L 0.2, pre silent)."""
    net = build(
        tmp_path,
        4,
        1,
        slow={(2, 0): 0.03, (0, 1): 0.21},
        fast={(1, 0): 0.03, (3, 0): 0.03, (3, 2): 0.03},
        l={(1, 0): 0.3, (2, 0): 0.3, (3, 0): 0.3, (0, 1): 0.7, (3, 2): 0.2},
    )
    # post potentials: E0 25 (> θ: f = 0), E1 18 (LTP: f = +0.25), E2 15.2 (f = 0: LTD needs
    # v ≤ 15), E3 15.0 (f = −0.17)
    st = state(v=[25.0, 18.0, 15.2, 15.0, 0.0], i_s=[0] * 5, i_f=[0] * 5, x=[1.0] * 5, a=[0] * 5)
    eng = make_engine(engine_name, net, neurons=st, keep_switch_events=True)
    eng.step(tensor([0.0] * 5))
    syn = ee_state(eng)
    # L' = L + dt·(R(L) + f_post·σ_pre):
    # E0→E1: 0.3 + 0.1·(−0.0147 + 0.25) = 0.32353
    # E0→E2: 0.3 + 0.1·(−0.0147 + 0)    = 0.29853
    # E0→E3: 0.3 + 0.1·(−0.0147 − 0.17) = 0.28153
    # E1→E0: 0.7 + 0.1·0.01             = 0.701   (σ_pre = 0: drift only)
    # E2→E3: 0.2 − 0.1·0.0147           = 0.19853 (σ_pre = 0, although f_post ≠ 0)
    expected = {(0, 1): 0.32353, (0, 2): 0.29853, (0, 3): 0.28153, (1, 0): 0.701, (2, 3): 0.19853}
    assert set(syn) == set(expected)
    for key, L in expected.items():
        assert syn[key][1] == pytest.approx(L, abs=TOL), key
    assert {k: b for k, (b, _) in syn.items()} == {(0, 1): 0, (0, 2): 0, (0, 3): 0, (1, 0): 1, (2, 3): 0}
    assert switch_rows(eng) == []


@pytest.mark.parametrize("engine_name", ENGINES)
def test_up_switch(tmp_path, engine_name):
    """E0→E1 fast, depressed, L = 0.39; E0 pulses, E1 at 18 mV (f = +0.25)."""
    net = build(tmp_path, 2, 1, slow={}, fast={(1, 0): 0.03}, l={(1, 0): 0.39})
    st = state(v=[25.0, 18.0, 0.0], i_s=[0] * 3, i_f=[0] * 3, x=[1.0] * 3, a=[0] * 3)
    eng = make_engine(engine_name, net, neurons=st, keep_switch_events=True)
    zero = tensor([0.0] * 3)
    eng.step(zero)  # k = 0
    # L' = 0.39 + 0.1·(−0.0147 + 0.25) = 0.41353 > θ_X = 0.4 ≥ L: up switch at step 0
    assert ee_state(eng) == {(0, 1): (1, pytest.approx(0.41353, abs=TOL))}
    assert switch_rows(eng) == [(0, 0, 1, +1)]
    # the current of step 0 used J(t_k) = J_d: i_f'[1] = 0.03·1
    assert eng.neurons.i_f[1].item() == pytest.approx(0.03, abs=TOL)
    eng.step(zero)  # k = 1
    # now J_p, still fast: s0 = x0' = 1 − 0.45 = 0.55 -> i_f''[1] = 0.21·0.55 = 0.1155, i_s stays 0
    assert eng.neurons.i_f[1].item() == pytest.approx(0.1155, abs=TOL)
    assert eng.neurons.i_s[1].item() == 0.0
    # v1' = 18 + 0.1·(−0.9) = 17.91 (still LTP): L'' = 0.41353 + 0.1·(0.01 + 0.25) = 0.43953
    assert ee_state(eng) == {(0, 1): (1, pytest.approx(0.43953, abs=TOL))}
    assert switch_rows(eng) == [(0, 0, 1, +1)]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_down_switch(tmp_path, engine_name):
    """E0→E1 slow, potentiated, L = 0.41; E0 pulses, E1 at 14 mV (f = −0.17)."""
    net = build(tmp_path, 2, 1, slow={(1, 0): 0.21}, fast={}, l={(1, 0): 0.41})
    st = state(v=[25.0, 14.0, 0.0], i_s=[0] * 3, i_f=[0] * 3, x=[1.0] * 3, a=[0] * 3)
    eng = make_engine(engine_name, net, neurons=st, keep_switch_events=True)
    zero = tensor([0.0] * 3)
    eng.step(zero)  # k = 0
    # L' = 0.41 + 0.1·(0.01 − 0.17) = 0.394 < θ_X ≤ L: down switch at step 0
    assert ee_state(eng) == {(0, 1): (0, pytest.approx(0.394, abs=TOL))}
    assert switch_rows(eng) == [(0, 0, 1, -1)]
    # step 0 delivered J_p: i_s'[1] = 0 + 0.01·(0.21·1) = 0.0021
    assert eng.neurons.i_s[1].item() == pytest.approx(0.0021, abs=TOL)
    eng.step(zero)  # k = 1
    # J_d now, slow channel: i_s''[1] = 0.0021 + 0.01·(−0.0021 + 0.03·0.55) = 0.002244
    assert eng.neurons.i_s[1].item() == pytest.approx(0.002244, abs=TOL)
    assert eng.neurons.i_f[1].item() == 0.0
    # v1' = 14 + 0.1·(−0.7) = 13.93: L'' = 0.394 + 0.1·(−0.0147 − 0.17) = 0.37553
    assert ee_state(eng) == {(0, 1): (0, pytest.approx(0.37553, abs=TOL))}
    assert switch_rows(eng) == [(0, 0, 1, -1)]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_J_changes_only_by_crossing(tmp_path, engine_name):
    """Synapses whose L sits on the 'wrong' side of θ_X keep their J unless L crosses θ_X."""
    net = build(
        tmp_path,
        3,
        1,
        slow={(1, 0): 0.03, (2, 1): 0.21},
        fast={(0, 2): 0.03, (2, 0): 0.21},
        # E0→E1 depressed, L 0.6 (pre active, LTP); E1→E2 potentiated, L 0.1 (pre silent);
        # E2→E0 depressed, L 0.9 (pre silent); E0→E2 potentiated, L 0.2 (pre active, LTD)
        l={(1, 0): 0.6, (2, 1): 0.1, (0, 2): 0.9, (2, 0): 0.2},
    )
    # E0 pulses for the 5 steps (a goes 0 → 0.25); E1 at 18 mV; E2 held at 14 mV by I_ext.
    # E2: v' = 14 + 0.1·(−0.7 + 0.7 + input) — i_ext = 0.7 cancels the leak. The only input
    # into E2 is E1→E2 (E1 silent) and E0→E2 fast (0.21·s0), which arrives from step 1 on and
    # pushes v2 up by at most 0.1·0.21 per step: v2 stays ≤ 14 + 4·0.021 < 15, so f2 = −0.17.
    st = state(v=[25.0, 18.0, 14.0, 0.0], i_s=[0] * 4, i_f=[0] * 4, x=[1.0] * 4, a=[0] * 4)
    eng = make_engine(engine_name, net, neurons=st, keep_switch_events=True)
    # E1 held near 18 mV: leak −18/20 = −0.9 cancelled by i_ext = 0.9 (its inputs: E0→E1 slow
    # J_d·s0 = 0.03·s0 into i_s, which adds < 0.001 per step).
    i_ext = tensor([0.0, 0.9, 0.7, 0.0])
    for _ in range(5):
        eng.step(i_ext)
    syn = ee_state(eng)
    # E0→E1: 0.6 + 5·0.1·(0.01 + 0.25) = 0.73, stays depressed (never crossed)
    # E1→E2: 0.1 − 5·0.00147 = 0.09265, stays potentiated
    # E2→E0: 0.9 + 5·0.001 = 0.905, stays depressed
    # E0→E2: 0.2 + 5·0.1·(−0.0147 − 0.17) = 0.2 − 0.09235 = 0.10765, stays potentiated
    assert syn == {
        (0, 1): (0, pytest.approx(0.73, abs=TOL)),
        (1, 2): (1, pytest.approx(0.09265, abs=TOL)),
        (2, 0): (0, pytest.approx(0.905, abs=TOL)),
        (0, 2): (1, pytest.approx(0.10765, abs=TOL)),
    }
    assert switch_rows(eng) == []


@pytest.mark.parametrize("engine_name", ENGINES)
def test_down_switch_by_drift_at_theta_x(tmp_path, engine_name):
    """A potentiated synapse at L = θ_X exactly with a silent pre: R = β − α < 0 takes it
    below θ_X in one step, with no Hebbian term: a down switch at step 0."""
    net = build(tmp_path, 2, 1, slow={(1, 0): 0.21}, fast={}, l={(1, 0): 0.4})
    eng = make_engine(engine_name, net, keep_switch_events=True)  # all at rest: σ = 0
    for _ in range(3):
        eng.step(tensor([0.0] * 3))
    # L: 0.4 → 0.4 − 0.00047 = 0.39953 (switch) → then −0.00147 per step: 0.39659
    assert ee_state(eng) == {(0, 1): (0, pytest.approx(0.39659, abs=TOL))}
    assert switch_rows(eng) == [(0, 0, 1, -1)]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_switches_from_exactly_theta_x_with_active_pre(tmp_path, engine_name):
    """L = θ_X exactly counts as both 'L ≤ θ_X' (up) and 'L ≥ θ_X' (down)."""
    net = build(tmp_path, 3, 1, slow={(1, 0): 0.21}, fast={(2, 0): 0.03}, l={(1, 0): 0.4, (2, 0): 0.4})
    # E0 pulses; E1 at 16 mV (f = 0), E2 at 18 mV (f = +0.25)
    st = state(v=[25.0, 16.0, 18.0, 0.0], i_s=[0] * 4, i_f=[0] * 4, x=[1.0] * 4, a=[0] * 4)
    eng = make_engine(engine_name, net, neurons=st, keep_switch_events=True)
    eng.step(tensor([0.0] * 4))
    # E0→E1 (potentiated): 0.4 + 0.1·(0.01 − 0.0147 + 0) = 0.39953 < θ_X: down
    # E0→E2 (depressed):   0.4 + 0.1·(−0.0047 + 0.25) = 0.42453 > θ_X: up
    assert ee_state(eng) == {(0, 1): (0, pytest.approx(0.39953, abs=TOL)), (0, 2): (1, pytest.approx(0.42453, abs=TOL))}
    assert switch_rows(eng) == [(0, 0, 1, -1), (0, 0, 2, +1)]


@pytest.mark.parametrize("engine_name", ENGINES)
def test_up_switch_by_drift_at_theta_x_when_beta_exceeds_alpha(tmp_path, engine_name):
    """α = 0.01 < β = 0.0147 is a valid config. At L = θ_X exactly R = β − α = +0.0047, so a
    depressed synapse with a silent pre crosses upward: L 0.4 → 0.40047, J' = J_p.
    (The lazy sparse engine must catch this upward crossing in its drift catch-up too.)"""
    net = build(
        tmp_path,
        2,
        1,
        slow={(1, 0): 0.03},
        fast={},
        l={(1, 0): 0.4},
        overrides=("plasticity.alpha=0.01", "plasticity.beta=0.0147"),
    )
    eng = make_engine(engine_name, net, keep_switch_events=True)
    for _ in range(2):
        eng.step(tensor([0.0] * 3))
    # 0.4 + 0.00047 = 0.40047, then + 0.00147 = 0.40194
    assert ee_state(eng) == {(0, 1): (1, pytest.approx(0.40194, abs=TOL))}
    assert switch_rows(eng) == [(0, 0, 1, +1)]


def _bounds_net(tmp_path: Path, *overrides: str) -> Network:
    # E0 pulses; E1 at 18 (f = +0.25), E2 at 14 (f = −0.17)
    # E0→E1 slow J_p L 0.99; E0→E2 fast J_d L 0.01; E1→E2 fast J_d L 0.0005 (pre silent);
    # E2→E1 slow J_p L 0.9995 (pre silent)
    return build(
        tmp_path,
        3,
        1,
        slow={(1, 0): 0.21, (1, 2): 0.21},
        fast={(2, 0): 0.03, (2, 1): 0.03},
        l={(1, 0): 0.99, (2, 0): 0.01, (2, 1): 0.0005, (1, 2): 0.9995},
        overrides=overrides,
    )


BOUNDS_STATE = dict(v=[25.0, 18.0, 14.0, 0.0], i_s=[0] * 4, i_f=[0] * 4, x=[1.0] * 4, a=[0] * 4)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_L_clipped_to_bounds(tmp_path, engine_name):
    eng = make_engine(engine_name, _bounds_net(tmp_path), neurons=state(**BOUNDS_STATE), keep_switch_events=True)
    eng.step(tensor([0.0] * 4))
    # E0→E1: 0.99 + 0.1·(0.01 + 0.25) = 1.016 → 1;  E0→E2: 0.01 + 0.1·(−0.0147 − 0.17) = −0.00847 → 0
    # E1→E2: 0.0005 − 0.00147 = −0.00097 → 0;       E2→E1: 0.9995 + 0.001 = 1.0005 → 1
    assert ee_state(eng) == {(0, 1): (1, 1.0), (0, 2): (0, 0.0), (1, 2): (0, 0.0), (2, 1): (1, 1.0)}


@pytest.mark.parametrize("engine_name", ENGINES)
def test_L_custom_bounds(tmp_path, engine_name):
    net = _bounds_net(tmp_path, "plasticity.bounds=[0.005, 1.0101]")
    eng = make_engine(engine_name, net, neurons=state(**BOUNDS_STATE), keep_switch_events=True)
    eng.step(tensor([0.0] * 4))
    # 1.016 → 1.0101; −0.00847 → 0.005; −0.00097 → 0.005; 1.0005 stays
    syn = ee_state(eng)
    assert syn == {
        (0, 1): (1, 1.0101),
        (0, 2): (0, 0.005),
        (1, 2): (0, 0.005),
        (2, 1): (1, pytest.approx(1.0005, abs=TOL)),
    }


@pytest.mark.parametrize("engine_name", ENGINES)
def test_L_unbounded_with_null_bounds(tmp_path, engine_name):
    eng = make_engine(
        engine_name,
        _bounds_net(tmp_path, "plasticity.bounds=null"),
        neurons=state(**BOUNDS_STATE),
        keep_switch_events=True,
    )
    eng.step(tensor([0.0] * 4))
    syn = ee_state(eng)
    assert syn == {
        (0, 1): (1, pytest.approx(1.016, abs=TOL)),
        (0, 2): (0, pytest.approx(-0.00847, abs=TOL)),
        (1, 2): (0, pytest.approx(-0.00097, abs=TOL)),
        (2, 1): (1, pytest.approx(1.0005, abs=TOL)),
    }
    # 20 more drift-only steps for E1→E2 (pre silent): −0.00097 − 20·0.00147 = −0.03037
    for _ in range(20):
        eng.step(tensor([0.0] * 4))
    assert ee_state(eng)[(1, 2)][1] == pytest.approx(-0.03037, abs=TOL)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_plasticity_disabled_leaves_L_and_J(tmp_path, engine_name):
    # E0→E1 depressed at L 0.39 would switch up in one step (see test_up_switch);
    # E0→E2 potentiated at L 0.41 would switch down; E1→E2 would drift.
    net = build(
        tmp_path,
        3,
        1,
        slow={(1, 0): 0.03},
        fast={(2, 0): 0.21, (2, 1): 0.03},
        l={(1, 0): 0.39, (2, 0): 0.41, (2, 1): 0.5},
        overrides=("plasticity.enabled=false",),
    )
    st = state(v=[25.0, 18.0, 14.0, 0.0], i_s=[0] * 4, i_f=[0] * 4, x=[1.0] * 4, a=[0] * 4)
    eng = make_engine(engine_name, net, neurons=st, keep_switch_events=True)
    for _ in range(4):
        eng.step(tensor([0.0] * 4))
    assert ee_state(eng) == {(0, 1): (0, 0.39), (0, 2): (1, 0.41), (1, 2): (0, 0.5)}
    assert switch_rows(eng) == []
    # J unchanged: the last step (k = 3) delivered J_p·s0 to E2 through the fast channel,
    # s0 = x0 after 3 pulse steps: x 1 → 0.55 → 0.3027250 → 0.16650263...
    #   x' = x + 0.1(1−x)/200 − 0.45x = 0.55x + 0.0005(1−x)
    #   0.55 + 0 = 0.55; 0.55·0.55 + 0.0005·0.45 = 0.302725; 0.55·0.302725 + 0.0005·0.697275
    #   = 0.16649875 + 0.0003486375 = 0.1668473875
    assert eng.neurons.i_f[2].item() == pytest.approx(0.21 * 0.1668473875, abs=TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_engine_neuron_update_is_bitwise_dynamics(dtype: torch.dtype) -> None:
    """The CPU sparse engine's fused numba loops against dynamics.released/hebbian_factor/advance,
    bit for bit, on random states that also sit exactly on every threshold they compare with."""
    from wmnet.engines.cpu_neurons import _advance, _release_and_hebbian

    cfg = load_config(
        None, ["populations.E.size=4000", "populations.I.size=1000", "device=cpu", f"dtype={str(dtype).split('.')[1]}"]
    )
    n, n_e, pl = 5000, 4000, cfg.plasticity
    p = NeuronParams.from_config(cfg, torch.device("cpu"), dtype)
    g = torch.Generator().manual_seed(7)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    v = u(-5, 25).to(dtype)
    # Exactly on θ, v_reset, θ_LTP and θ_LTD (as rounded to the dtype) for some neurons.
    for r, value in enumerate(
        (p.theta, p.v_reset, torch.full((n,), pl.theta_LTP, dtype=dtype), torch.full((n,), pl.theta_LTD, dtype=dtype))
    ):
        v[r::9] = value[r::9]
    a = u(0, 1.3).to(dtype)
    a[5::9] = 1.0
    a[6::9] = 0.0
    st = NeuronState(v, u(-5, 5).to(dtype), u(-5, 5).to(dtype), u(0, 1).to(dtype), a)
    syn_slow, syn_fast, i_ext = (u(-20, 20).to(dtype) for _ in range(3))
    sigma, s = released(st, p)
    f = hebbian_factor(st.v[:n_e], p.theta[:n_e], p.v_reset[:n_e], cfg)
    want = advance(st, sigma, s, syn_slow, syn_fast, i_ext, p)
    c = np.float32 if dtype == torch.float32 else np.float64
    sig, f_got = _release_and_hebbian(
        v.numpy(),
        p.theta.numpy(),
        p.v_reset.numpy(),
        n_e,
        c(pl.theta_LTP),
        c(pl.theta_LTD),
        c(pl.a_H),
        c(pl.b_H),
        c(1),
        c(0),
    )
    assert np.array_equal(sig, sigma.numpy() != 0) and 0 < sig.sum() < n
    assert f_got.dtype == f.numpy().dtype and np.array_equal(f_got.view(np.uint8), f.numpy().view(np.uint8))
    assert (f > 0).any() and (f < 0).any() and (f == 0).any()
    got = _advance(
        v.numpy(),
        st.i_s.numpy(),
        st.i_f.numpy(),
        st.x.numpy(),
        a.numpy(),
        sig,
        syn_slow.numpy(),
        i_ext.numpy(),
        p.theta.numpy(),
        p.v_reset.numpy(),
        p.tau_m.numpy(),
        p.dt_tau_s.numpy(),
        p.pulse_inc.numpy(),
        c(p.dt),
        c(p.U),
        c(p.tau_rec),
        c(1),
        c(0),
    )
    for name, arr in zip(("v", "i_s", "x", "a"), got):
        ref = want[name].numpy()
        assert arr.dtype == ref.dtype, name
        assert np.array_equal(arr.view(np.uint8), ref.view(np.uint8)), f"{name}: not bitwise dynamics.advance"
