"""With plasticity off, wmnet reproduces the seed notebook's trajectory (MODEL.md, departure 1).

The oracle here is a transcription of the notebook's `simulation_step` (in float64), fed with
the same connectivity and the same input array. wmnet must give the same spikes at every step
and v equal to rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wmnet.engines import make_engine
from wmnet.network import Network
from wmnet.stimuli import make_stimulus


class NotebookStep:
    """The seed's step, kept to its own arithmetic (constants as in the notebook's cells)."""

    def __init__(
        self, n_e: int, n_i: int, j_slow: torch.Tensor, j_fast: torch.Tensor, l_mat: torch.Tensor, w_mat: torch.Tensor
    ):
        f64 = torch.float64
        n = n_e + n_i
        ones = torch.ones(n, dtype=f64)
        self.refr = 2 * ones
        self.tau_m = torch.cat((20 * torch.ones(n_e, dtype=f64), 10 * torch.ones(n_i, dtype=f64)))
        self.v_th = 20 * ones
        self.v_reset = torch.cat((15 * torch.ones(n_e, dtype=f64), 10 * torch.ones(n_i, dtype=f64)))
        self.tau_s = 10 * ones
        self.dt = 0.1
        self.j_slow, self.j_fast, self.l, self.w = j_slow, j_fast, l_mat, w_mat
        self.u_slow, self.u_fast = (j_slow != 0).to(f64), (j_fast != 0).to(f64)

    def __call__(self, v, i_s, i_f, i_e, x, a):  # noqa: ANN001, ANN204
        dt = self.dt
        sigma_v = (v >= self.v_th).to(torch.float64)
        x_sigma_v = x * sigma_v
        i_s_new = i_s + (dt / self.tau_s) * (-i_s + self.j_slow @ x_sigma_v)
        i_f_new = self.j_fast @ x_sigma_v
        i_t = i_s + i_f + i_e
        da = (1 / self.refr) * dt * (v >= self.v_th)
        dv = (-v / self.tau_m + i_t) * dt * (v <= self.v_th)
        a_new = torch.zeros_like(a) + (a + da) * (a < 1)
        v_new = self.v_reset * (a >= 1) + (v + dv) * (a < 1)
        x_new = x + (dt * ((1 - x) / 200) - 0.45 * x_sigma_v)
        # Plasticity as the notebook does it: L' is computed but never carried, so J never moves.
        # (The notebook's default dtype is the run's; here float64, hence the casts.)
        r = (-0.0147 * ((0.4 - self.l) >= 0) + 0.01 * ((self.l - 0.4) >= 0)).double()
        f = (0.25 * (17.5 <= v) * (v <= self.v_th) - 0.17 * (v <= 15.5) * (v <= self.v_reset)).double()
        h = f[:, None] @ sigma_v[None, :]
        l_new = self.l + dt * self.w * (r + h)
        for j in (self.j_fast, self.j_slow):
            up = (self.l <= 0.4) * (0.4 < l_new)
            down = (self.l >= 0.4) * (0.4 > l_new)
            j.copy_((0.21 * up + 0.03 * down + j * (1 - (up + down).int())) * (j != 0))
        return v_new, i_s_new, i_f_new, x_new, a_new, sigma_v


@pytest.mark.parametrize("engine", ["reference", "sparse"])
def test_plasticity_off_reproduces_notebook(small_config, tmp_path: Path, engine: str) -> None:
    cfg = small_config("dtype=float64", "duration=200", "plasticity.enabled=false")
    net = Network.build(cfg)
    n, n_e, steps = net.n, net.n_E, cfg.n_steps
    # The same input for both: the seed's sinusoid, saved as the notebook's I_EXT array.
    sinus = make_stimulus(cfg, net.device, net.dtype)
    i_ext = torch.stack([sinus(k) for k in range(steps)], dim=1)  # (N, steps)
    np.save(tmp_path / "i_ext.npy", i_ext.numpy())
    stim = make_stimulus(cfg, net.device, net.dtype, tmp_path / "i_ext.npy")

    j_slow, j_fast = net.connectivity.to_dense(cfg, torch.float64)
    post, pre = net.connectivity.ee_indices()
    l_mat = torch.zeros(n, n, dtype=torch.float64)
    l_mat[post, pre] = net.connectivity.initial.L
    w_mat = torch.zeros(n, n, dtype=torch.float64)
    w_mat[post, pre] = 1
    nb = NotebookStep(n_e, n - n_e, j_slow.clone(), j_fast.clone(), l_mat, w_mat)

    eng = make_engine(engine, net)
    v = torch.zeros(n, dtype=torch.float64)
    i_s, i_f, a = v.clone(), v.clone(), v.clone()
    x = torch.ones(n, dtype=torch.float64)
    n_on = 0
    for k in range(steps):
        v, i_s, i_f, x, a, sigma_nb = nb(v, i_s, i_f, i_ext[:, k], x, a)
        sigma = eng.step(stim(k))
        assert torch.equal(sigma, sigma_nb.bool()), f"spikes differ at step {k}"
        n_on += int(sigma.sum())
        assert (eng.neurons.v - v).abs().max().item() <= 1e-12
    assert n_on > 0.1 * n * steps
    assert torch.equal(nb.j_slow, j_slow) and torch.equal(nb.j_fast, j_fast)  # notebook J frozen
    for name, ours in (("x", x), ("a", a), ("i_f", i_f), ("i_s", i_s)):
        assert (eng.neurons[name] - ours).abs().max().item() <= 1e-12, name
