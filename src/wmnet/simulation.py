"""The run loop: stimulus → engine step → monitors, with a progress bar and a summary.

net = Network.build(load_config("configs/seed.yaml"))
sim = Simulation(net)
result = sim.run(out="runs/demo")     # or sim.run() to keep everything in memory
result.spikes.i, result.spikes.t, result.traces.v
"""

from __future__ import annotations

import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from tqdm import tqdm

from wmnet.checkpoint import CHECKPOINT, save_checkpoint
from wmnet.config import Config, group_ids, steps_in
from wmnet.connectivity import save_snapshot
from wmnet.dynamics import VARIABLES, NeuronState
from wmnet.engines import Engine, make_engine, resolve_engine
from wmnet.engines.base import TraceRequest, run_block_stepwise
from wmnet.errors import WmnetError
from wmnet.io.nodesets import write_node_sets
from wmnet.io.runinfo import lock_folder, write_json
from wmnet.io.series import SeriesWriter
from wmnet.io.sonata import PopulationRange, ReportWriter, SpikeWriter
from wmnet.memory import footprint
from wmnet.monitors import RateMonitor, SpikeMonitor, StateMonitor, SynapseMonitor
from wmnet.network import Network
from wmnet.protocol import Schedule, base_scales
from wmnet.result import RunResult
from wmnet.stimuli import Stimulus, make_stimulus

PACKAGES = ("wmnet", "torch", "numpy", "numba", "triton", "h5py", "pydantic")
BLOCK_STEPS = 200  # steps per engine call (a CUDA graph on the GPU)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def populations(cfg: Config) -> list[PopulationRange]:
    return [
        PopulationRange("E", 0, cfg.populations.E.size),
        PopulationRange("I", cfg.populations.E.size, cfg.populations.I.size),
    ]


def trace_neurons(cfg: Config) -> np.ndarray:
    """Recorded neuron indices, negative ones counted from the end, deduplicated, sorted."""
    n = cfg.n_neurons
    idx = [i + n if i < 0 else i for i in cfg.record.traces.neurons]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise WmnetError(f"record.traces.neurons: index {bad[0]} outside 0..{n - 1}")
    return np.unique(np.asarray(idx, dtype=np.int64))


def potentiated_fraction(bits: torch.Tensor) -> float:
    """Fraction of set bits, without a float copy of a possibly huge tensor (NaN if empty)."""
    return bits.sum(dtype=torch.int64).item() / bits.numel() if bits.numel() else float("nan")


@dataclass
class StopRequest:
    """Set by SIGINT/SIGTERM: the run stops at the end of the current block."""

    requested: bool = False


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT and SIGTERM into a StopRequest while the block runs; restore the old handlers.

    A second signal raises KeyboardInterrupt at once (the run then keeps its last checkpoint).
    Handlers can only be set in the main thread; elsewhere the signals keep their handlers.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, h in old.items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)


def _write_error(err: OSError, out: Path | None, checkpoint_k: int | None, dt: float) -> str:
    """One line for a failed write, saying what can still be resumed from."""
    what = f"cannot write the outputs in {out} ({err.strerror or err})"
    if checkpoint_k is None:
        return f"{what}; no checkpoint was written, so the run must start again"
    return (
        f"{what}; checkpoint.pt from step {checkpoint_k} (t = {checkpoint_k * dt:g} ms) is intact: "
        f"`wmnet resume {out}` once the problem is fixed"
    )


def _first_non_finite(state: NeuronState, k: int, block: int, dt: float, L: torch.Tensor | None = None) -> str | None:
    """None if every neuron's state, and the E→E hidden variables `L`, are finite at step k; else
    a message naming the variable, the neuron (or synapse) and the step. Checked on the device
    once per block (one reduction, one sync)."""
    tensors = [state[v] for v in VARIABLES] + ([L.reshape(-1)] if L is not None else [])
    if bool(torch.stack([t.isfinite().all() for t in tensors]).all()):
        return None
    for var, t in zip([*VARIABLES, "L"], tensors):
        bad = (~t.isfinite()).nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            what = f"L of E→E synapse {i} (storage order)" if var == "L" else f"{var} of neuron {i}"
            return (
                f"numerical blow-up: {what} is {float(t[i])} at step {k} (t = {k * dt:g} ms; "
                f"the state is checked every block, it was finite at step {k - block})"
            )
    return None


