"""Connectivity files: dense post×pre matrices to import (`load_dense`), and snapshots of a run's
whole sparse connectivity with its E→E state (`save_snapshot`, SNAPSHOT_FORMAT); `load_connectivity`
reads either, `read_npz` any .npz of plain arrays."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from wmnet import model
from wmnet.config import Config, StaticProjection
from wmnet.connectivity import EE, PROJECTIONS, Connectivity, Projection, SynapseState, _to_csr
from wmnet.errors import WmnetError

# ---------------------------------------------------------------------------------------------
# Dense post×pre matrices


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read whole and the file closed; one WmnetError naming the
    file for anything that is not a readable .npz of plain (non-object) arrays: an empty,
    truncated or CRC-broken file, a renamed .npy, pickled objects."""
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise WmnetError(f"{path}: cannot read {what}: a single .npy array, not an .npz archive of arrays")
            with data:
                return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error) as e:
        reason = (
            "the file is empty"
            if isinstance(e, EOFError)
            else (getattr(e, "strerror", None) or str(e) or type(e).__name__)
        )
        raise WmnetError(f"{path}: cannot read {what} ({reason})") from None


def load_dense(path: str | Path, cfg: Config, device: torch.device, dtype: torch.dtype) -> Connectivity:
    """Import dense post×pre `j_fast`, `j_slow` (and optional `l`) from an .npz file.

    Static projections must carry their configured efficacy; E→E entries must be J_p or J_d.
    """
    path = Path(path)
    return _load_dense_arrays(path, _read_dense(path, read_npz(path, "connectivity")), cfg, device, dtype)


def _load_dense_arrays(
    path: Path, arrays: dict[str, np.ndarray], cfg: Config, device: torch.device, dtype: torch.dtype
) -> Connectivity:
    """load_dense on arrays already read (float64) from `path`."""
    for key in ("j_fast", "j_slow"):
        if key not in arrays:
            raise WmnetError(f"{path}: missing array {key!r} (expected j_fast, j_slow, optional l)")
    unknown = set(arrays) - {"j_fast", "j_slow", "l"}
    if unknown:
        raise WmnetError(f"{path}: unknown array(s) {sorted(unknown)} (expected j_fast, j_slow, l)")
    n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
    n = n_e + n_i
    for key, arr in arrays.items():
        if arr.shape != (n, n):
            raise WmnetError(f"{path}: {key} has shape {arr.shape}, expected ({n}, {n}) = N×N post×pre")
        if not np.isfinite(arr).all():
            raise WmnetError(f"{path}: {key} holds non-finite values")
    fast, slow_m = arrays["j_fast"], arrays["j_slow"]
    both = (fast != 0) & (slow_m != 0)
    if both.any():
        i, j = np.argwhere(both)[0]
        raise WmnetError(f"{path}: j_fast and j_slow overlap at {int(both.sum())} entries (first: post {i}, pre {j})")
    off = {"E": 0, "I": n_e}
    size = {"E": n_e, "I": n_i}
    projections: dict[str, Projection] = {}
    ee_values = ee_l = None
    for name, attr, pre_pop, post_pop in PROJECTIONS:
        spec = getattr(cfg.projections, attr)
        rs = slice(off[post_pop], off[post_pop] + size[post_pop])
        cs = slice(off[pre_pop], off[pre_pop] + size[pre_pop])
        blocks = {"slow": slow_m[rs, cs], "fast": fast[rs, cs]}
        if isinstance(spec, StaticProjection):
            for ch, blk in blocks.items():
                vals = blk[blk != 0]
                if vals.size and not np.allclose(vals, spec.efficacy, rtol=1e-3, atol=0):
                    raise WmnetError(
                        f"{path}: {name} {ch} entries must all equal the configured efficacy "
                        f"{spec.efficacy} (set projections.{name}.efficacy to match the file)"
                    )
        # Transposed so that nonzero() walks pre-major, as the CSR wants.
        pre_s, post_s = np.nonzero(blocks["slow"].T)
        pre_f, post_f = np.nonzero(blocks["fast"].T)
        pre = np.concatenate([pre_s, pre_f])
        post = np.concatenate([post_s, post_f])
        slow = np.concatenate([np.ones(pre_s.size, bool), np.zeros(pre_f.size, bool)])
        proj = _to_csr(
            name,
            pre_pop,
            post_pop,
            size[pre_pop],
            size[post_pop],
            torch.from_numpy(pre).to(device),
            torch.from_numpy(post).to(device),
            torch.from_numpy(slow).to(device),
        )
        projections[name] = proj
        if name == EE:
            p_idx = proj.pre_idx().cpu().numpy()
            q_idx = proj.post_idx.long().cpu().numpy()
            is_slow = proj.is_slow().cpu().numpy()
            ee_values = np.where(is_slow, blocks["slow"][q_idx, p_idx], blocks["fast"][q_idx, p_idx])
            ee_l = arrays["l"][q_idx, p_idx] if "l" in arrays else None
    assert ee_values is not None
    ee = cfg.projections.EE
    is_p = np.isclose(ee_values, ee.J_p, rtol=1e-3, atol=0)
    is_d = np.isclose(ee_values, ee.J_d, rtol=1e-3, atol=0)
    if not (is_p | is_d).all():
        bad = ee_values[~(is_p | is_d)][0]
        raise WmnetError(f"{path}: E->E efficacies must be J_p = {ee.J_p} or J_d = {ee.J_d} (found {bad:g})")
    L = ee_l if ee_l is not None else is_p.astype(np.float64)
    initial = SynapseState(torch.from_numpy(is_p.astype(np.uint8)).to(device), torch.from_numpy(L).to(device, dtype))
    return Connectivity(n_e, n_i, projections, initial, str(path)).to(device, dtype)


