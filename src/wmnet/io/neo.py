"""A run folder as a Neo Block, for Elephant and the other Neo-based tools (issue 16).

One Segment from 0 to the end of the data:
- a SpikeTrain per neuron (every neuron, silent ones too), annotated with `population`,
  `node_id` (local), `global_id` and `groups` (node_sets.json names);
- an AnalogSignal per traced variable (columns: the recorded neurons, with array annotations
  `population`, `node_id`, `global_id`), and one "rates" AnalogSignal (columns: rates.h5's
  groups, Hz) when the run wrote rates;
- an Epoch "protocol" from events.tsv: labels = trial_type, array annotations stimulus, group,
  block, repetition, start_step, stop_step.

Neo objects live in memory: this suits runs whose spikes fit in it (use `to_nwb` for the rest).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from wmnet.errors import WmnetError
from wmnet.io.run_reader import TRACE_VARIABLES, open_run

if TYPE_CHECKING:
    import neo

    from wmnet.result import RunResult


def _quantity(unit: str) -> Any:
    """A wmnet unit attribute ("mV", "mV/ms", "Hz", "1") as a quantities unit."""
    import quantities as pq

    return {"mV": pq.mV, "mV/ms": pq.mV / pq.ms, "Hz": pq.Hz, "1": pq.dimensionless}.get(unit, pq.dimensionless)


def to_neo(result_or_dir: RunResult | str | Path, time_units: str = "ms", partial: bool = False) -> neo.Block:
    """A neo.Block of a run (a RunResult with a folder, or the folder): see the module's docstring.

    time_units: "ms" (wmnet's) or "s" for the spike trains, signals and epochs. partial: read a
    run that did not complete (what its files hold)."""
    try:
        import neo
        import quantities as pq
    except ImportError:
        raise WmnetError("Neo export needs neo: pip install 'wmnet[nwb]'") from None
    from wmnet.io.series import read_series
    from wmnet.io.sonata import read_report, read_spikes

    if time_units not in ("ms", "s"):
        raise WmnetError(f"time_units {time_units!r}: expected 'ms' or 's'")
    run = open_run(result_or_dir, partial)
    scale = 1.0 if time_units == "ms" else 1e-3
    tu = pq.ms if time_units == "ms" else pq.s
    block = neo.Block(
        name=f"wmnet run {run.path.name}", description=run.config_yaml, seed=run.info.get("seed"), status=run.status
    )
    seg = neo.Segment(name="run", index=0)
    block.segments.append(seg)
    t_stop = run.end_ms * scale

    membership: list[list[str]] = [[] for _ in range(run.n)]
    for name, ids in run.groups.items():
        for i in ids:
            membership[int(i)].append(name)
    spikes = read_spikes(run.path / "spikes.h5") if (run.path / "spikes.h5").exists() else {}
    for pop, offset, size in run.populations:
        ts, ids = spikes.get(pop, (np.zeros(0), np.zeros(0, dtype=np.uint64)))
        ids = ids.astype(np.int64)
        order = np.argsort(ids, kind="stable")  # stable: each neuron's spikes stay in time order
        bounds = np.searchsorted(ids[order], np.arange(size + 1))
        times = ts[order] * scale
        for local in range(size):
            gid = offset + local
            seg.spiketrains.append(
                neo.SpikeTrain(
                    times[bounds[local] : bounds[local + 1]],
                    units=tu,
                    t_start=0.0 * tu,
                    t_stop=t_stop * tu,
                    name=f"{pop}{local}",
                    population=pop,
                    node_id=local,
                    global_id=gid,
                    groups=membership[gid],
                )
            )

    for var in TRACE_VARIABLES:
        path = run.path / "reports" / f"{var}.h5"
        if not path.exists():
            continue
        with h5py.File(path, "r", locking=False) as f:
            first = next(iter(f["report"].values()))
            unit = str(first["data"].attrs.get("units", "1"))
            start, _, step = (float(x) for x in first["mapping/time"][()])
        parts = list(read_report(path).items())
        data = np.concatenate([d for _, (_, _, d) in parts], axis=1)
        pops = np.concatenate([np.full(ids.size, p) for p, (_, ids, _) in parts])
        local_ids = np.concatenate([ids.astype(np.int64) for _, (_, ids, _) in parts])
        gids = np.where(pops == "I", local_ids + run.n_e, local_ids)
        seg.analogsignals.append(
            neo.AnalogSignal(
                data,
                units=_quantity(unit),
                sampling_period=step * scale * tu,
                t_start=start * scale * tu,
                name=var,
                array_annotations={"population": pops, "node_id": local_ids, "global_id": gids},
            )
        )

    if (run.path / "rates.h5").exists():
        t, values = read_series(run.path / "rates.h5")
        names = [k.split("/")[1] for k in values if k.startswith("rates/") and k.endswith("/rate_hz")]
        if names and t.size:
            start, _, step = (float(x) for x in values["time"])
            data = np.stack([values[f"rates/{g}/rate_hz"] for g in names], axis=1)
            seg.analogsignals.append(
                neo.AnalogSignal(
                    data,
                    units=pq.Hz,
                    sampling_period=step * scale * tu,
                    t_start=start * scale * tu,
                    name="rates",
                    description="population and group rates in bins starting at each sample time (rates.h5)",
                    array_annotations={"group": np.array(names)},
                )
            )

    rows = run.events()
    if rows:
        k0 = np.array([int(r["start_step"]) for r in rows])
        k1 = np.array([int(r["stop_step"]) for r in rows])
        seg.epochs.append(
            neo.Epoch(
                times=k0 * run.dt * scale * tu,
                durations=(k1 - k0) * run.dt * scale * tu,
                labels=np.array([r["trial_type"] for r in rows]),
                name="protocol",
                array_annotations={
                    "stimulus": np.array([r["stimulus"] for r in rows]),
                    "group": np.array([r["group"] for r in rows]),
                    "block": np.array([r["block"] for r in rows]),
                    "repetition": np.array([-1 if r["repetition"] == "n/a" else int(r["repetition"]) for r in rows]),
                    "start_step": k0,
                    "stop_step": k1,
                },
            )
        )
    block.check_relationships()
    return block
