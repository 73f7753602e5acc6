"""Memory accounting: of a built network (what the sparse engine holds, `footprint`), and an
estimate from the config alone (`estimate`, `check_fits`), made before anything is allocated so
that a network too large for the device is refused in one line instead of crashing mid-build.

Nothing here imports torch at module level: `config/groups.py` uses `check_host` while validating.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from wmnet.errors import WmnetError

if TYPE_CHECKING:
    import torch

    from wmnet.config import Config
    from wmnet.network import Network

ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}
# Generation works in chunks of 2^23 synapses (connectivity._CHUNK_SYNAPSES) with some 50 bytes
# of temporaries per candidate (the fixed in-degree draw; the Bernoulli draw needs less).
_BUILD_TEMPORARIES = (1 << 23) * 50
# A run block holds at most 2^26 neuron-steps (recorders.flush_block) of flags (1 byte) and input.
_BLOCK_NEURON_STEPS = 1 << 26


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB"


def available_bytes(device: torch.device | str) -> int:
    """Memory free for a new allocation: CUDA's free memory on a GPU (torch.cuda.mem_get_info),
    else the host's MemAvailable (/proc/meminfo), else free physical pages (os.sysconf)."""
    kind = device if isinstance(device, str) else device.type
    if str(kind).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 62  # unknown: do not refuse


def check_host(need: float, what: str) -> None:
    """Raise WmnetError if `need` bytes of host memory for `what` exceed what is available."""
    have = available_bytes("cpu")
    if need > have:
        raise WmnetError(f"{what} needs about {_gib(need)} of memory, but only {_gib(have)} is available")


def expected_synapses(cfg: Config) -> dict[str, float]:
    """Expected synapse count per projection, from p (Bernoulli, no autapses) or k_in."""
    from wmnet.connectivity import PROJECTIONS

    sizes = {"E": cfg.populations.E.size, "I": cfg.populations.I.size}
    out = {}
    for name, attr, pre, post in PROJECTIONS:
        spec = getattr(cfg.projections, attr)
        n_pre, n_post = sizes[pre], sizes[post]
        if spec.k_in is not None:
            out[name] = float(n_post) * spec.k_in
            continue
        cols = n_post - 1 if pre == post else n_post
        p_slow, p_fast = spec.p * spec.slow_fraction, spec.p * (1 - spec.slow_fraction)
        out[name] = float(n_pre) * cols * (p_slow + p_fast * (1 - p_slow))  # fast kept only where not slow
    return out


def planned_engine(cfg: Config, device: torch.device) -> tuple[str, str | None]:
    """The engine `cfg.engine` resolves to on `device` (as engines.resolve_engine does, without
    a network), and why, when `auto` falls back to the dense reference engine."""
    from wmnet.engines import triton_available

    if cfg.engine != "auto":
        return cfg.engine, None
    if ITEMSIZE[cfg.dtype] < 4:
        return "reference", (
            f"engine auto: the dense reference engine was chosen because the sparse engine "
            f"needs float32 or float64 (dtype is {cfg.dtype}); its memory grows as N²"
        )
    if device.type == "cuda" and not triton_available():
        return "reference", "engine auto: the dense reference engine was chosen because Triton is not installed"
    return "sparse", None


