"""Per-neuron dynamics of one Euler step (steps 1–7) and the Hebbian factor (step 8).

One step t_k → t_{k+1}, as specified in docs/model.md ("One step"); every right-hand side uses
the state at t_k (v, i_s, i_f, x, a: `wmnet.model.STATE_VARIABLES`; L and J for E→E):

    1. σ_j  = [v_j ≥ θ_j]                                    is neuron j in a pulse?
    2. s_j  = x_j · σ_j                                      resources released
    3. i_s' = i_s + (dt/τ_s) · (−i_s + Σ_j J^slow_ij s_j)    slow current
    4. i_f' = Σ_j J^fast_ij s_j                              fast current
    5. I    = i_s + i_f + I_ext(t_k)                         OLD currents
    6. a'   = (a + (dt/τ_ref)·σ) · [a < 1]
       v'   = v_reset·[a ≥ 1] + (v + dt·(−v/τ_m + I)·[v ≤ θ]) · [a < 1]
    7. x'   = x + dt·(1 − x)/τ_rec − U·s
    8. (E→E, i post, j pre)
       R(L) = −α·[L ≤ θ_X] + β·[L ≥ θ_X]
       f_i  = a_H·[θ_LTP ≤ v_i ≤ θ_i] − b_H·[v_i ≤ θ_LTD]·[v_i ≤ v_reset,i]
       L'   = clip(L + dt·(R(L) + f_i·σ_j), L_min, L_max)    (no clip when bounds are null)
    9. J'   = J_p if L ≤ θ_X < L';   J_d if L ≥ θ_X > L';   J otherwise (same channel)

Pure functions on tensors, shared by every engine, so the neuron arithmetic is identical
everywhere; engines differ only in how they compute the synaptic sums Σ_j J_ij s_j and L
(steps 3–4, 8–9). The operation order follows the seed notebook so that float64 runs
reproduce it to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from wmnet import model
from wmnet.config import Config

VARIABLES = model.VARIABLES


@dataclass
class NeuronState:
    """State at t_k of every neuron (E first, then I). Resets between trials; L does not.

    One field per `model.STATE_VARIABLES`, in that order (tests/test_schema.py checks it)."""

    v: torch.Tensor  # membrane potential (mV)
    i_s: torch.Tensor  # slow synaptic current (mV/ms)
    i_f: torch.Tensor  # fast synaptic current (mV/ms)
    x: torch.Tensor  # presynaptic resources (fraction, 0..1)
    a: torch.Tensor  # pulse counter: 0 at rest, grows by dt/τ_ref per pulse step

    @classmethod
    def initial(cls, n: int, device: torch.device, dtype: torch.dtype) -> NeuronState:
        """Every neuron at rest: each variable at its `model.STATE_VARIABLES` initial value."""
        return cls(**{s.name: torch.full((n,), s.initial, device=device, dtype=dtype) for s in model.STATE_VARIABLES})

    def clone(self) -> NeuronState:
        return NeuronState(*(getattr(self, f.name).clone() for f in fields(self)))

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, name)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The variables by name, in schema order (the tensors themselves, not copies)."""
        return {name: getattr(self, name) for name in model.VARIABLES}


@dataclass
class NeuronParams:
    """Per-neuron parameter vectors in the working dtype (E first, then I)."""

    theta: torch.Tensor  # threshold θ (mV)
    v_reset: torch.Tensor  # reset potential (mV)
    tau_m: torch.Tensor  # membrane time constant (ms)
    dt_tau_s: torch.Tensor  # dt/τ_s (dimensionless)
    pulse_inc: torch.Tensor  # (1/τ_ref)·dt: increment of a per pulse step
    dt: float  # time step (ms)
    U: float  # resources released per pulse step (fraction)
    tau_rec: float  # resource recovery time constant (ms)

    @classmethod
    def from_config(cls, cfg: Config, device: torch.device, dtype: torch.dtype) -> NeuronParams:
        E, I = cfg.populations.E, cfg.populations.I  # noqa: E741

        def vec(e: float, i: float) -> torch.Tensor:
            # Computed in float64, then rounded once to the working dtype.
            v = torch.cat(
                [torch.full((E.size,), e, dtype=torch.float64), torch.full((I.size,), i, dtype=torch.float64)]
            )
            return v.to(device=device, dtype=dtype)

        return cls(
            theta=vec(E.theta, I.theta),
            v_reset=vec(E.v_reset, I.v_reset),
            tau_m=vec(E.tau_m, I.tau_m),
            dt_tau_s=vec(cfg.dt / E.tau_s, cfg.dt / I.tau_s),
            pulse_inc=vec((1 / E.tau_ref) * cfg.dt, (1 / I.tau_ref) * cfg.dt),
            dt=cfg.dt,
            U=cfg.stp.U,
            tau_rec=cfg.stp.tau_rec,
        )


def released(state: NeuronState, p: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1–2: σ_j = [v_j ≥ θ_j] (as 0/1 in the dtype) and released resources s_j = x_j σ_j."""
    sigma = (state.v >= p.theta).to(state.v.dtype)
    return sigma, state.x * sigma


def advance(
    state: NeuronState,
    sigma: torch.Tensor,
    s: torch.Tensor,
    syn_slow: torch.Tensor,
    syn_fast: torch.Tensor,
    i_ext: torch.Tensor,
    p: NeuronParams,
) -> NeuronState:
    """Steps 3–7, given the synaptic sums syn_* = Σ_j J_ij s_j. Every right side uses t_k values."""
    dtype = state.v.dtype
    i_s_new = state.i_s + p.dt_tau_s * (-state.i_s + syn_slow)  # 3
    i_f_new = syn_fast  # 4
    total = state.i_s + state.i_f + i_ext  # 5: old currents, so a pulse lands one step later
    a_lt_1 = (state.a < 1).to(dtype)  # 6
    a_new = (state.a + p.pulse_inc * sigma) * a_lt_1
    dv = (-state.v / p.tau_m + total) * p.dt * (state.v <= p.theta).to(dtype)
    v_new = p.v_reset * (state.a >= 1).to(dtype) + (state.v + dv) * a_lt_1
    x_new = state.x + (p.dt * ((1 - state.x) / p.tau_rec) - p.U * s)  # 7
    return NeuronState(v_new, i_s_new, i_f_new, x_new, a_new)


def hebbian_factor(v: torch.Tensor, theta: torch.Tensor, v_reset: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Step 8's f_i = a_H·[θ_LTP ≤ v ≤ θ] − b_H·[v ≤ θ_LTD]·[v ≤ v_reset], per post neuron (1/ms).

    For E cells the LTD gate is v ≤ 15 (v_reset), not 15.5: both conditions must hold.
    """
    pl = cfg.plasticity
    dtype = v.dtype
    ltp = ((pl.theta_LTP <= v) & (v <= theta)).to(dtype)
    ltd = ((v <= pl.theta_LTD) & (v <= v_reset)).to(dtype)
    return ltp * pl.a_H - ltd * pl.b_H


def drift(L: torch.Tensor, cfg: Config) -> torch.Tensor:
    """R(L) = −α·[L ≤ θ_X] + β·[L ≥ θ_X]; at L = θ_X both terms apply (R = β − α)."""
    pl = cfg.plasticity
    dtype = L.dtype
    return (L <= pl.theta_X).to(dtype) * (-pl.alpha) + (L >= pl.theta_X).to(dtype) * pl.beta