def _ee_L(eng: Engine) -> torch.Tensor | None:
    """The engine's own E→E L tensor (no copy, no catch-up: lazily updated values are checked
    as they stand), or None for an engine that does not expose it."""
    tensors = getattr(eng, "_state_tensors", None)
    return tensors().get("L") if tensors is not None else None


@dataclass
class BlockTimer:
    """Wall time of a run's blocks. The first block also pays for kernel compilation (numba on
    the CPU, Triton and CUDA graph capture on the GPU): its excess over what its steps cost at the
    later blocks' speed is reported as compile time and kept out of the speed."""

    first_wall: float | None = None  # s
    first_steps: int = 0
    rest_wall: float = 0.0  # s, every later block
    rest_steps: int = 0
    ema: float | None = None  # wall s per simulated s over recent blocks (exponential moving average)
    weight: float = 0.3  # of the newest block in the average

    def add(self, wall: float, steps: int, dt: float) -> None:
        """One block of `steps` steps of `dt` ms that took `wall` s."""
        per = wall / (steps * dt / 1000) if steps else 0.0
        if self.first_wall is None:
            self.first_wall, self.first_steps, self.ema = wall, steps, per
            return
        self.rest_wall += wall
        self.rest_steps += steps
        # The first block's compile time is not the engine's speed: start afresh after it.
        self.ema = per if self.rest_steps == steps else (1 - self.weight) * self.ema + self.weight * per

    def compile_seconds(self) -> float:
        """The first block's wall time beyond its steps at the later blocks' mean speed (0 when
        there is no later block to compare with)."""
        if self.first_wall is None or not self.rest_steps:
            return 0.0
        return max(0.0, self.first_wall - self.first_steps * self.rest_wall / self.rest_steps)

    def postfix(self, done: int, n_steps: int, dt: float) -> str:
        """The speed of recent blocks and the time left at that speed."""
        if self.ema is None:
            return ""
        left = self.ema * (n_steps - done) * dt / 1000
        return f"{self.ema:.3g} s per simulated s, {tqdm.format_interval(left)} left"


