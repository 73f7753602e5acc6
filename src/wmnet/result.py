"""What a run produced: `RunResult`, returned by `Simulation.run` or reloaded from a run folder.

    result = RunResult.from_folder("runs/demo")   # complete, interrupted or still being written
    result.spikes.trains()["E"][12]               # spike times (ms) of E neuron 12
    result.spikes.to_pandas()                     # one row per spike: population, node_id, t_ms
    result.rates.to_pandas()                      # one column per group (Hz), indexed by bin start (ms)
    result.efficacies()                           # E→E efficacies (mV/ms), scipy.sparse, [post, pre]

The same accessors work on a result in memory. The views `Spikes`, `Traces`, `Rates` and `SynapseStats`
(result_views.py, importable from here too) read the run's monitor or else its files: see that module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wmnet.errors import WmnetError
from wmnet.io.runinfo import read_json
from wmnet.io.sonata import PopulationRange
from wmnet.result_views import Rates, Spikes, SynapseStats, Traces

if TYPE_CHECKING:
    import scipy.sparse

    from wmnet.config import Config
    from wmnet.engines import Engine
    from wmnet.monitors import RateMonitor, SpikeMonitor, StateMonitor, SynapseMonitor
    from wmnet.network import Network


def populations_of(cfg: Config) -> list[PopulationRange]:
    """E then I, with their global offsets."""
    n_e = cfg.populations.E.size
    return [PopulationRange("E", 0, n_e), PopulationRange("I", n_e, cfg.populations.I.size)]


def ee_efficacies(
    rowptr: np.ndarray, post: np.ndarray, potentiated: np.ndarray, J_p: float, J_d: float, n_e: int
) -> scipy.sparse.csr_array:
    """The E→E efficacies (mV/ms: J_p where potentiated, else J_d) as an n_E × n_E sparse matrix indexed
    [post, pre], as `Connectivity.to_dense` (several synapses of one pair summed); from the CSR over pre of
    the connectivity (rowptr, post)."""
    import scipy.sparse

    J = np.where(np.asarray(potentiated) != 0, J_p, J_d)
    by_pre = scipy.sparse.csr_array((J, np.asarray(post, dtype=np.int64), np.asarray(rowptr)), shape=(n_e, n_e))
    out = by_pre.T.tocsr()
    out.sum_duplicates()
    return out


def snapshot_times(folder: Path) -> dict[float, Path]:
    """{t_ms: path} of a run folder's snapshots/connectivity_<t>ms.npz, in time order."""
    found = {
        float(p.stem.removeprefix("connectivity_").removesuffix("ms")): p
        for p in (folder / "snapshots").glob("connectivity_*ms.npz")
    }
    return dict(sorted(found.items()))


