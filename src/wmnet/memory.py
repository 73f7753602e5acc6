"""Memory accounting of a built network (what the sparse engine holds)."""

from __future__ import annotations

from typing import Any

from wmnet.network import Network


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
        "bytes": {"synapses": synapse_bytes, "row_pointers": rows, "neuron_state": neuron_bytes,
                  "total": synapse_bytes + rows + neuron_bytes},
    }


def describe(net: Network) -> list[str]:
    fp = footprint(net)
    b = fp["bytes"]
    lines = [f"network: {net.n:,} neurons (E {net.n_E:,}, I {net.n - net.n_E:,}) on {net.device}, {net.dtype}",
             f"built in {net.build_seconds:.2f} s"]
    for name, p in net.connectivity.projections.items():
        lines.append(f"  {name}: {p.n_synapses:,} synapses ({p.n_slow:,} slow, {p.n_synapses - p.n_slow:,} fast)")
    bps = fp["bytes_per_synapse"]
    lines += [
        f"bytes per synapse: E->E {bps['E->E']} (post index, L, potentiated bit), static {bps['static']} (post index)",
        f"memory: synapses {b['synapses'] / 2**20:,.1f} MiB, row pointers {b['row_pointers'] / 2**20:,.1f} MiB, "
        f"neuron state {b['neuron_state'] / 2**20:,.2f} MiB, total {b['total'] / 2**20:,.1f} MiB",
    ]
    return lines
