"""A run folder as one NWB file (pynwb), written in bounded memory (issue 16).

What goes where (times in seconds in the NWB file; wmnet's files are in ms):

- spikes.h5 -> the Units table: one unit per neuron that spiked (every neuron with
  `all_units`), id = the global neuron index, columns `population`, `node_id` (local to the
  population), `groups` ("+"-joined group names) and one boolean `in_<group>` per group of
  node_sets.json; spike times in each unit sorted by time.
- reports/<var>.h5 -> processing module "traces": a TimeSeries per variable (samples × recorded
  neurons; unit mV, mV/ms or dimensionless; starting_time and rate), and the table
  "recorded_neurons" whose row j is column j of every trace (id = global index).
- rates.h5, synapses.h5 -> processing modules "rates" and "synapses": one TimeSeries per series
  (its name is the file's dataset path with "/" replaced by "."; `comments` holds the path), and
  the table "constants" with the file's constant datasets (group node ids, synapse counts).
- events.tsv -> the epochs table (tags = trial_type; columns trial_type, stimulus, group, block,
  repetition (-1 for n/a), start_step, stop_step); start/stop times exact from the steps.
- config.yaml (whole) -> experiment_description; run.json (seed, versions, status, summary) and
  the exporting versions -> notes (JSON); source_script says how to rerun it.

The Units table needs each neuron's spikes together, while spikes.h5 is sorted by time: it is
written in bounded memory (`max_spikes_in_memory`; see nwb_units.py), through an hdmf data-chunk
iterator. Traces are copied in row blocks the same way. The NWB file is written to a temporary
name and renamed at the end: a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from wmnet.errors import WmnetError
from wmnet.io.nwb_units import READ_CHUNK, _add_units, _chunk_iterator
from wmnet.io.run_reader import TRACE_VARIABLES, Run, open_run
from wmnet.io.sonata import UNITS

if TYPE_CHECKING:
    from wmnet.result import RunResult

MAX_SPIKES_IN_MEMORY = 8 << 20  # spikes sorted in memory at once (16 bytes each with their ids)


def unit_name(unit: str) -> str:
    """NWB unit text of a wmnet unit attribute ("1" is a pure number)."""
    return "dimensionless" if unit == "1" else unit


def _add_traces(nwbfile: Any, run: Run, stack: contextlib.ExitStack) -> None:
    from hdmf.common import DynamicTable, ElementIdentifiers, VectorData
    from pynwb import TimeSeries

    files = [run.path / "reports" / f"{v}.h5" for v in TRACE_VARIABLES if (run.path / "reports" / f"{v}.h5").exists()]
    if not files:
        return
    module = nwbfile.create_processing_module("traces", "state variables of the recorded neurons (wmnet reports)")
    neurons: np.ndarray | None = None
    for file in files:
        var = file.stem
        f = stack.enter_context(h5py.File(file, "r", locking=False))
        pops = [(name, g) for name, g in f["report"].items()]
        start, stop, step = (float(x) for x in pops[0][1]["mapping/time"][()])
        n_rows = min([round((stop - start) / step), *(g["data"].shape[0] for _, g in pops)])
        ids = np.concatenate(
            [g["mapping/node_ids"][()].astype(np.int64) + (run.n_e if name == "I" else 0) for name, g in pops]
        )
        if neurons is None:
            neurons = ids
            module.add(
                DynamicTable(
                    name="recorded_neurons",
                    id=ElementIdentifiers(name="id", data=ids),
                    description="row j: the neuron in column j of every trace (id = global neuron index)",
                    columns=[
                        VectorData(
                            name="population", description="E or I", data=np.where(ids < run.n_e, "E", "I").tolist()
                        ),
                        VectorData(
                            name="node_id",
                            description="index within the population",
                            data=np.where(ids < run.n_e, ids, ids - run.n_e),
                        ),
                    ],
                )
            )
        elif not np.array_equal(ids, neurons):
            raise WmnetError(f"{file}: records other neurons than {files[0].name}")
        datasets = [g["data"] for _, g in pops]

        def blocks(datasets: list[h5py.Dataset] = datasets, n_rows: int = n_rows) -> Iterator[np.ndarray]:
            for a in range(0, n_rows, READ_CHUNK // 16):
                b = min(n_rows, a + READ_CHUNK // 16)
                yield np.concatenate([d[a:b] for d in datasets], axis=1)

        unit = unit_name(str(datasets[0].attrs.get("units", UNITS.get(var, ""))))
        module.add(
            TimeSeries(
                name=var,
                data=_chunk_iterator(blocks(), (n_rows, ids.size), np.dtype(np.float32), 4096),
                unit=unit,
                starting_time=start / 1000.0,
                rate=1000.0 / step,
                description=f"{var} ({unit}) of the recorded neurons: column j is row j of "
                "recorded_neurons; sample k at starting_time + k/rate",
                comments=f"reports/{var}.h5",
            )
        )


def _add_series(nwbfile: Any, run: Run, name: str, description: str) -> None:
    from hdmf.common import DynamicTable
    from pynwb import TimeSeries

    from wmnet.io.series import read_series

    path = run.path / f"{name}.h5"
    if not path.exists():
        return
    t, values = read_series(path)
    start, _, step = (float(x) for x in values.pop("time"))
    module = nwbfile.create_processing_module(name, description)
    constants = DynamicTable(name="constants", description=f"constant datasets of {name}.h5 (path, values)")
    constants.add_column(name="path", description="dataset path in the file")
    constants.add_column(name="values", description="the dataset's values (float64; integers exact)", index=True)
    with h5py.File(path, "r", locking=False) as f:
        units = {k: str(f[k].attrs.get("units", "")) for k in values}
    for key, v in values.items():
        if v.ndim == 1 and v.shape[0] == t.size and key.split("/")[-1] not in ("node_ids",):
            module.add(
                TimeSeries(
                    name=key.replace("/", "."),
                    data=v,
                    unit=unit_name(units[key]),
                    starting_time=start / 1000.0,
                    rate=1000.0 / step,
                    comments=f"{name}.h5:/{key}",
                    description=f"{key} ({unit_name(units[key])}); sample k at starting_time + k/rate",
                )
            )
        else:
            constants.add_row(path=key, values=np.atleast_1d(v).astype(np.float64).tolist())
    if len(constants):
        module.add(constants)


def _add_epochs(nwbfile: Any, run: Run) -> None:
    rows = run.events()
    if not rows:
        return
    for col, desc in (
        ("trial_type", "the epoch's name"),
        ("stimulus", "the input during the epoch"),
        ("group", "the trial's group(s)"),
        ("block", "the protocol block (n/a outside blocks)"),
        ("repetition", "the block's repetition (-1: n/a)"),
        ("start_step", "first step of the epoch"),
        ("stop_step", "step after the epoch's last"),
    ):
        nwbfile.add_epoch_column(name=col, description=desc)
    for r in rows:
        k0, k1 = int(r["start_step"]), int(r["stop_step"])
        nwbfile.add_epoch(
            start_time=k0 * run.dt / 1000.0,
            stop_time=k1 * run.dt / 1000.0,
            tags=[r["trial_type"]],
            trial_type=r["trial_type"],
            stimulus=r["stimulus"],
            group=r["group"],
            block=r["block"],
            repetition=-1 if r["repetition"] == "n/a" else int(r["repetition"]),
            start_step=k0,
            stop_step=k1,
        )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("wmnet", "pynwb", "hdmf", "h5py", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _nwbfile(run: Run) -> Any:
    import uuid

    from pynwb import NWBFile

    info = run.info
    try:
        started = dt.datetime.strptime(str(info.get("started")), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        started = dt.datetime.fromtimestamp((run.path / "run.json").stat().st_mtime, dt.UTC)
    seed = info.get("seed", run.config.get("seed"))
    notes = {"run.json": info, "exported_with": _versions(), "run_folder": str(run.path.absolute())}
    return NWBFile(
        session_description=(
            f"wmnet simulation of {run.n} LIF neurons ({run.n_e} E, {run.n - run.n_e} I), "
            f"{run.end_ms:g} ms, seed {seed}, status {run.status}"
        ),
        identifier=str(uuid.uuid4()),
        session_start_time=started,
        session_id=run.path.name,
        experiment_description=run.config_yaml,
        notes=json.dumps(notes, indent=1),
        source_script=(
            f"wmnet run config.yaml --seed {seed}   # config.yaml: this file's experiment_description "
            f"(the whole config); wmnet {info.get('versions', {}).get('wmnet', '?')}"
        ),
        source_script_file_name="wmnet",
        data_collection=(
            f"simulated by wmnet: {info.get('engine')} engine, {info.get('device_name', info.get('device'))}, "
            f"{info.get('dtype')}; input {info.get('input') or 'from the config'}, connectivity "
            f"{info.get('connectivity', 'generated')}"
        ),
        keywords=["wmnet", "simulation", "spiking network", "working memory", "LIF"],
    )


def to_nwb(
    result_or_dir: RunResult | str | Path,
    path: str | Path,
    all_units: bool = False,
    partial: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    max_spikes_in_memory: int = MAX_SPIKES_IN_MEMORY,
) -> Path:
    """Write a run (a RunResult with a folder, or the folder) to the NWB file `path`.

    all_units: a unit for every neuron (default: those that spiked). partial: export a run that
    did not complete (what its files hold). max_spikes_in_memory: spikes sorted at once (about
    24 bytes each); larger runs go through a temporary bucket file beside `path`.
    Returns `path`. Bad input raises WmnetError before anything is written.
    """
    try:
        from pynwb import NWBHDF5IO
    except ImportError:
        raise WmnetError("NWB export needs pynwb: pip install 'wmnet[nwb]'") from None
    out = Path(path)
    if out.is_dir():
        raise WmnetError(f"--nwb {out}: is a folder")
    if out.exists() and not overwrite:
        raise WmnetError(f"--nwb {out}: exists (use --overwrite to replace it)")
    if not out.parent.is_dir():
        raise WmnetError(f"--nwb {out}: no folder {out.parent}")
    if max_spikes_in_memory < 1:
        raise WmnetError(f"max_spikes_in_memory {max_spikes_in_memory}: expected a positive count")
    run = open_run(result_or_dir, partial)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.nwb")  # pynwb warns about names not ending in .nwb
    try:
        with contextlib.ExitStack() as stack:  # the source files stay open until the iterators are written
            nwbfile = _nwbfile(run)
            _add_units(
                nwbfile,
                run,
                all_units,
                max_spikes_in_memory,
                out.with_name(f".{out.name}.{os.getpid()}.spikes.h5"),
                progress,
                stack,
            )
            _add_traces(nwbfile, run, stack)
            _add_series(nwbfile, run, "rates", "population and group rates (Hz) in bins (wmnet rates.h5)")
            _add_series(nwbfile, run, "synapses", "E→E synapse statistics and switch counts (wmnet synapses.h5)")
            _add_epochs(nwbfile, run)
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwbfile)
        os.replace(tmp, out)
    except OSError as e:
        raise WmnetError(f"--nwb {out}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