# ---------------------------------------------------------------------------------------------
# Snapshots: the whole connectivity with the E→E state, sparse, as compressed .npz

SNAPSHOT_FORMAT = "wmnet-connectivity-1"
_KEYS = {p.name: p.field for p in model.PROJECTIONS}  # file keys: EE_rowptr, ...


def save_snapshot(path: Path, conn: Connectivity, state: SynapseState, meta: dict[str, float | int]) -> None:
    """Write every projection's CSR (rowptr, split, post) and the E→E state (potentiated, L),
    compressed, atomically (temporary file, then rename). `meta` (t_ms, step, seed) goes in too."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(SNAPSHOT_FORMAT),
        "n_E": np.array(conn.n_E),
        "n_I": np.array(conn.n_I),
    }
    arrays.update({k: np.array(v) for k, v in meta.items()})
    for name, key in _KEYS.items():
        p = conn.projections[name]
        arrays[f"{key}_rowptr"] = p.rowptr.cpu().numpy()
        arrays[f"{key}_split"] = p.split.cpu().numpy()
        arrays[f"{key}_post"] = p.post_idx.cpu().numpy().astype(np.int32)  # the file format stays int32
    arrays["EE_potentiated"] = state.potentiated.cpu().numpy()
    arrays["EE_L"] = state.L.cpu().numpy()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds typed as allow_pickle
    tmp.replace(path)


def _read_dense(path: Path, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of a dense connectivity file as float64; real numbers only."""
    out = {}
    for k, a in raw.items():
        if a.dtype.kind not in "biuf":
            raise WmnetError(f"{path}: array {k!r} has dtype {a.dtype}; expected real numbers")
        out[k] = np.asarray(a, dtype=np.float64)
    return out


def load_connectivity(path: str | Path, cfg: Config, device: torch.device, dtype: torch.dtype) -> Connectivity:
    """A snapshot written by a run (`record.snapshots`) or dense post×pre matrices (`load_dense`)."""
    path = Path(path)
    arrays = read_npz(path, "connectivity")  # read once: every later check uses these arrays
    if "format" in arrays:
        return _load_snapshot(path, arrays, cfg, device, dtype)
    return _load_dense_arrays(path, _read_dense(path, arrays), cfg, device, dtype)


_SNAPSHOT_ARRAYS = (
    "n_E",
    "n_I",
    "EE_potentiated",
    "EE_L",
    *(f"{k}_{part}" for k in _KEYS.values() for part in ("rowptr", "split", "post")),
)


def _load_snapshot(
    path: Path, d: dict[str, np.ndarray], cfg: Config, device: torch.device, dtype: torch.dtype
) -> Connectivity:
    missing = [k for k in _SNAPSHOT_ARRAYS if k not in d]
    if missing:
        raise WmnetError(f"{path}: not a complete wmnet snapshot: missing array(s) {', '.join(missing)}")
    bad = [
        k
        for k in ("format", *_SNAPSHOT_ARRAYS)
        if (d[k].dtype.kind not in "biuf" if k != "format" else False)
        or (k in ("n_E", "n_I", "format") and d[k].size != 1)
    ]
    if bad:
        raise WmnetError(f"{path}: snapshot array(s) {', '.join(bad)} have the wrong type or size")
    if str(d["format"]) != SNAPSHOT_FORMAT:
        raise WmnetError(f"{path}: unknown snapshot format {str(d['format'])!r} (expected {SNAPSHOT_FORMAT})")
    n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
    if (int(d["n_E"]), int(d["n_I"])) != (n_e, n_i):
        raise WmnetError(
            f"{path}: snapshot of {int(d['n_E'])} E + {int(d['n_I'])} I neurons, but the config has {n_e} E + {n_i} I"
        )
    size = {"E": n_e, "I": n_i}
    projections: dict[str, Projection] = {}
    for name, key, pre_pop, post_pop in PROJECTIONS:  # the config attribute is the file's key
        rowptr, split, post = d[f"{key}_rowptr"], d[f"{key}_split"], d[f"{key}_post"]
        n_pre, n_post = size[pre_pop], size[post_pop]
        ok = (
            rowptr.shape == (n_pre + 1,)
            and split.shape == (n_pre,)
            and rowptr[0] == 0
            and rowptr[-1] == post.size
            and (np.diff(rowptr) >= 0).all()
            and (split >= rowptr[:-1]).all()
            and (split <= rowptr[1:]).all()
            and (post.size == 0 or (post.min() >= 0 and post.max() < n_post))
        )
        if not ok:
            raise WmnetError(f"{path}: projection {name} is not a valid CSR of {n_pre} × {n_post} neurons")
        projections[name] = Projection(
            name,
            pre_pop,
            post_pop,
            n_pre,
            n_post,
            torch.from_numpy(rowptr.astype(np.int64)).to(device),
            torch.from_numpy(split.astype(np.int64)).to(device),
            torch.from_numpy(post.astype(np.int32)).to(device),
        )
    pot, L = d["EE_potentiated"], d["EE_L"]
    n_ee = projections[EE].n_synapses
    if pot.shape != (n_ee,) or L.shape != (n_ee,) or not np.isin(pot, (0, 1)).all() or not np.isfinite(L).all():
        raise WmnetError(f"{path}: the E->E state must hold {n_ee} potentiated bits (0/1) and finite L values")
    state = SynapseState(torch.from_numpy(pot.astype(np.uint8)).to(device), torch.from_numpy(L).to(device, dtype))
    return Connectivity(n_e, n_i, projections, state, str(path)).to(device, dtype)
