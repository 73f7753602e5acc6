"""The mean-field equations of this model (docs/meanfield.md derives every term).

Everything here is plain numpy, vectorised over any leading axes, in float64. Rates are in
1/ms inside (Hz only at the API boundary), potentials in mV, currents in mV/ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
from scipy.special import erf, erfcx

# Fourcaud & Brunel (2002): filtered noise moves θ and V_r up by C·σ·√(τ_s/τ_m), C = |ζ(1/2)|/√2.
ZETA_HALF = 1.4603545088095868  # |ζ(1/2)|
FB_C = ZETA_HALF / np.sqrt(2.0)
# Checking v ≥ θ only on the dt grid misses excursions between steps (Siegmund's continuity
# correction: the barrier moves up by |ζ(1/2)|/√(2π) per-step standard deviations). In the
# Fourcaud–Brunel form that is a filter time constant of dt/π.
GRID_TAU_FACTOR = 1.0 / np.pi

# How the slow current's noise enters the rate (docs/meanfield.md, "The slow current's noise"):
# "fourcaud-brunel" (the default): as white noise in σ with the Fourcaud–Brunel shift C·√(D_slow·τ_s),
# the limit τ_s ≪ τ_m; "quasi-static": as a slowly wandering mean, a Gaussian spread of μ with the free
# membrane's variance τ_m²·D_slow/(2(τ_s + τ_m)), the rate averaged over it, the limit τ_s ≫ τ_m. For a
# single neuron with white noise beside a 100 ms slow current the second is right within 5% and the
# first is 2-100x low; in the networks the simulated bistability boundary lies between the two.
SlowNoise = Literal["quasi-static", "fourcaud-brunel"]
SLOW_NOISE: tuple[SlowNoise, ...] = ("quasi-static", "fourcaud-brunel")
# Gauss–Hermite nodes (probabilists') for the average over the spread: the rate is smooth in μ, and
# 11 nodes put it within 0.2% of 31 nodes at spreads up to 3 mV.
_HZ, _HW = np.polynomial.hermite_e.hermegauss(11)
_HW = _HW / _HW.sum()

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(40)
CV_TABLE_STEP = 2e-3  # grid of the CV tables (linear interpolation error ~1e-6 relative)


def _interp_uniform(x: np.ndarray, x0: float, table: np.ndarray) -> np.ndarray:
    """Linear interpolation in a table sampled every CV_TABLE_STEP from x0 (clamped at the ends)."""
    pos = np.clip((x - x0) / CV_TABLE_STEP, 0.0, table.size - 1.000001)
    i = pos.astype(np.int64)
    w = pos - i
    return table[i] * (1 - w) + table[i + 1] * w


def _gl(f_of_t: np.ndarray, length: np.ndarray) -> np.ndarray:
    """∫_0^length f dt by Gauss–Legendre, f_of_t already evaluated at the mapped nodes (axis −1)."""
    return 0.5 * length * (f_of_t * _WEIGHTS).sum(axis=-1)


def _nodes(length: np.ndarray) -> np.ndarray:
    """The Gauss–Legendre nodes mapped onto [0, length], shape (..., nodes)."""
    return 0.5 * length[..., None] * (_NODES + 1.0)


def siegert_integral(y_r: np.ndarray, y_th: np.ndarray) -> np.ndarray:
    """∫_{y_r}^{y_th} e^{u²}(1 + erf u) du = ∫ erfcx(−u) du, for y_r < y_th (may overflow to inf).

    Split at 0: below, erfcx(|u|) ≤ 1 is smooth; above, the integrand grows as 2e^{u²}, so it is
    written e^{b²}·∫_0^{b−a} e^{−2bt+t²}(1 + erf(b−t)) dt (u = b − t) and the t-range is cut where
    the integrand has decayed by e^{-30}.
    """
    y_r, y_th = np.broadcast_arrays(np.asarray(y_r, float), np.asarray(y_th, float))
    # Negative part: u in [y_r, min(y_th, 0)] → w = −u in [max(−y_th, 0), −y_r].
    lo_w = np.maximum(-y_th, 0.0)
    hi_w = np.maximum(-y_r, lo_w)
    len_n = hi_w - lo_w
    w = lo_w[..., None] + _nodes(len_n)
    neg = _gl(erfcx(w), len_n)
    # Positive part: u in [max(y_r, 0), y_th].
    a = np.maximum(y_r, 0.0)
    b = np.maximum(y_th, a)
    length = np.minimum(b - a, 30.0 / (2.0 * b + 1e-300))
    t = _nodes(length)
    bb = b[..., None]
    pos = _gl(np.exp(-2.0 * bb * t + t * t) * (1.0 + erf(bb - t)), length)
    with np.errstate(over="ignore", invalid="ignore"):
        return neg + np.where(pos > 0, np.exp(b * b) * pos, 0.0)


@lru_cache(maxsize=1)
def _cv_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """F(x) = ∫_{−∞}^x e^{y²}(1 + erf y)² dy in two bounded forms, on a 0.001 grid:
    P(x) = e^{x²}∫_{−∞}^x e^{−y²}erfcx(−y)² dy on x ≤ 0 and G(x) = e^{−x²}F(x) on x ≥ 0 (~2/x),
    each by an exponential integrator of its linear ODE (P' = 2xP + erfcx(−x)², G' = (1 + erf x)² − 2xG)."""
    h = CV_TABLE_STEP
    xn = np.arange(-40.0, h / 2, h)
    P = np.zeros_like(xn)
    mid = xn[:-1] + h / 2
    src_n = erfcx(-mid) ** 2 * np.exp(xn[1:] ** 2 - mid**2)
    dec_n = np.exp(xn[1:] ** 2 - xn[:-1] ** 2)
    for i in range(xn.size - 1):  # P(x+h) = P(x)·e^{(x+h)²−x²} + the source over the step
        P[i + 1] = P[i] * dec_n[i] + h * src_n[i]
    xp = np.arange(0.0, 20.0 + h / 2, h)
    G = np.empty_like(xp)
    G[0] = P[-1]
    src_p = (1 + erf(xp[:-1] + h / 2)) ** 2 * np.exp((xp[:-1] + h / 2) ** 2 - xp[1:] ** 2)
    dec_p = np.exp(xp[:-1] ** 2 - xp[1:] ** 2)
    for i in range(xp.size - 1):
        G[i + 1] = G[i] * dec_p[i] + h * src_p[i]
    return xn, P, xp, G


def lif_rate_cv(
    mu: np.ndarray, sigma: np.ndarray, tau_m: np.ndarray, theta: np.ndarray, v_reset: np.ndarray, t_ref: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rate (1/ms) and the interspike intervals' coefficient of variation of the LIF neuron of
    `siegert` (Brunel 2000: CV² = 2π(ντ_m)² ∫_{y_r}^{y_θ} e^{x²} dx ∫_{−∞}^x e^{y²}(1 + erf y)² dy)."""
    sigma = np.maximum(sigma, 1e-6)
    y_r, y_th = np.broadcast_arrays((v_reset - mu) / sigma, (theta - mu) / sigma)
    y_r, y_th = np.asarray(y_r, float), np.asarray(y_th, float)
    xn, P, xp, G = _cv_tables()
    # Rate pieces, as siegert_integral: below 0 and above 0 (scaled by e^{−b²}).
    lo_w = np.maximum(-y_th, 0.0)
    len_n = np.maximum(-y_r, lo_w) - lo_w
    w = lo_w[..., None] + _nodes(len_n)
    neg = _gl(erfcx(w), len_n)
    neg_cv = _gl(_interp_uniform(-w, float(xn[0]), P), len_n)
    a = np.maximum(y_r, 0.0)
    b = np.maximum(y_th, a)
    bb = b[..., None]
    length = np.minimum(b - a, 30.0 / (2.0 * b + 1e-300))
    t = _nodes(length)
    pos = _gl(np.exp(-2.0 * bb * t + t * t) * (1.0 + erf(bb - t)), length)
    length2 = np.minimum(b - a, 30.0 / (4.0 * b + 1e-300))
    t2 = _nodes(length2)
    x2 = bb - t2
    g = np.where(x2 < xp[-1], _interp_uniform(x2, 0.0, G), 2.0 / np.maximum(x2, 1e-300))
    pos_cv = _gl(np.exp(-4.0 * bb * t2 + 2 * t2 * t2) * g, length2)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        eb = np.exp(-b * b)
        nu = eb / (t_ref * eb + tau_m * np.sqrt(np.pi) * (neg * eb + pos))
        nu = np.where(np.isfinite(nu), nu, 0.0)
        denom = t_ref * eb / tau_m + np.sqrt(np.pi) * (neg * eb + pos)
        cv2 = 2 * np.pi * ((nu * tau_m) ** 2 * neg_cv + np.where(pos_cv > 0, pos_cv / denom**2, 0.0))
    return nu, np.sqrt(np.maximum(cv2, 0.0))