class RunResult:
    """What a run produced. With an output folder, the files hold the same data.

    `spikes`, `traces`, `rates` and `synapse_stats` are views (see result_views.py); `rates` and
    `synapse_stats` are None when the run did not record them. `engine` and `network` are those of the run in
    memory (None for a result reloaded with `from_folder`).
    """

    def __init__(
        self,
        config: Config,
        spikes: SpikeMonitor | Spikes | None,
        traces: StateMonitor | Traces | None,
        summary: dict[str, Any],
        engine: Engine | None = None,
        out: Path | None = None,
        info: dict[str, Any] | None = None,
        rates: RateMonitor | Rates | None = None,
        synapse_stats: SynapseMonitor | SynapseStats | None = None,
        network: Network | None = None,
    ) -> None:
        self.config, self.summary, self.engine, self.network = config, summary, engine, network
        self.out = None if out is None else Path(out)
        self.info: dict[str, Any] = info if info is not None else {}
        pops = populations_of(config)
        folder = self.out
        self.spikes = (
            spikes
            if isinstance(spikes, Spikes)
            else Spikes(pops, spikes, None if folder is None else folder / "spikes.h5")
        )
        self.traces = (
            traces
            if isinstance(traces, Traces)
            else Traces(pops, traces, None if folder is None else folder / "reports")
        )
        order = self.group_order()
        self.rates: Rates | None = (
            rates if isinstance(rates, Rates) or rates is None else Rates(rates, self._file("rates.h5"), order)
        )
        self.synapse_stats: SynapseStats | None = (
            synapse_stats
            if isinstance(synapse_stats, SynapseStats) or synapse_stats is None
            else SynapseStats(synapse_stats, self._file("synapses.h5"))
        )

    def _file(self, name: str) -> Path | None:
        return None if self.out is None else self.out / name

    def group_order(self) -> list[str]:
        """The group names of node_sets.json in their defined order ([] without a folder or groups)."""
        sets = self._file("node_sets.json")
        return [n for n in read_json(sets) if ":" not in n] if sets is not None and sets.exists() else []

    def groups(self) -> dict[str, np.ndarray]:
        """Global neuron indices of every group (E, I and the config's groups), from node_sets.json or, in
        memory, the config (groups are drawn from its seed)."""
        cfg = self.config
        n_e = cfg.populations.E.size
        sets = self._file("node_sets.json")
        if sets is not None and sets.exists():
            from wmnet.io.nodesets import read_groups

            return read_groups(sets, n_e, cfg.n_neurons)
        from wmnet.config import group_ids

        return {name: group_ids(g) for name, g in cfg.resolve_groups().items()}

    @classmethod
    def from_folder(cls, folder: str | Path) -> RunResult:
        """A run folder as a result: complete, interrupted, or still being written (what is on disk so far)."""
        from wmnet.config import Config, load_config

        d = Path(folder)
        if not (d / "run.json").exists():
            raise WmnetError(f"{d}: not a wmnet run folder (no run.json)")
        info = read_json(d / "run.json")
        try:
            cfg = load_config(d / "config.yaml") if (d / "config.yaml").exists() else Config(**info["config"])
        except (KeyError, TypeError) as e:
            raise WmnetError(f"{d / 'run.json'}: not a readable wmnet run.json ({e})") from None
        pops = populations_of(cfg)
        result = cls(cfg, Spikes(pops, path=d / "spikes.h5"), Traces(pops, folder=d / "reports"), {}, out=d, info=info)
        result.summary = dict(info.get("summary") or {})
        order = result.group_order()
        result.rates = Rates(path=d / "rates.h5", order=order) if (d / "rates.h5").exists() else None
        result.synapse_stats = SynapseStats(path=d / "synapses.h5") if (d / "synapses.h5").exists() else None
        return result

    @property
    def status(self) -> str:
        """run.json's status: "complete", "interrupted", "running" (or a writer that died), "failed"."""
        return str(self.info.get("status", "unknown"))

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    @property
    def simulated_ms(self) -> float:
        """Simulated time (ms) that run.json reports (a running run's files may hold a little more)."""
        return float(self.info.get("simulated_ms") or 0.0)

    def snapshot_times(self) -> list[float]:
        """Times (ms) of the folder's connectivity snapshots (`record.snapshots`)."""
        return [] if self.out is None else list(snapshot_times(self.out))

    def ee_state(self, t_ms: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(rowptr, post, potentiated, t_ms) of the E→E synapses, CSR over pre with local indices: at snapshot
        time `t_ms`, or by default from the engine of a result in memory (its state now: the end of this run
        unless the simulation went on), else at the folder's last snapshot."""
        if t_ms is None and self.engine is not None and self.network is not None:
            proj = self.network.connectivity.projections["E->E"]
            pot = self.engine.synapses().potentiated
            now = self.engine.k * self.config.dt
            return proj.rowptr.cpu().numpy(), proj.post_idx.cpu().numpy().astype(np.int64), pot.cpu().numpy(), now
        snaps = {} if self.out is None else snapshot_times(self.out)
        if not snaps:
            where = "this result has no run folder" if self.out is None else f"{self.out} holds no snapshot"
            raise WmnetError(f"no E→E synapses: {where} (record.snapshots: [t_ms, ...] writes them)")
        t = max(snaps) if t_ms is None else float(t_ms)
        if t not in snaps:
            raise WmnetError(f"no snapshot at {t:g} ms (snapshots at: {', '.join(f'{s:g}' for s in snaps)} ms)")
        from wmnet.io.connectivity_files import read_npz

        d = read_npz(snaps[t], "snapshot")
        try:
            return d["EE_rowptr"], d["EE_post"].astype(np.int64), d["EE_potentiated"], float(d["t_ms"])
        except (KeyError, TypeError, ValueError):
            raise WmnetError(
                f"{snaps[t]}: not a complete wmnet snapshot (EE_rowptr, EE_post, EE_potentiated, t_ms)"
            ) from None

    def efficacies(self, t_ms: float | None = None) -> scipy.sparse.csr_array:
        """E→E efficacies (mV/ms: J_p or J_d per synapse, before receptor scales) as a sparse n_E × n_E matrix
        indexed [post, pre] (the synapses of a pair summed), at the time `ee_state` picks."""
        rowptr, post, pot, _ = self.ee_state(t_ms)
        ee = self.config.projections.EE
        return ee_efficacies(rowptr, post, pot, ee.J_p, ee.J_d, self.config.populations.E.size)

    def __repr__(self) -> str:
        from wmnet.display import result_lines

        return "\n".join(result_lines(self))

    def _repr_html_(self) -> str:
        from wmnet.display import html_table, result_lines

        return html_table(result_lines(self))
