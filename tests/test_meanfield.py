"""wmnet.meanfield: the Siegert rate, the STD steady state and the fixed points against direct
simulation of this model's per-step dynamics, and `wmnet meanfield`'s bad inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from wmnet import meanfield
from wmnet.cli import main
from wmnet.config import Config, load_config
from wmnet.errors import WmnetError
from wmnet.meanfield.theory import FB_C, GRID_TAU_FACTOR, Release, pulse_steps, siegert, siegert_integral

# The CPU working-memory network as it was when these tests were written (configs/ may change):
# 2000 E + 500 I, p = 0.8, five groups of 200 E neurons, background input near threshold.
WM_SETS = [
    "populations.E.size=2000",
    "populations.I.size=500",
    "projections.E->E.p=0.8",
    "projections.E->E.J_p=0.5",
    "projections.E->I.p=0.8",
    "projections.I->E.p=0.8",
    "projections.I->E.efficacy=-0.54",
    "projections.I->I.p=0.8",
    "background.E.mean=1.45",
    "background.E.std=1.5",
    "background.I.mean=1.8",
    "background.I.std=1.0",
    "background.grain=1.0",
    "stimulus.kind=background",
    "stp.U=0.05",
    "groups.prototypes={count: 5, fraction: 0.1}",
]


def wm(extra: list[str] | None = None) -> Config:
    return load_config(None, WM_SETS + (extra or []))


@pytest.fixture
def wm_path(tmp_path: Path) -> Path:
    path = tmp_path / "wm.yaml"
    path.write_text(wm().to_yaml())
    return path


def simulate_lif(
    mu: float,
    sigma: float,
    tau_m: float,
    theta: float,
    v_reset: float,
    n_pulse: int,
    dt: float,
    n: int,
    steps: int,
    seed: int,
) -> float:
    """Rate (1/ms) of n independent neurons stepped as the engines do (MODEL.md step 6): Euler
    with white-noise current (intensity σ²/τ_m), v frozen for the n_pulse steps with σ = 1, then reset."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(v_reset, theta, n)
    count = np.zeros(n, dtype=np.int64)  # pulse steps left (0: integrating)
    onsets = 0
    noise = sigma * np.sqrt(dt / tau_m)  # per-step std of the v increment from the white current
    for _ in range(steps):
        on = count > 0
        count[on] -= 1
        v[on & (count == 0)] = v_reset
        free = ~on
        v[free] += dt * (mu - v[free]) / tau_m + noise * rng.standard_normal(int(free.sum()))
        new = free & (v >= theta)
        onsets += int(new.sum())
        count[new] = n_pulse
    return onsets / (n * steps * dt)


@pytest.mark.parametrize("mu, sigma", [(17.0, 4.0), (19.0, 2.0), (22.0, 3.0)])
def test_siegert_rate_matches_simulated_lif_neurons(mu: float, sigma: float) -> None:
    dt, tau_m, theta, v_reset, n_pulse = 0.1, 20.0, 20.0, 15.0, 21
    sim = simulate_lif(mu, sigma, tau_m, theta, v_reset, n_pulse, dt, n=1000, steps=20000, seed=1)
    shift = FB_C * sigma * np.sqrt(GRID_TAU_FACTOR * dt / tau_m)  # the grid's continuity correction
    pred = siegert(np.array(mu), np.array(sigma), tau_m, theta + shift, v_reset + shift, n_pulse * dt)
    plain = siegert(np.array(mu), np.array(sigma), tau_m, theta, v_reset, n_pulse * dt)
    # ~20000 onsets at the lowest rate: 1% statistical error; the corrected rate is within 5%.
    assert abs(pred / sim - 1) < 0.05, (sim * 1000, pred * 1000)
    # The correction matters: the uncorrected formula is further off (it overestimates).
    assert abs(plain / sim - 1) > abs(pred / sim - 1)


def test_siegert_integral_and_deterministic_limit() -> None:
    from scipy.integrate import quad
    from scipy.special import erfcx

    for a, b in [(-3.0, 1.0), (-12.0, -2.0), (0.5, 4.0), (1.0, 7.0), (-1.0, 3.0)]:
        exact = quad(lambda u: erfcx(-u), a, b, limit=200)[0]
        assert siegert_integral(np.array(a), np.array(b)) == pytest.approx(exact, rel=1e-6)
    # σ → 0 above threshold: 1/ν = t_ref + τ_m ln((μ − V_r)/(μ − θ)) (by hand: 2.1 + 20 ln 3).
    nu = siegert(np.array(25.0), np.array(1e-4), 20.0, 20.0, 15.0, 2.1)
    assert 1 / nu == pytest.approx(2.1 + 20 * np.log(10 / 5), rel=1e-4)


