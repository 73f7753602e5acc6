"""From a Config (and optionally a snapshot or a run's synapses.h5) to the mean-field Model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wmnet.config import Background, Config, Constant, Selective, Sinusoid, StaticProjection, Sum, group_ids
from wmnet.errors import WmnetError
from wmnet.meanfield.theory import Model, Release, pulse_steps


@dataclass(frozen=True)
class Potentiation:
    """Probability that an E→E synapse is potentiated, by kind (None: from the config)."""

    within: float | None = None  # pre and post in the same prototype group
    between: float | None = None  # pre and post in different groups
    to_nonselective: float | None = None  # pre in a group, post nonselective
    from_nonselective: float | None = None  # pre nonselective, post in a group
    nonselective: float | None = None  # both nonselective


def _units(cfg: Config) -> tuple[list[str], list[int], int]:
    """Unit names and sizes (E units first, then I) and the number of prototype groups."""
    n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
    pr = cfg.groups.prototypes
    if pr is None:
        return ["E", "I"], [n_e, n_i], 0
    if cfg.groups.overlap:
        raise WmnetError("groups.overlap: the mean-field model needs disjoint prototype groups")
    size = round(pr.fraction * n_e)
    names = [f"{pr.prefix}{i + 1}" for i in range(pr.count)]
    sizes = [size] * pr.count
    if n_e - pr.count * size > 0:
        names.append("nonselective")
        sizes.append(n_e - pr.count * size)
    return names + ["I"], sizes + [n_i], pr.count


def _config_potentiation(cfg: Config) -> Potentiation:
    ee = cfg.projections.EE
    st = getattr(ee, "structure", None)
    base = ee.p_potentiated

    def get(key: str) -> float:
        v = getattr(st, key, None) if st is not None else None
        return base if v is None else float(v)

    return Potentiation(
        *(get(k) for k in ("within", "between", "to_nonselective", "from_nonselective", "nonselective"))
    )


def potentiation_matrix(
    cfg: Config, explicit: Potentiation | None = None, measured: np.ndarray | None = None
) -> np.ndarray:
    """g[post, pre] over the E units: explicit values first, then `measured` (from a snapshot or
    synapses.h5; NaN where unknown), then the config (structure, else p_potentiated)."""
    names, _, P = _units(cfg)
    n_e_units = len(names) - 1
    base = _config_potentiation(cfg)
    explicit = explicit or Potentiation()
    g = np.empty((n_e_units, n_e_units))
    for u in range(n_e_units):
        for v in range(n_e_units):
            if P == 0:
                kind = "nonselective"
            elif u < P and v < P:
                kind = "within" if u == v else "between"
            elif u < P:
                kind = "from_nonselective"  # post in a group, pre nonselective
            elif v < P:
                kind = "to_nonselective"
            else:
                kind = "nonselective"
            value = getattr(explicit, kind)
            if value is None and measured is not None and np.isfinite(measured[u, v]):
                value = float(measured[u, v])
            g[u, v] = getattr(base, kind) if value is None else value
            if not 0 <= g[u, v] <= 1:
                raise WmnetError(f"potentiated fraction {kind} = {g[u, v]}: expected a probability in [0, 1]")
    return g


def _labels(cfg: Config) -> np.ndarray:
    """Unit index of every E neuron (from the config's seed, as the run draws the groups)."""
    names, _, _ = _units(cfg)
    groups = cfg.resolve_groups()
    label = np.full(cfg.populations.E.size, -1, dtype=np.int64)
    for u, name in enumerate(names[:-1]):
        ids = group_ids(groups[name]) if name in groups else np.arange(cfg.populations.E.size)
        label[ids[ids < cfg.populations.E.size]] = u
    return label


def snapshot_potentiation(cfg: Config, path: str | Path) -> np.ndarray:
    """g[post, pre] per E unit pair from a snapshot .npz (io.connectivity_files.save_snapshot)."""
    path = Path(path)
    try:
        with np.load(path) as d:
            rowptr, post, pot = d["EE_rowptr"], d["EE_post"], d["EE_potentiated"]
            n_e = int(d["n_E"])
    except (OSError, ValueError, KeyError) as e:
        raise WmnetError(f"{path}: cannot read a connectivity snapshot ({e})") from None
    if n_e != cfg.populations.E.size or rowptr.shape != (n_e + 1,) or pot.shape != post.shape:
        raise WmnetError(f"{path}: snapshot does not match the config's {cfg.populations.E.size} E neurons")
    label = _labels(cfg)
    m = len(_units(cfg)[0]) - 1
    pre = np.repeat(np.arange(n_e), np.diff(rowptr))
    pair = label[post] * m + label[pre]
    n = np.bincount(pair, minlength=m * m).reshape(m, m)
    k = np.bincount(pair, weights=pot.astype(np.float64), minlength=m * m).reshape(m, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        return k / n


def synapses_potentiation(cfg: Config, path: str | Path) -> np.ndarray:
    """g[post, pre] from a run's synapses.h5 (the last sample of each pre->post group pair that
    was recorded; NaN for pairs it lacks). A pair of a kind not recorded takes the mean of the
    recorded pairs of the same kind (e.g. between groups from P1->P2)."""
    from wmnet.io.series import read_series

    path = Path(path)
    if not path.is_file():
        raise WmnetError(f"{path}: no such file (expected a run's synapses.h5)")
    try:
        _, s = read_series(path)
    except (OSError, KeyError, ValueError) as e:
        raise WmnetError(f"{path}: cannot read synapse statistics ({e})") from None
    names, _, P = _units(cfg)
    e_names = names[:-1]
    m = len(e_names)
    g = np.full((m, m), np.nan)
    for key, values in s.items():
        if not (key.startswith("synapses/") and key.endswith("/potentiated_fraction")) or not len(values):
            continue
        pre, _, post = key.split("/")[1].partition("->")
        if pre in e_names and post in e_names:
            g[e_names.index(post), e_names.index(pre)] = float(values[-1])
    if np.isnan(g).all():
        raise WmnetError(
            f"{path}: holds no potentiated fraction of a pair of E groups "
            f"(record.synapses.groups with groups among {', '.join(e_names)})"
        )
    # Fill unrecorded pairs from the recorded ones of the same kind.
    kind = np.empty((m, m), dtype=object)
    for u in range(m):
        for v in range(m):
            kind[u, v] = ("w" if u == v else "b") if u < P and v < P else ("f" if u < P else "t" if v < P else "n")
    for k in "wbftn":
        sel = kind == k
        known = g[sel & np.isfinite(g)]
        if known.size:
            g[sel & np.isnan(g)] = known.mean()
    return g


def _external(cfg: Config, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (mV/ms), white-noise intensity ((mV/ms)²·ms) and filter time (ms) of the input per unit."""
    M = len(names)
    mean, D, Dtau = np.zeros(M), np.zeros(M), np.zeros(M)
    is_e = np.array([n != "I" for n in names])
    bg = cfg.background
    grain_steps = round(bg.grain / cfg.dt)

    def add(stim: object, where: str) -> None:
        if isinstance(stim, Sum):
            for i, t in enumerate(stim.terms):
                add(t, f"{where}.terms.{i}")
        elif isinstance(stim, Constant):
            mean[:] += np.where(is_e, stim.E, stim.I)
        elif isinstance(stim, (Background, Selective)):
            c = np.ones(M)
            if isinstance(stim, Selective):
                if stim.group not in names:
                    raise WmnetError(
                        f"{where}.group: {stim.group!r} is not a prototype group; the mean-field "
                        "model splits E only into prototype groups and nonselective"
                    )
                if stim.contrast_I != 1 and cfg.groups.prototypes is not None and cfg.groups.prototypes.fraction_I:
                    raise WmnetError(f"{where}.contrast_I: the mean-field model keeps I as one population")
                if stim.noise:
                    raise WmnetError(f"{where}.noise: a noisy prototype is not a stationary input")
                c[names.index(stim.group)] = stim.contrast_E
            m_pop = np.where(is_e, bg.E.mean, bg.I.mean)
            s_pop = np.where(is_e, bg.E.std, bg.I.std)
            mean[:] += c * m_pop
            # Constant over a grain of G steps: the integral over T ≫ grain has variance std²·grain·T.
            d = s_pop**2 * bg.grain
            D[:] += d
            Dtau[:] += d * cfg.dt * (grain_steps - 1) / 2  # a boxcar of G steps, less the grid's own step
        elif isinstance(stim, Sinusoid):
            if stim.amplitude_max == 0:
                return
            peak = max(cfg.populations.E.tau_m, cfg.populations.I.tau_m) * 2 * stim.amplitude_max
            raise WmnetError(
                f"{where}: the sinusoid (A_n up to {stim.amplitude_max:g} mV/ms, periods 2π·F = "
                f"{2 * np.pi * stim.F_min:.0f}–{2 * np.pi * stim.F_max:.0f} ms) varies on the membrane's time scale "
                f"and drives neurons far above threshold (τ_m·2A up to {peak:g} mV against θ = "
                f"{cfg.populations.E.theta:g} mV): no stationary mean-field state; use a background or constant "
                "stimulus"
            )
        else:
            raise WmnetError(
                f"{where}: a {getattr(stim, 'kind', type(stim).__name__)} stimulus has no stationary "
                "mean and variance; the mean-field model takes background, constant or selective input"
            )

    add(cfg.stimulus, "stimulus")
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(D > 0, Dtau / np.where(D > 0, D, 1), 0.0)
    return mean, D, tau


def build_model(cfg: Config, potentiation: Potentiation | None = None, measured: np.ndarray | None = None) -> Model:
    """The mean-field Model of `cfg`: units P1…PP, nonselective, I (or E, I without prototypes)."""
    names, sizes, _ = _units(cfg)
    # A depression option added to the config later (e.g. a per-spike release) is not in this
    # theory: refuse it rather than predict the per-step model's states for it.
    stp_fields = type(cfg.stp).model_fields
    for name in set(stp_fields) - {"U", "tau_rec"}:
        if getattr(cfg.stp, name) != stp_fields[name].default:
            raise WmnetError(f"stp.{name}: the mean-field model covers the per-step release (U, tau_rec) only")
    M = len(names)
    size = np.array(sizes, dtype=np.float64)
    is_e = np.array([n != "I" for n in names])
    popE, popI = cfg.populations.E, cfg.populations.I
    pop = [popE if e else popI for e in is_e]
    steps_e = pulse_steps(popE.tau_ref, cfg.dt, cfg.dtype)
    steps_i = pulse_steps(popI.tau_ref, cfg.dt, cfg.dtype)
    steps = np.where(is_e, steps_e, steps_i)
    g = potentiation_matrix(cfg, potentiation, measured)
    ee = cfg.projections.EE
    K_slow, K_fast = np.zeros((M, M)), np.zeros((M, M))
    Q_slow, Q_fast = np.zeros((M, M)), np.zeros((M, M))  # probability that a given pre neuron is an input
    J_slow, J_fast, J2_slow, J2_fast = (np.zeros((M, M)) for _ in range(4))
    projections = {
        (True, True): ee,
        (True, False): cfg.projections.EI,
        (False, True): cfg.projections.IE,
        (False, False): cfg.projections.II,
    }
    n_pop = {True: popE.size, False: popI.size}
    for u in range(M):
        for v in range(M):
            proj = projections[(bool(is_e[v]), bool(is_e[u]))]  # (pre is E, post is E)
            square = bool(is_e[u]) == bool(is_e[v])
            pool = n_pop[bool(is_e[v])] - (1 if square else 0)  # candidate pre neurons (no autapses)
            n_pre = size[v] - (1 if u == v else 0)
            r = proj.slow_fraction
            if proj.k_in is not None:
                q = min(proj.k_in / pool, 1.0) if pool > 0 else 0.0
                Q_slow[u, v], Q_fast[u, v] = q * r, q * (1 - r)
            else:
                Q_slow[u, v], Q_fast[u, v] = proj.p * r, proj.p * (1 - r) * (1 - proj.p * r)  # fast only where no slow
            K_slow[u, v], K_fast[u, v] = Q_slow[u, v] * n_pre, Q_fast[u, v] * n_pre
            if is_e[u] and is_e[v]:
                j, j2 = g[u, v] * ee.J_p + (1 - g[u, v]) * ee.J_d, g[u, v] * ee.J_p**2 + (1 - g[u, v]) * ee.J_d**2
            else:
                assert isinstance(proj, StaticProjection)  # every projection but E→E
                j, j2 = proj.efficacy, proj.efficacy**2
            J_slow[u, v], J2_slow[u, v] = j * proj.slow_scale, j2 * proj.slow_scale**2
            J_fast[u, v], J2_fast[u, v] = j * proj.fast_scale, j2 * proj.fast_scale**2
    ext_mean, ext_D, ext_tau = _external(cfg, names)
    releases = {n: Release(n, cfg.stp.U, cfg.stp.tau_rec, cfg.dt) for n in {steps_e, steps_i}}
    return Model(
        names=names,
        size=size,
        is_e=is_e,
        tau_m=np.array([p.tau_m for p in pop]),
        theta=np.array([p.theta for p in pop]),
        v_reset=np.array([p.v_reset for p in pop]),
        t_ref=steps * cfg.dt,
        tau_s=np.array([p.tau_s for p in pop]),
        K_slow=K_slow,
        K_fast=K_fast,
        J_slow=J_slow,
        J_fast=J_fast,
        J2_slow=J2_slow,
        J2_fast=J2_fast,
        private_slow=1 - Q_slow,
        private_fast=1 - Q_fast,
        ext_mean=ext_mean,
        ext_D=ext_D,
        ext_tau=ext_tau,
        release=[releases[int(s)] for s in steps],
        dt=cfg.dt,
    )