def siegert(
    mu: np.ndarray,
    sigma: np.ndarray,
    tau_m: np.ndarray | float,
    theta: np.ndarray | float,
    v_reset: np.ndarray | float,
    t_ref: np.ndarray | float,
) -> np.ndarray:
    """Rate (1/ms) of a LIF neuron τ_m dV/dt = −V + μ + σ√τ_m ξ with threshold θ (mV), reset
    v_reset (mV), refractory time t_ref (ms); μ, σ in mV. 1/ν = t_ref + τ_m√π ∫ erfcx(−u) du."""
    sigma = np.maximum(sigma, 1e-6)
    integral = siegert_integral((v_reset - mu) / sigma, (theta - mu) / sigma)
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (t_ref + tau_m * np.sqrt(np.pi) * integral)


def spread_rate(
    mu: np.ndarray,
    sigma: np.ndarray,
    spread: np.ndarray,
    tau_m: np.ndarray | float,
    theta: np.ndarray | float,
    v_reset: np.ndarray | float,
    t_ref: np.ndarray | float,
) -> np.ndarray:
    """`siegert` averaged over a Gaussian spread of μ with standard deviation `spread` (mV): the rate
    of a neuron whose mean input wanders slowly compared with τ_m (the adiabatic limit)."""
    mu, sigma, spread = np.broadcast_arrays(np.asarray(mu, float), np.asarray(sigma, float), np.asarray(spread, float))
    if not np.any(spread > 0):
        return siegert(mu, sigma, tau_m, theta, v_reset, t_ref)
    args = [np.asarray(a, float)[..., None] for a in (sigma, tau_m, theta, v_reset, t_ref)]
    rates = siegert(mu[..., None] + spread[..., None] * _HZ, *args)
    return rates @ _HW