def test_pulse_length_as_the_engines_count_it() -> None:
    assert pulse_steps(2.0, 0.1, "float32") == 21
    assert pulse_steps(2.0, 0.1, "float64") == 21
    assert pulse_steps(2.0, 0.1, "float16") == 22  # MODEL.md: 22 steps in float16


def test_release_coefficients_by_hand() -> None:
    # U = 0.45, τ_rec = 200, 21 steps: c = 1 − 0.45 − 0.0005 = 0.5495, released ≈ x0/(1 − c).
    r = Release(21, 0.45, 200.0, 0.1)
    A1, B1, A2, B2 = r.coefficients
    c = 0.5495
    assert A1 == pytest.approx((1 - c**21) / (1 - c), rel=1e-12)
    assert A1 == pytest.approx(2.2198, abs=1e-3)  # WORKING_MEMORY.md: ≈ 2.22·x0
    assert A2 == pytest.approx(c**21, rel=1e-12)
    assert B2 == pytest.approx(0.0005 * (1 - c**21) / (1 - c), rel=1e-12)


@pytest.mark.parametrize(
    "U, rate_hz, regular", [(0.45, 5.0, False), (0.05, 20.0, False), (0.05, 60.0, False), (0.05, 20.0, True)]
)
def test_std_steady_state_matches_the_per_step_update(U: float, rate_hz: float, regular: bool) -> None:
    """x' = x + dt(1 − x)/τ_rec − U·s over many neurons whose pulses start at random (Poisson
    off-times, CV = 1) or regularly (CV = 0), against Release.steady_state: time-mean x and
    resources released per pulse."""
    dt, tau_rec, n_pulse, n, steps = 0.1, 200.0, 21, 2000, 40000
    mean_off = 1000 / rate_hz - n_pulse * dt  # ms
    hazard = 1 - np.exp(-dt / mean_off)
    rng = np.random.default_rng(2)
    x = np.ones(n)
    left = np.zeros(n, dtype=np.int64)
    wait = rng.integers(0, round(mean_off / dt), n)  # regular: steps off left, random phases
    released = x_sum = 0.0
    pulses = 0
    burn = 10000
    for k in range(steps):
        if regular:
            start = (left == 0) & (wait == 0)
            wait[(left == 0) & ~start] -= 1
            wait[start] = round(mean_off / dt)
        else:
            start = (left == 0) & (rng.random(n) < hazard)
        left[start] = n_pulse
        on = left > 0
        s = np.where(on, x, 0.0)
        if k >= burn:
            released += s.sum()
            x_sum += x.sum()
            pulses += int(start.sum())
        x = x + (dt * ((1 - x) / tau_rec) - U * s)
        left[on] -= 1
    rate = pulses / (n * (steps - burn) * dt)  # 1/ms, measured
    # The ISI's CV: exponential time off (std = its mean) after the fixed pulse; or none.
    cv = 0.0 if regular else mean_off / (mean_off + n_pulse * dt)
    X, S, R, R2, xbar = Release(n_pulse, U, tau_rec, dt).steady_state(np.array(rate), cv)
    assert float(xbar) == pytest.approx(x_sum / (n * (steps - burn)), rel=0.02)
    assert float(R) == pytest.approx(released / pulses, rel=0.02)
    assert float(S) >= float(X) ** 2  # E[x0²] ≥ E[x0]²


def test_fixed_point_of_an_uncoupled_network_is_the_analytic_rate() -> None:
    # No synapses, constant suprathreshold input and no noise: every neuron fires regularly at
    # 1/(t_ref + τ_m ln((μ − V_r)/(μ − θ))), μ = τ_m·I (E: μ = 30 mV, I: μ = 25 mV).
    sets = (
        ["stimulus.kind=constant", "stimulus.E=1.5", "stimulus.I=2.5"]
        + [f"projections.{p}.efficacy=0" for p in ("E->I", "I->E", "I->I")]
        + ["projections.E->E.J_p=0", "projections.E->E.J_d=0"]
    )
    fps = meanfield.solve(load_config(None, sets))
    assert len(fps) == 1 and fps[0].stable and fps[0].kind == "spontaneous"
    e = 1000 / (2.1 + 20 * np.log((30 - 15) / (30 - 20)))
    i = 1000 / (2.1 + 10 * np.log((25 - 10) / (25 - 20)))
    assert fps[0].rates_hz["E"] == pytest.approx(e, rel=1e-4)
    assert fps[0].rates_hz["I"] == pytest.approx(i, rel=1e-4)