def estimate(cfg: Config, device: torch.device, engine: str) -> dict[str, float]:
    """Peak bytes of building `cfg` and running it with `engine` (sparse | reference) on `device`,
    from the config alone (expected synapse counts): an estimate, within some 20%."""
    from wmnet.connectivity import PROJECTIONS

    isz = ITEMSIZE[cfg.dtype]
    n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
    n = n_e + n_i
    sizes = {"E": n_e, "I": n_i}
    syn = expected_synapses(cfg)
    cpu = device.type == "cpu"
    synapses = rows = 0.0
    for name, _, pre, post in PROJECTIONS:
        idx = 2 if cpu and sizes[post] <= 1 << 16 else 4  # connectivity.post_index_dtype
        synapses += syn[name] * idx
        rows += (2 * sizes[pre] + 1) * 8  # rowptr and split, int64
    # E→E state (L, potentiated bit): the connectivity's initial copy, the engine's, and one
    # more for a checkpoint, a snapshot or the summary (engine.synapses()).
    ee_state = 3 * syn["E->E"] * (isz + 1)
    # Generation writes int32 post indices, then converts them (the largest projection twice).
    build = max(syn.values(), default=0.0) * 4 + _BUILD_TEMPORARIES
    neurons = n * (5 * isz + 8 * 4)  # state and parameters, plus per-neuron engine buffers
    block = min(_BLOCK_NEURON_STEPS, 200 * n) * (1 + isz)
    out = {
        "synapses": synapses,
        "row_pointers": rows,
        "ee_state": ee_state,
        "build_temporaries": build,
        "neurons": neurons,
        "run_block": block,
    }
    if engine == "reference":
        # Dense N×N J_slow and J_fast, E×E mask, slow flag, L and potentiated, plus one N×N temporary.
        out["dense"] = 3.0 * n * n * isz + float(n_e) * n_e * (2 * isz + 2)
    out["total"] = sum(out.values())
    return out


def check_fits(cfg: Config, device: torch.device, engine: str) -> dict[str, float]:
    """The estimate; WmnetError with both numbers if it exceeds the device's free memory."""
    est = estimate(cfg, device, engine)
    have = available_bytes(device)
    if est["total"] > have:
        where = "GPU" if device.type == "cuda" else "host"
        n_syn = sum(expected_synapses(cfg).values())
        raise WmnetError(
            f"the network of {cfg.n_neurons:,} neurons and about {n_syn:,.3g} synapses ({engine} engine, "
            f"{cfg.dtype}) needs about {_gib(est['total'])} of memory, but the {where} ({device}) has only "
            f"{_gib(have)} available"
        )
    return est


def footprint(net: Network) -> dict[str, Any]:
    """Bytes held for connectivity and state, and bytes per synapse by kind."""
    conn = net.connectivity
    ee = conn.projections["E->E"]
    static = [p for name, p in conn.projections.items() if name != "E->E"]
    n_static = sum(p.n_synapses for p in static)
    idx = ee.post_idx.element_size()  # 2 (uint16) or 4 (int32): see connectivity.post_index_dtype
    static_idx = max((p.post_idx.element_size() for p in static), default=4)
    state = conn.initial.L.element_size() + conn.initial.potentiated.element_size()
    rows = sum(p.rowptr.numel() * 8 + p.split.numel() * 8 for p in conn.projections.values())
    synapse_bytes = ee.n_synapses * (idx + state) + sum(p.n_synapses * p.post_idx.element_size() for p in static)
    neuron_bytes = net.n * 5 * net.params.theta.element_size()
    return {
        "n_neurons": net.n,
        "n_synapses": {"E->E": ee.n_synapses, "static": n_static},
        "bytes_per_synapse": {"E->E": idx + state, "static": static_idx},
        "bytes": {
            "synapses": synapse_bytes,
            "row_pointers": rows,
            "neuron_state": neuron_bytes,
            "total": synapse_bytes + rows + neuron_bytes,
        },
    }


def describe(net: Network) -> list[str]:
    fp = footprint(net)
    b = fp["bytes"]
    lines = [
        f"network: {net.n:,} neurons (E {net.n_E:,}, I {net.n - net.n_E:,}) on {net.device}, {net.dtype}",
        f"built in {net.build_seconds:.2f} s",
    ]
    for name, p in net.connectivity.projections.items():
        lines.append(f"  {name}: {p.n_synapses:,} synapses ({p.n_slow:,} slow, {p.n_synapses - p.n_slow:,} fast)")
    bps = fp["bytes_per_synapse"]
    lines += [
        f"bytes per synapse: E->E {bps['E->E']} (post index, L, potentiated bit), static {bps['static']} (post index)",
        f"memory: synapses {b['synapses'] / 2**20:,.1f} MiB, row pointers {b['row_pointers'] / 2**20:,.1f} MiB, "
        f"neuron state {b['neuron_state'] / 2**20:,.2f} MiB, total {b['total'] / 2**20:,.1f} MiB",
    ]
    return lines