class Simulation:
    """One network, one engine, one stimulus. `run` may be called repeatedly to continue."""

    def __init__(
        self,
        network: Network,
        stimulus: Stimulus | None = None,
        engine: str | None = None,
        input_path: str | Path | None = None,
        keep_switch_events: bool = False,
    ):
        cfg = network.config
        self.network, self.config = network, cfg
        self.stimulus = stimulus or make_stimulus(cfg, network.device, network.dtype, input_path)
        self.engine_name = resolve_engine(engine or cfg.engine, network)
        self.engine = make_engine(self.engine_name, network, keep_switch_events=keep_switch_events)
        self.initial_potentiated = potentiated_fraction(network.connectivity.initial.potentiated)
        self.schedule = Schedule.from_config(cfg) if cfg.protocol is not None else None
        self.groups = cfg.resolve_groups()  # drawn once: monitors and node_sets.json share them

    def run(
        self,
        duration: float | None = None,
        out: str | Path | None = None,
        progress: bool = True,
        keep_in_memory: bool | None = None,
        info: dict[str, Any] | None = None,
        lock: IO[str] | None = None,
    ) -> RunResult:
        """Simulate `duration` ms (default: the config's) from the current state.

        A protocol's epochs are looked up by the engine's step, counted from the start of the
        simulation as the stimulus is, so a second `run` continues the protocol where the first
        stopped. `lock`: `out`'s lock (`lock_folder`), already held by the caller (the CLI takes
        it when it claims the folder); the run then uses it and leaves closing it to the caller.

        With `out`, spikes and traces stream to SONATA files there and run.json is written
        (status "running" until it ends; "interrupted" on SIGINT, SIGTERM or Ctrl-C, which
        stop the run at the end of the current block and raise KeyboardInterrupt(result)).
        checkpoint.pt is written there every record.checkpoint_every ms and at the end, and
        always when interrupted; `resume` (`wmnet resume DIR`) continues from it.
        """
        cfg = self.config
        n_steps = cfg.n_steps if duration is None else steps_in(duration, cfg.dt, "duration")
        keep = out is None if keep_in_memory is None else keep_in_memory
        return self._run(n_steps, None if out is None else Path(out), progress, keep, info, None, lock)

    def resume(
        self,
        out: str | Path,
        checkpoint: dict[str, Any],
        progress: bool = True,
        info: dict[str, Any] | None = None,
        lock: IO[str] | None = None,
    ) -> RunResult:
        """Continue the run in folder `out` from `checkpoint` (checkpoint.py) to its planned end.

        The network must be the one the checkpoint was written from (same config, seed and
        connectivity). The files in `out` are cut back to the checkpoint's positions, then
        appended to, so they end up as one uninterrupted run would have written them.
        """
        self.engine.load_state_dict(checkpoint["engine"])
        end = int(checkpoint["k_start"]) + self.config.n_steps
        return self._run(max(0, end - self.engine.k), Path(out), progress, False, info, checkpoint, lock)

    def _writers(
        self, out: Path, neurons: np.ndarray, append: bool
    ) -> tuple[SpikeWriter | None, dict[str, ReportWriter]]:
        cfg, rec = self.config, self.config.record
        pops = populations(cfg)
        (out / "reports").mkdir(parents=True, exist_ok=True)
        spike_writer = SpikeWriter(out / "spikes.h5", pops, append) if rec.spikes else None
        t0, step_ms = self.engine.k * cfg.dt, rec.traces.every * cfg.dt
        # Traces in the run's dtype (float16 ones as float32): a float64 run keeps every digit.
        report_dtype = np.float64 if self.network.dtype == torch.float64 else np.float32
        return spike_writer, {
            v: ReportWriter(out / "reports" / f"{v}.h5", v, pops, neurons, t0, step_ms, append, dtype=report_dtype)
            for v in rec.traces.variables
        }

    def _learning_monitors(
        self, k0: int, flush_steps: int, out: Path | None, keep: bool, append: bool
    ) -> tuple[RateMonitor | None, SynapseMonitor | None]:
        """Rate and synapse-statistics monitors whose grids start at step k0 (writers if `out`)."""
        cfg, rec, net = self.config, self.config.record, self.network
        groups = self.groups
        rates = syn = None
        if rec.rates is not None:
            b = steps_in(rec.rates.bin, cfg.dt, "record.rates.bin")
            writer = (
                None
                if out is None
                else SeriesWriter(
                    out / "rates.h5",
                    {f"rates/{g}/rate_hz": (np.float32, "Hz") for g in groups},
                    {f"rates/{g}/node_ids": group_ids(ids).astype(np.uint64) for g, ids in groups.items()},
                    k0 * cfg.dt,
                    b * cfg.dt,
                    append,
                )
            )
            rates = RateMonitor(groups, b, cfg.dt, k0, net.device, flush_steps, writer, keep)
        if rec.synapses is not None and rec.synapses.every is not None:
            s = steps_in(rec.synapses.every, cfg.dt, "record.synapses.every")
            ee = cfg.projections.EE
            syn = SynapseMonitor(
                list(rec.synapses.groups),
                groups,
                net.connectivity,
                ee.J_p,
                ee.J_d,
                s,
                cfg.dt,
                k0,
                max(1, flush_steps // s),
                None,
                keep,
                last_switches=(self.engine.switches.n_up, self.engine.switches.n_down),
            )
            if out is not None:
                syn.writer = SeriesWriter(
                    out / "synapses.h5", syn.series(), syn.constants(), k0 * cfg.dt, s * cfg.dt, append
                )
        return rates, syn

    def _run(
        self,
        n_steps: int,
        out: Path | None,
        progress: bool,
        keep: bool,
        info: dict[str, Any] | None,
        resumed: dict[str, Any] | None,
        held: IO[str] | None = None,
    ) -> RunResult:
        neurons = trace_neurons(self.config)
        # One writer per folder; a caller that already holds the lock keeps it (and closes it).
        lock = lock_folder(out) if out is not None and held is None else None
        try:
            return self._run_locked(n_steps, out, progress, keep, info, resumed, neurons)
        finally:
            if lock is not None:
                lock.close()

    def _run_locked(
        self,
        n_steps: int,
        out: Path | None,
        progress: bool,
        keep: bool,
        info: dict[str, Any] | None,
        resumed: dict[str, Any] | None,
        neurons: np.ndarray,
    ) -> RunResult:
        cfg, net, eng = self.config, self.network, self.engine
        rec = cfg.record
        block = max(1, min(round(rec.flush_every / cfg.dt), max(1, (1 << 26) // max(net.n, 1))))
        spike_writer, report_writers = self._writers(out, neurons, resumed is not None) if out else (None, {})
        spikes = SpikeMonitor(net.n, cfg.dt, net.device, block, spike_writer, keep)
        traces = StateMonitor(
            list(rec.traces.variables),
            neurons,
            rec.traces.every,
            cfg.dt,
            net.device,
            max(1, block // rec.traces.every),
            report_writers,
            keep,
        )
        sigma_sum = torch.zeros(2, dtype=torch.int64, device=net.device)
        k_start, steps_before, checkpoint_k = eng.k if resumed is None else int(resumed["k_start"]), 0, None
        rates, syn_stats = self._learning_monitors(k_start, block, out, keep, resumed is not None)
        if resumed is not None:
            # Drop what was written after the checkpoint; carry its running sums on.
            if spike_writer is not None:
                spike_writer.truncate(resumed["positions"]["spikes"])
            for v, w in report_writers.items():
                w.truncate(resumed["positions"]["reports"][v])
            for mon, key in ((rates, "rates"), (syn_stats, "synapses")):
                if mon is not None:
                    if mon.writer is not None:
                        mon.writer.truncate(resumed["monitors"][key]["rows"])
                    mon.load(resumed["monitors"][key], eng.k)
            spikes.count += resumed["count"].to(net.device)
            sigma_sum += resumed["sigma_sum"].to(net.device)
            steps_before, checkpoint_k = int(resumed["steps_done"]), eng.k
        info = dict(info or {})
        base = self._run_info(info)
        if resumed is not None:
            base["resumed_at_ms"] = eng.k * cfg.dt
        if out is not None:
            write_json(out / "run.json", {**base, "status": "running"})
            write_node_sets(out / "node_sets.json", self.groups, net.n_E)
            if self.schedule is not None:
                self.schedule.write_events(out / "events.tsv")
        # The engine's scales may be a loaded checkpoint's epoch's: set them from the schedule.
        outside = base_scales(cfg)  # the scales outside protocol epochs
        eng.set_scales(outside)
        ck_steps = steps_in(rec.checkpoint_every, cfg.dt, "record.checkpoint_every") if rec.checkpoint_every else 0

        def checkpoint() -> int:
            assert out is not None
            spikes.flush()  # first: the files and the positions must agree
            traces.flush()
            positions = {
                "spikes": spike_writer.positions() if spike_writer is not None else {},
                "reports": {v: w.positions() for v, w in report_writers.items()},
            }
            # Their state() flushes too; it adds what is not in the files (the partial rate bin).
            monitors = {key: mon.state() for key, mon in (("rates", rates), ("synapses", syn_stats)) if mon is not None}
            save_checkpoint(
                out / CHECKPOINT,
                {
                    "engine": eng.state_dict(),
                    "positions": positions,
                    "monitors": monitors,
                    "k_start": k_start,
                    "steps_done": steps_before + done,
                    "count": spikes.count.cpu(),
                    "sigma_sum": sigma_sum.cpu(),
                    "config": cfg.to_dict(),
                    "seed": cfg.seed,
                },
            )
            return eng.k

        n_e = net.n_E
        # Snapshot steps, counted from the run folder's first step (as the config's times are).
        snap_steps = sorted({k_start + steps_in(t, cfg.dt, "record.snapshots") for t in rec.snapshots})
        status = "complete"
        failure: str | None = None  # why the run stopped, when it failed
        t_start = time.perf_counter()
        # Simulated ms out of the total; the speed and the time left come from recent blocks
        # (BlockTimer.postfix), not tqdm's average since the start, which includes compilation.
        bar = tqdm(
            total=round(n_steps * cfg.dt, 6),
            unit="ms",
            disable=not progress,
            bar_format="{percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} ms simulated [{elapsed} elapsed{postfix}]",
            file=sys.stderr,
        )
        timer = BlockTimer()
        done = 0
        trace = None
        if rec.traces.variables and neurons.size:
            trace = TraceRequest(
                tuple(rec.traces.variables),
                torch.as_tensor(neurons, dtype=torch.long, device=net.device),
                rec.traces.every,
            )
        run_block = getattr(eng, "run_block", None) or partial(run_block_stepwise, eng)
        # Steps per block: a multiple of the trace interval, so that a GPU engine replays one
        # captured graph for every full block.
        every = rec.traces.every
        per_block = every * max(1, BLOCK_STEPS // every) if trace is not None else BLOCK_STEPS
        if syn_stats is not None and syn_stats.due(eng.k):
            syn_stats.sample(eng)  # the sample at the grid's first step (t = 0 of a fresh run)
        # False while a block is half done (engine stepped, monitors not yet): no checkpoint then.
        consistent = True
        try:
            try:
                with stop_on_signals() as stop:
                    while done < n_steps and not stop.requested:
                        k = eng.k
                        m = min(per_block, n_steps - done)
                        if syn_stats is not None:
                            # Blocks end at every sampling step: the samples are at k0 + j·every
                            # whatever the block grid (a resumed run's may be shifted).
                            m = min(m, syn_stats.every_steps - (k - k_start) % syn_stats.every_steps)
                        later = [t for t in snap_steps if t > k]
                        if later:  # blocks end at snapshot steps too
                            m = min(m, later[0] - k)
                        # The protocol's clock is the stimulus's: the step since the simulation began.
                        epoch = self.schedule.at(k) if self.schedule is not None else None
                        if epoch is not None:  # and at epoch boundaries, where receptor scales may change
                            m = min(m, epoch.stop - k)
                        scales = epoch.scales if epoch is not None else outside
                        if scales != eng.scales:
                            eng.set_scales(scales)
                        t_block = time.perf_counter()
                        i_ext = self.stimulus.block(k, m)
                        consistent = False
                        flags, steps, samples = run_block(i_ext, trace)
                        traces.record_samples(steps, samples)
                        onsets = (flags >> 1).bool()
                        spikes.record_block(k, onsets)
                        if rates is not None:
                            rates.record_block(k, onsets)
                        if syn_stats is not None and syn_stats.due(eng.k):
                            syn_stats.sample(eng)
                        sigma = flags & 1
                        # count_nonzero over a whole block: a plain sum of uint8 is many times slower.
                        sigma_sum[0] += torch.count_nonzero(sigma[:, :n_e])
                        sigma_sum[1] += torch.count_nonzero(sigma[:, n_e:])
                        done += m
                        consistent = True
                        if out is not None and eng.k in snap_steps:
                            self._snapshot(out, eng, eng.k - k_start)
                        failure = _first_non_finite(eng.neurons, eng.k, m, cfg.dt, _ee_L(eng))
                        if failure is not None:
                            status = "failed"
                            if out is not None:
                                failure += f"; the data up to then is in {out}"
                            break
                        if out is not None and ck_steps and (k + m) // ck_steps > k // ck_steps:
                            checkpoint_k = checkpoint()
                        timer.add(time.perf_counter() - t_block, m, cfg.dt)
                        bar.update(round(done * cfg.dt - bar.n, 6))
                        bar.set_postfix_str(timer.postfix(done, n_steps, cfg.dt), refresh=False)
                    if done < n_steps and status != "failed":
                        status = "interrupted"
            except KeyboardInterrupt:
                status = "interrupted"
            except OSError as e:  # a full disk, a folder gone or read-only: stop cleanly
                status, failure = "failed", _write_error(e, out, checkpoint_k, cfg.dt)
            # Also at the end of a run that has one (periodic or resumed from): never left stale.
            wanted = (
                status == "interrupted"
                or ck_steps
                or checkpoint_k is not None
                or (status == "complete" and rec.checkpoint_at_end)
            )
            # A blown-up state is not worth resuming from: the last good checkpoint stands.
            if out is not None and consistent and wanted and checkpoint_k != eng.k and status != "failed":
                checkpoint_k = checkpoint()
        finally:
            bar.close()
            try:
                spikes.flush()
                traces.flush()
                for mon in (rates, syn_stats):
                    if mon is not None:
                        mon.flush()
            except OSError as e:
                if status != "failed":  # keep the first error: it is the cause
                    status, failure = "failed", _write_error(e, out, checkpoint_k, cfg.dt)
            for w in [spike_writer, *report_writers.values(), *(m.writer for m in (rates, syn_stats) if m)]:
                if w is not None:
                    try:
                        w.close()
                    except OSError:
                        pass  # already reported; the file holds what its last flush wrote
        compile_seconds = timer.compile_seconds()
        sim_seconds = time.perf_counter() - t_start - compile_seconds
        total = steps_before + done
        summary = self._summary(spikes, sigma_sum, total)
        info = {
            **base,
            "status": status,
            "steps_done": total,
            "simulated_ms": total * cfg.dt,
            "checkpoint_ms": None if checkpoint_k is None else checkpoint_k * cfg.dt,
            # compile: kernel compilation and GPU graph capture in the first block (BlockTimer),
            # not part of simulate nor of the speed.
            "wall_seconds": {"build": net.build_seconds, "compile": compile_seconds, "simulate": sim_seconds},
            "wall_s_per_sim_s": sim_seconds / (done * cfg.dt / 1000) if done else float("nan"),
            "summary": summary,
        }
        if status == "failed":
            info["error"] = failure
        if out is not None:
            try:
                write_json(out / "run.json", info)
            except OSError:
                if status != "failed":
                    raise
        result = RunResult(cfg, spikes, traces, summary, eng, out, info, rates, syn_stats, network=net)
        if status == "interrupted":
            raise KeyboardInterrupt(result)
        if status == "failed":
            raise WmnetError(str(failure))
        return result

    def _snapshot(self, out: Path, eng: Engine, steps: int) -> None:
        """snapshots/connectivity_<t>ms.npz: every projection and the E→E state at this step."""
        t_ms = steps * self.config.dt
        folder = out / "snapshots"
        folder.mkdir(exist_ok=True)
        save_snapshot(
            folder / f"connectivity_{t_ms:g}ms.npz",
            self.network.connectivity,
            eng.synapses(),
            {"t_ms": t_ms, "step": eng.k, "seed": self.config.seed},
        )

    def _run_info(self, extra: dict[str, Any]) -> dict[str, Any]:
        net = self.network
        return {
            "wmnet_run": 1,
            "seed": self.config.seed,
            "config": self.config.to_dict(),
            "engine": self.engine_name,
            "device": str(net.device),
            "device_name": device_name(net.device),
            "dtype": str(net.dtype).removeprefix("torch."),
            "connectivity": net.connectivity.source,
            "n_neurons": net.n,
            "n_synapses": net.connectivity.n_synapses(),
            "memory": footprint(net),
            "versions": package_versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }

    def _summary(self, spikes: SpikeMonitor, sigma_sum: torch.Tensor, steps: int) -> dict[str, Any]:
        cfg, net = self.config, self.network
        n_e, n_i = cfg.populations.E.size, cfg.populations.I.size
        seconds = steps * cfg.dt / 1000
        counts = spikes.count.cpu()
        x = self.engine.neurons.x.double().cpu()
        ss = sigma_sum.cpu().double()
        syn = self.engine.synapses()
        pot_end = potentiated_fraction(syn.potentiated)
        per = {}
        for name, sl, size, j in (("E", slice(0, n_e), n_e, 0), ("I", slice(n_e, None), n_i, 1)):
            per[name] = {
                "rate_hz": float(counts[sl].sum()) / (size * seconds) if seconds else 0.0,
                "sigma_fraction": float(ss[j]) / (size * steps) if steps else 0.0,
                "mean_x_end": float(x[sl].mean()),
            }
        return {
            "populations": per,
            "sigma_fraction": float(ss.sum()) / (net.n * steps) if steps else 0.0,
            "ee_potentiated_fraction": {"start": self.initial_potentiated, "end": pot_end},
            "ee_switches": {"up": self.engine.switches.n_up, "down": self.engine.switches.n_down},
            "spikes": int(counts.sum()),
        }