def test_coupled_fixed_points_solve_the_equations_and_are_consistent() -> None:
    cfg = wm()
    model = meanfield.build(cfg, g_in=0.5)
    fps = meanfield.solve_model(model)
    assert fps and fps[0].kind == "spontaneous"
    for fp in fps:
        nu = np.array([fp.rates_hz[n] for n in model.names]) / 1000
        assert np.allclose(model.phi(nu), nu, rtol=1e-5, atol=1e-8)
        sizes = model.size[model.is_e]
        assert fp.rates_hz["E"] == pytest.approx(float((nu[model.is_e] * sizes).sum() / sizes.sum() * 1000))


def _bistable_cfg(extra: list[str] | None = None) -> Config:
    # Weak, fast depression (U = 0.01, τ_rec = 50 ms): within-group potentiation alone can hold a group.
    return wm(["stp.U=0.01", "stp.tau_rec=50", "groups.prototypes.count=2"] + (extra or []))


def test_scan_finds_the_bistability_boundary_and_moves_it_the_right_way() -> None:
    cfg = _bistable_cfg()
    values = np.linspace(0.3, 1.0, 15)
    sc = meanfield.scan(cfg, "g_in", values)
    assert sc.boundary is not None and 0.4 < sc.boundary < 1.0
    below = values < sc.boundary
    assert not sc.bistable[below].any() and sc.bistable[~below][:3].all()  # bistable just above it
    for fps in np.array(sc.points, dtype=object)[below]:
        assert not any(fp.stable and fp.kind.startswith("selective") for fp in fps)
    # Stronger potentiated synapses need fewer of them: the boundary moves down.
    stronger = meanfield.scan(_bistable_cfg(["projections.E->E.J_p=0.6"]), "g_in", values)
    assert stronger.boundary is not None and stronger.boundary < sc.boundary