def pulse_steps(tau_ref: float, dt: float, dtype: str) -> int:
    """Steps with σ = 1 in one pulse, as the engines count them: a grows by (1/τ_ref)·dt (rounded
    to the working dtype) per pulse step until a ≥ 1, and the reset step is one more."""
    np_dtype = np.dtype(dtype)
    inc = np_dtype.type((1 / tau_ref) * dt)
    a, n = np_dtype.type(0), 0
    while a < 1:
        a = np_dtype.type(a + inc)
        n += 1
        if n > 10**7:
            raise ValueError(f"tau_ref = {tau_ref} ms: the pulse never ends in {dtype}")
    return n + 1


@dataclass(eq=False)
class Release:
    """One pulse of n steps under this model's per-step depression (docs/model.md, step 7):
    x_{k+1} = c·x_k + b with c = 1 − U − dt/τ_rec, b = dt/τ_rec while σ = 1. Then
    released Σ_k x_k = A1·x0 + B1 and the resources left after it x_n = A2·x0 + B2."""

    n: int  # pulse steps
    U: float  # fraction of resources used per pulse step
    tau_rec: float  # recovery time constant (ms)
    dt: float  # time step (ms)

    @cached_property
    def coefficients(self) -> tuple[float, float, float, float]:
        b = self.dt / self.tau_rec
        c = 1.0 - self.U - b
        k = np.arange(self.n)
        ck = c**k
        A1 = float(ck.sum())
        B1 = float((b * (1 - ck) / (1 - c)).sum())
        A2 = float(c**self.n)
        B2 = float(b * (1 - c**self.n) / (1 - c))
        return A1, B1, A2, B2

    @cached_property
    def profile_tau(self) -> float:
        """Equivalent filter time (ms) of the release profile x0·c^k over the pulse: the current
        of one spike, spread over n steps, has the variance of white noise filtered with this τ
        (dt·(Σw)²/(2Σw²), less the dt/2 of a single-step kick, which the grid correction holds)."""
        c = 1.0 - self.U - self.dt / self.tau_rec
        w = c ** np.arange(self.n)
        return float(self.dt * max(w.sum() ** 2 / (2 * (w * w).sum()) - 0.5, 0.0))

    def steady_state(
        self, nu: np.ndarray, cv: np.ndarray | float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For pulse onsets at rate ν (1/ms) as a renewal process whose interspike intervals have
        coefficient of variation `cv` (the time off between pulses, 1/ν − n·dt on average, is
        Gamma-distributed; cv = 1: exponential, Poisson apart from the pulse): (X, S, R, R2, xbar)
        with X = E[x0] and S = E[x0²] at pulse onset, R = E[release per pulse], R2 = E[release²],
        xbar = the time-mean x."""
        return _steady_state(
            np.asarray(nu, float), np.asarray(cv, float), *self.coefficients, self.n, self.dt / self.tau_rec, self.dt
        )


def _steady_state(
    nu: np.ndarray,
    cv: np.ndarray,
    A1: np.ndarray | float,
    B1: np.ndarray | float,
    A2: np.ndarray | float,
    B2: np.ndarray | float,
    n: np.ndarray | int,
    b: float,
    dt: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Release.steady_state, broadcast over units (coefficients per unit on the last axis)."""
    kappa = -np.log1p(-b) / dt  # recovery per ms: 1 − x shrinks by (1 − b) per step
    nu = np.clip(nu, 0.0, None)
    off = np.clip(1.0 - nu * n * dt, 1e-12, None)  # ν × mean time off (dimensionless)
    # E[(1−b)^m] = E[e^{−κT}] over the Gamma time off T (shape 1/cv_off², mean off/ν).
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        t_off = np.where(nu > 0, off / np.where(nu > 0, nu, 1.0), np.inf)
        cv_off2 = np.clip((cv / off) ** 2, 1e-4, 1e4)  # the ISI's std is the time off's
        g = np.where(nu > 0, (1 + kappa * t_off * cv_off2) ** (-1 / cv_off2), 0.0)
        g2 = np.where(nu > 0, (1 + 2 * kappa * t_off * cv_off2) ** (-1 / cv_off2), 0.0)
    X = (1 - g + g * B2) / (1 - g * A2)
    S = (1 - 2 * (1 - A2 * X - B2) * g + g2 * ((1 - B2) ** 2 - 2 * (1 - B2) * A2 * X)) / (1 - g2 * A2 * A2)
    R = A1 * X + B1
    R2 = A1 * A1 * S + 2 * A1 * B1 * X + B1 * B1
    # Time mean: (release in the pulse + Σ over the m steps off) / (n + E[m]), times ν.
    y = A2 * X + B2
    xbar = (nu * R + off / dt - nu * (1 - y) * (1 - g) / b) / (nu * n + off / dt)
    return X, S, R, R2, xbar


@dataclass
class Model:
    """M units (prototype groups, nonselective, I), each a homogeneous set of neurons.

    K_*[u, v]: expected slow / fast inputs into one neuron of u from the neurons of v;
    J_*[u, v], J2_*[u, v]: mean and mean square efficacy (mV/ms) of those synapses.
    """

    names: list[str]
    size: np.ndarray  # neurons per unit
    is_e: np.ndarray  # bool per unit
    tau_m: np.ndarray  # ms
    theta: np.ndarray  # mV
    v_reset: np.ndarray  # mV
    t_ref: np.ndarray  # pulse duration n·dt (ms)
    tau_s: np.ndarray  # slow current time constant of the post unit (ms)
    K_slow: np.ndarray
    K_fast: np.ndarray
    J_slow: np.ndarray  # mean efficacy of the slow synapses (mV/ms)
    J_fast: np.ndarray  # mean efficacy of the fast synapses (mV/ms)
    J2_slow: np.ndarray  # mean square efficacies, (mV/ms)²
    J2_fast: np.ndarray
    # The fraction of each channel's input variance that is private to the neuron, 1 − q (q: the
    # probability that a given pre neuron is an input): the part common to all neurons is the
    # population activity, constant in a stationary state (docs/meanfield.md, "Dense networks").
    private_slow: np.ndarray
    private_fast: np.ndarray
    ext_mean: np.ndarray  # mV/ms
    ext_D: np.ndarray  # white-noise intensity of the external current, (mV/ms)²·ms
    ext_tau: np.ndarray  # its equivalent filter time (ms)
    release: list[Release]  # per unit (its pulse length)
    dt: float  # ms
    slow_noise: SlowNoise = "fourcaud-brunel"

    @cached_property
    def _coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(A1, B1, A2, B2, n) per unit, for the vectorised steady state."""
        a1, b1, a2, b2 = np.array([r.coefficients for r in self.release]).T
        return a1, b1, a2, b2, np.array([r.n for r in self.release])

    @cached_property
    def _tau_profile(self) -> np.ndarray:
        return np.array([r.profile_tau for r in self.release])

    def inputs(
        self, nu: np.ndarray, poisson: bool = False, rows: np.ndarray | None = None, block: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """μ, σ (mV), the Fourcaud–Brunel shift (mV), the slow current's spread of μ (mV; 0 with
        "fourcaud-brunel") and the ISI CV of the post units `rows` (all by default), and x of every
        unit, for rates ν (1/ms), shape (..., M). Depression depends on how regular the presynaptic
        neurons fire: their CV comes from each unit's own μ and σ computed with Poisson firing (one
        pass; `poisson`: CV = 1 throughout), at the mean μ (the spread left out). With `rows`,
        `block[v]` names the row whose neurons unit v's are interchangeable with (same CV)."""
        nu = np.clip(np.asarray(nu, float), 0.0, None)
        M = len(self.names)
        rows = np.arange(M) if rows is None else np.asarray(rows)
        block = np.arange(M) if block is None else np.asarray(block)
        cv = np.ones_like(nu)
        if not poisson:
            first = self._inputs(nu, cv, rows)
            _, cv_rows = lif_rate_cv(
                first["mu"],
                first["sigma"],
                self.tau_m[rows],
                self.theta[rows] + first["shift"],
                self.v_reset[rows] + first["shift"],
                self.t_ref[rows],
            )
            cv = cv_rows[..., block]
        out = self._inputs(nu, cv, rows)
        out["cv"] = cv[..., rows]
        return out

    def _inputs(self, nu: np.ndarray, cv: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        r0 = self.release[0]
        _, _, R, R2, xbar = _steady_state(nu, cv, *self._coefficients, r0.dt / r0.tau_rec, r0.dt)
        dt = self.dt
        drive = nu * dt * R  # mean released resource per ms of one presynaptic neuron
        # A spike of a neuron with release R moves the post current's integral by J·dt·R (mV), so
        # Poisson spikes give a white-noise intensity ν·(J·dt)²·E[R²] per synapse.
        drive2 = nu * dt * dt * R2
        Ks, Kf = self.K_slow[rows], self.K_fast[rows]
        mean_I = drive @ (Ks * self.J_slow[rows] + Kf * self.J_fast[rows]).T + self.ext_mean[rows]  # mV/ms
        D_slow = drive2 @ (Ks * self.J2_slow[rows] * self.private_slow[rows]).T  # white-noise intensity, (mV/ms)²·ms
        fast = Kf * self.J2_fast[rows] * self.private_fast[rows]
        D_fast = drive2 @ fast.T
        tau_m = self.tau_m[rows]
        mu = tau_m * mean_I
        D_white = D_fast + self.ext_D[rows]
        # Filter times weighted by each source's share of the noise (docs/meanfield.md).
        Dtau_white = drive2 @ (fast * self._tau_profile).T + self.ext_D[rows] * self.ext_tau[rows]
        tau_s = self.tau_s[rows]
        if self.slow_noise == "quasi-static":
            # The slow current wanders on τ_s: a spread of the mean input, not a part of σ.
            D, Dtau = D_white, Dtau_white
            spread = tau_m * np.sqrt(np.maximum(D_slow, 0.0) / (2.0 * (tau_s + tau_m)))
        else:
            D, Dtau = D_white + D_slow, Dtau_white + D_slow * tau_s
            spread = np.zeros_like(mu)
        sigma = np.sqrt(np.maximum(tau_m * D, 0.0))
        shift = FB_C * np.sqrt(np.maximum(Dtau + D * GRID_TAU_FACTOR * dt, 0.0))  # = C·σ·√(τ_eff/τ_m)
        return {"mu": mu, "sigma": sigma, "shift": shift, "spread": spread, "x": xbar}

    def phi(self, nu: np.ndarray, rows: np.ndarray | None = None, block: np.ndarray | None = None) -> np.ndarray:
        """Output rates (1/ms) of the units `rows` (all by default) for input rates ν (1/ms), shape (..., M)."""
        inp = self.inputs(nu, rows=rows, block=block)
        r = slice(None) if rows is None else np.asarray(rows)
        return spread_rate(
            inp["mu"],
            inp["sigma"],
            inp["spread"],
            self.tau_m[r],
            self.theta[r] + inp["shift"],
            self.v_reset[r] + inp["shift"],
            self.t_ref[r],
        )

    def jacobian(self, nu: np.ndarray, rel: float = 1e-5) -> np.ndarray:
        """∂Φ_u/∂ν_v (central differences, all columns in one vectorised call)."""
        M = nu.size
        h = np.maximum(np.abs(nu) * rel, 1e-9)
        pts = np.concatenate([nu + np.diag(h), nu - np.diag(h)])
        out = self.phi(pts)
        return ((out[:M] - out[M:]) / (2 * h[:, None])).T
