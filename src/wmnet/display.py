"""Short summaries of a Config, a Network and a RunResult: their `__repr__` (a few lines) and `_repr_html_`
(the same lines as a small table, for notebooks). Pure functions of the object: nothing is computed beyond
what it holds (a result reloaded from a folder reads only run.json here)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from wmnet import model

if TYPE_CHECKING:
    from wmnet.config import Config
    from wmnet.network import Network
    from wmnet.result import RunResult


def _record(cfg: Config) -> str:
    rec = cfg.record
    parts = ["spikes"] if rec.spikes else []
    if rec.traces.variables and rec.traces.neurons:
        parts.append(
            f"traces {', '.join(rec.traces.variables)} of {len(rec.traces.neurons)} neurons "
            f"every {rec.traces.every * cfg.dt:g} ms"
        )
    if rec.rates is not None:
        parts.append(f"rates in {rec.rates.bin:g} ms bins")
    if rec.synapses is not None and rec.synapses.every is not None:
        parts.append(f"E→E statistics every {rec.synapses.every:g} ms")
    if rec.snapshots:
        parts.append(f"snapshots at {', '.join(f'{t:g}' for t in rec.snapshots)} ms")
    return "; ".join(parts) or "nothing"


def config_lines(cfg: Config) -> list[str]:
    """Sizes, time grid and seed; projections; input and protocol; what is recorded."""
    pops = cfg.populations
    projections = []
    for spec in model.PROJECTIONS:
        p = getattr(cfg.projections, spec.field)
        conn = f"k_in {p.k_in}" if p.k_in is not None else f"p {p.p:g}"
        j = f"J {p.J_d:g}/{p.J_p:g}" if spec.plastic else f"J {p.efficacy:g}"
        projections.append(f"{spec.name} {conn}, {j}")
    groups = [name for name in cfg.groups.names() if name not in ("E", "I")]
    protocol = ""
    if cfg.protocol is not None:
        protocol = f"; protocol of {len(cfg.protocol.epochs)} items"
    return [
        f"Config: E {pops.E.size:,} + I {pops.I.size:,} neurons, {cfg.n_steps * cfg.dt:g} ms in steps of "
        f"{cfg.dt:g} ms, seed {cfg.seed}",
        f"  projections: {'; '.join(projections)} (mV/ms)",
        f"  input: {cfg.stimulus.kind}{protocol}; groups: {', '.join(groups) or 'none'}",
        f"  record: {_record(cfg)}",
        f"  engine {cfg.engine} on {cfg.device}, {cfg.dtype}",
    ]


def network_lines(net: Network) -> list[str]:
    """Neurons, synapses per projection, device and dtype, build time."""
    conn = net.connectivity
    counts = ", ".join(f"{name} {p.n_synapses:,}" for name, p in conn.projections.items())
    return [
        f"Network: {net.n:,} neurons (E {conn.n_E:,}, I {conn.n_I:,}), {conn.n_synapses():,} synapses",
        f"  {counts}",
        f"  on {net.device}, {str(net.dtype).removeprefix('torch.')}, seed {net.config.seed}, "
        f"built in {net.build_seconds:.2f} s",
    ]


def result_lines(result: RunResult) -> list[str]:
    """Status and simulated time; rates from the summary; what is there to read; the folder."""
    cfg = result.config
    info = result.info
    head = f"RunResult: {result.simulated_ms:g} ms of {cfg.n_neurons:,} neurons, {result.status}"
    if "engine" in info:
        head += f" ({info['engine']} engine, {info.get('device', '?')}, {info.get('dtype', '?')})"
    lines = [head]
    pops = result.summary.get("populations") or {}
    rates = [f"{name} {p['rate_hz']:.3g} Hz" for name, p in pops.items() if isinstance(p, dict) and "rate_hz" in p]
    if rates:
        lines.append(f"  rates: {', '.join(rates)}")
    summary = result.summary
    learned = summary.get("ee_potentiated_fraction") or {}
    if "spikes" in summary or learned:
        parts = [f"{int(summary['spikes']):,} spikes"] if "spikes" in summary else []
        if learned:
            parts.append(
                f"E→E potentiated {learned.get('start', float('nan')):.3f} → {learned.get('end', float('nan')):.3f}"
            )
        lines.append(f"  {'; '.join(parts)}")
    lines.append(f"  record: {_record(cfg)}")
    lines.append(f"  folder: {result.out}" if result.out is not None else "  in memory (no folder)")
    return lines


def html_table(lines: list[str]) -> str:
    """The first line as a bold caption, the rest as rows."""
    head, *rest = lines
    rows = "".join(f"<tr><td style='text-align:left'>{html.escape(line.strip())}</td></tr>" for line in rest)
    return f"<table><caption style='text-align:left'><b>{html.escape(head)}</b></caption>{rows}</table>"