def _cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["wmnet", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scan", "no.such.key=0:1:5"], "--scan no.such.key: not a numeric config field"),
        (["--scan", "g_in=0:1"], "expected KEY=START:STOP:N"),
        (["--scan", "g_in=0.5:0.5:10"], "START ≠ STOP"),
        (["--scan", "g_in=a:1:10"], "must be numbers"),
        (["--connectivity", "/nonexistent/snap.npz"], "no such file"),
        (["--synapses", "/nonexistent/synapses.h5"], "no such file"),
        (["--g-in", "1.5"], "expected a probability"),
    ],
)
def test_cli_bad_inputs(
    args: list[str],
    message: str,
    tmp_path: Path,
    wm_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "mf"
    code, text = _cli(["meanfield", str(wm_path), "--out", str(out), *args], monkeypatch, capsys)
    assert code == 2 and message in text and text.count("error:") == 1, text
    assert not out.exists()  # nothing written


def test_cli_refuses_the_seed_sinusoid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = _cli(["meanfield", "--out", str(tmp_path / "mf")], monkeypatch, capsys)
    assert code == 2 and "sinusoid" in text and "no stationary mean-field state" in text
    with pytest.raises(WmnetError, match="sinusoid"):
        meanfield.solve(load_config(None))


def test_cli_writes_json_and_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mf"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(_bistable_cfg().to_yaml())
    code, text = _cli(
        ["meanfield", str(cfg_path), "--g-in", "0.9", "--scan", "g_in=0.3:1:8", "--out", str(out)], monkeypatch, capsys
    )
    assert code == 0, text
    data = json.loads((out / "meanfield.json").read_text())
    kinds = [fp["kind"] for fp in data["fixed_points"]]
    assert "spontaneous" in kinds and "selective:P1" in kinds
    for fp in data["fixed_points"]:
        assert {"E", "I", "P1", "P2", "nonselective"} <= set(fp["rates_hz"]) and isinstance(fp["stable"], bool)
        assert set(fp["x"]) == set(fp["mu"]) == set(fp["sigma"]) >= {"P1", "I"}
    assert len(data["scan"]["points"]) == 8 and data["scan"]["boundaries"]
    assert (out / "bifurcation.png").stat().st_size > 10000


def test_potentiated_fractions_from_a_snapshot_and_from_synapses_h5(tmp_path: Path) -> None:
    """A small structured run: the fractions read back per group pair match the structure's
    probabilities (±0.05 for ~1000 synapses a pair) and the right pair goes to the right cell."""
    import subprocess

    cfg_path = tmp_path / "c.yaml"
    cfg = load_config(
        None,
        [
            "populations.E.size=400",
            "populations.I.size=100",
            "stimulus.kind=constant",
            "duration=20",
            "plasticity.enabled=false",
            "groups.prototypes={count: 2, fraction: 0.25}",
            "projections.E->E.structure={within: 0.8, between: 0.1, to_nonselective: 0.5, from_nonselective: 0.0}",
            "record.snapshots=[10]",
            "record.traces={variables: [v], neurons: [0], every: 100}",
            "record.synapses={every: 10, groups: [[P1, P1], [P1, P2], [P1, nonselective], [nonselective, P2]]}",
        ],
    )
    cfg_path.write_text(cfg.to_yaml())
    run = tmp_path / "run"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from wmnet.cli import main; main()",
            "run",
            str(cfg_path),
            "--out",
            str(run),
            "--no-plot",
            "--quiet",
        ],
        check=True,
    )
    names = meanfield.build(cfg).names  # P1, P2, nonselective, I
    expect = np.array([[0.8, 0.1, 0.0], [0.1, 0.8, 0.0], [0.5, 0.5, 0.2]])  # [post, pre]
    snap = next((run / "snapshots").glob("*.npz"))
    g = meanfield.measured_potentiation(cfg, connectivity=snap)
    assert g is not None
    assert names[:3] == ["P1", "P2", "nonselective"] and g.shape == (3, 3)
    assert np.abs(g - expect).max() < 0.05, g
    h = meanfield.measured_potentiation(cfg, synapses=run / "synapses.h5")
    assert h is not None
    # Recorded: P1→P1, P1→P2, P1→nonselective, nonselective→P2; the rest filled from their kind.
    for post, pre in [(0, 0), (1, 0), (2, 0), (1, 2), (1, 1), (0, 1), (2, 1), (0, 2)]:
        assert h[post, pre] == pytest.approx(expect[post, pre], abs=0.05), (post, pre, h)
    # Explicit values win over measured ones; the model's E→E efficacy follows the fractions.
    m = meanfield.build(cfg, g_in=0.3, measured=g)
    ee = cfg.projections.EE
    assert m.J_slow[0, 0] == pytest.approx(0.3 * ee.J_p + 0.7 * ee.J_d)
    assert m.J_slow[2, 0] == pytest.approx(g[2, 0] * ee.J_p + (1 - g[2, 0]) * ee.J_d)
    assert m.J2_fast[1, 0] == pytest.approx(g[1, 0] * ee.J_p**2 + (1 - g[1, 0]) * ee.J_d**2)
    fps = meanfield.solve(cfg, connectivity=snap)  # the asymmetric (multi-start) path
    assert fps and fps[0].kind == "spontaneous"


def test_in_degrees_and_means_by_hand() -> None:
    # p = 0.8, r = 0.5 for E→E: K_slow = 0.4·(n − δ), K_fast = 0.4·(1 − 0.4)·(n − δ) (fast only where no slow).
    cfg = wm()
    m = meanfield.build(cfg)
    p1, ns, i = 0, 5, 6
    assert m.K_slow[p1, p1] == pytest.approx(0.4 * 199) and m.K_fast[p1, p1] == pytest.approx(0.24 * 199)
    assert m.K_slow[p1, ns] == pytest.approx(0.4 * 1000)
    assert m.K_fast[p1, i] == pytest.approx(0.8 * 500) and m.K_slow[p1, i] == 0  # I→E is all fast
    assert m.K_slow[i, i] == pytest.approx(0.8 * 0.1 * 499)
    assert m.K_fast[i, i] == pytest.approx(0.8 * 0.9 * (1 - 0.08) * 499)
    # μ by hand at given rates: τ_m·(Σ K·J·ν·dt·R + I_ext).
    nu = np.full(7, 0.002)
    nu[i] = 0.01
    inp = m.inputs(nu)
    R = np.array([m.release[u].steady_state(nu[u], inp["cv"][u])[2] for u in range(7)])
    hand = 20 * (
        sum(
            (m.K_slow[p1, v] * m.J_slow[p1, v] + m.K_fast[p1, v] * m.J_fast[p1, v]) * nu[v] * 0.1 * R[v]
            for v in range(7)
        )
        + 1.45
    )
    assert inp["mu"][p1] == pytest.approx(hand, rel=1e-12)
    # The background's white-noise intensity: std²·grain, σ² ⊇ τ_m·1.5²·1.
    assert inp["sigma"][p1] ** 2 > 20 * 1.5**2 * 1.0
    # Only the private part of each channel's variance counts: 1 − q, q = the channel's probability.
    assert m.private_fast[p1, i] == pytest.approx(1 - 0.8) and m.private_slow[p1, p1] == pytest.approx(1 - 0.4)
    assert m.private_fast[p1, ns] == pytest.approx(1 - 0.24) and m.private_slow[i, i] == pytest.approx(1 - 0.08)
    _, _, _, R2, _ = meanfield.theory._steady_state(nu, inp["cv"], *m._coefficients, 0.1 / 200, 0.1)
    D = sum(
        nu[v]
        * 0.01
        * R2[v]
        * (
            m.K_slow[p1, v] * m.J2_slow[p1, v] * m.private_slow[p1, v]
            + m.K_fast[p1, v] * m.J2_fast[p1, v] * m.private_fast[p1, v]
        )
        for v in range(7)
    )
    assert inp["sigma"][p1] ** 2 == pytest.approx(20 * (D + 1.5**2 * 1.0), rel=1e-12)


def test_slow_current_noise_treatments_against_simulated_neurons() -> None:
    # A 100 ms slow current beside white noise (bench/slow_noise_check.py has more cases): the
    # quasi-static spread of μ predicts the rate, the Fourcaud–Brunel shift does not (it is 9x low).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from slow_noise_check import simulate, theory  # type: ignore[import-not-found]

    sim = simulate(14.0, 2.0, 0.5, 100.0, n=1000, steps=20000, seed=3)
    qs, fb = theory(14.0, 2.0, 0.5, 100.0, "quasi-static"), theory(14.0, 2.0, 0.5, 100.0, "fourcaud-brunel")
    assert abs(qs / sim - 1) < 0.05, (sim, qs)
    assert fb < 0.3 * sim, (sim, fb)


def test_spread_rate_by_hand_and_the_model_option() -> None:
    from scipy.integrate import quad

    from wmnet.meanfield import spread_rate

    # The Gaussian average of the Siegert rate, by quadrature.
    args = (np.array(2.5), 20.0, 20.0, 15.0, 2.1)
    hand = quad(lambda z: siegert(np.array(13.0 + 2.0 * z), *args) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), -8, 8)
    assert spread_rate(np.array(13.0), np.array(2.5), np.array(2.0), 20.0, 20.0, 15.0, 2.1) == pytest.approx(
        hand[0], rel=3e-3
    )
    assert spread_rate(np.array(13.0), np.array(2.5), np.array(0.0), 20.0, 20.0, 15.0, 2.1) == siegert(
        np.array(13.0), *args
    )
    cfg = wm(["populations.E.tau_s=100", "projections.E->E.slow_fraction=1.0"])
    fb, qs = meanfield.build(cfg), meanfield.build(cfg, slow_noise="quasi-static")
    nu = np.full(len(fb.names), 0.003)
    a, b = fb.inputs(nu, poisson=True), qs.inputs(nu, poisson=True)  # the same CV: the same μ
    assert np.all(a["spread"] == 0) and np.array_equal(a["mu"], b["mu"])
    e = fb.is_e
    # Quasi-static: the slow variance leaves σ² and the shift, and becomes the spread of μ.
    assert np.all(b["sigma"][e] < a["sigma"][e]) and np.all(b["shift"][e] < a["shift"][e])
    assert np.all(b["spread"][e] > 0)
    assert np.all(qs.phi(nu)[e] > fb.phi(nu)[e])  # the large Fourcaud–Brunel shift is gone
    with pytest.raises(WmnetError, match="slow_noise"):
        meanfield.build(cfg, slow_noise="white")  # type: ignore[arg-type]
