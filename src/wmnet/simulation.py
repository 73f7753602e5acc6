"""The simulation: one network, its engine, its stimulus and its protocol's schedule, driven in
blocks of steps. Batch (config in, folder out) or step by step from a notebook:

    sim = Simulation(Network.build(load_config("configs/seed.yaml")))
    result = sim.run(out="runs/demo")        # or sim.run() to keep everything in memory
    result.spikes.i, result.spikes.t, result.traces.v

    sim.step(100)                            # 100 steps (a Block: onsets, trace samples)
    for block in sim.iterate(50.0):          # 50 ms blocks to the config's duration
        if block.onsets.sum() > 1000:
            sim.stop()                       # ends the loop (also from a run's on_block callback)
    sim.set_state(v=torch.rand(sim.network.n) * 20)   # mV; sim.state is a copy
    sim.store(); sim.run(duration=100); sim.restore()  # the same 100 ms again, bitwise

The run loop (`_run_locked`) reads top to bottom: the clock (clock.py) says where each block
ends; the engine runs it; the recorders (recorders.py) take it; the run folder (run_folder.py)
gets snapshots, checkpoints and run.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import torch

from wmnet.block import Block
from wmnet.clock import Clock
from wmnet.config import Config, load_config, steps_in
from wmnet.dynamics import NeuronState
from wmnet.engines import make_engine, resolve_engine
from wmnet.engines.base import TraceRequest
from wmnet.errors import WmnetError
from wmnet.io.runinfo import device_name, package_versions, read_json, run_info
from wmnet.network import Network
from wmnet.progress import BlockTimer, Progress
from wmnet.protocol import Schedule, base_scales
from wmnet.recorders import Recorders, potentiated_fraction, trace_neurons
from wmnet.result import RunResult
from wmnet.run_folder import CHECKPOINT, RunFolder, load_checkpoint, require_continuable
from wmnet.stimuli import Stimulus, make_stimulus
from wmnet.stopping import first_non_finite, interactive, stop_on_signals, stored_L, write_error

__all__ = ["BlockTimer", "RunResult", "Simulation", "device_name", "package_versions", "trace_neurons"]

BLOCK_STEPS = 200  # steps per engine call (a CUDA graph on the GPU)
OnInterrupt = Literal["raise", "return"]


@dataclass
class _Run:
    """How one `run` is going: what the loop and its ending share."""

    steps_before: int = 0  # steps of the run folder before this call (a resumed run's)
    done: int = 0  # steps simulated by this call, recorded
    consistent: bool = True  # False while a block is half done (engine stepped, recorders not yet)
    block_wall: float = 0.0  # perf_counter at the start of the current block
    checkpoint_k: int | None = None  # the step of the last checkpoint written
    status: str = "complete"
    failure: str | None = None  # why the run stopped, when it failed
    stopped: bool = False  # by `Simulation.stop`, not by a signal


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
        self._stop = False
        self._stored: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return (
            f"Simulation({self.network.n} neurons, {self.engine_name} engine on {self.network.device}, "
            f"t = {self.t:g} ms of {self.config.duration:g} ms)"
        )

    @property
    def t(self) -> float:
        """Simulated time (ms): t_k of the next step."""
        return self.engine.k * self.config.dt

    # --- stepping -------------------------------------------------------------------------

    def step(self, n: int = 1) -> Block:
        """Run n steps (with the stimulus and the protocol's receptor scales at those steps);
        return them as one Block (onsets, σ, trace samples of record.traces). Records nothing."""
        if n < 1:
            raise WmnetError(f"step: n = {n}, expected at least one step")
        self._stop = False
        return Block.join(list(self._blocks(self.engine.k + n, self._plain_clock(), _Run(), lambda: False)))

    def iterate(self, block_ms: float | None = None, duration: float | None = None) -> Iterator[Block]:
        """Blocks of `block_ms` ms (default: the engine's block; shorter at the protocol's epoch
        boundaries and at the end) for `duration` ms (default: the config's), from the current
        state. `stop()` or `break` ends it after the current block; it records nothing."""
        cfg, k0 = self.config, self.engine.k
        n_steps = cfg.n_steps if duration is None else steps_in(duration, cfg.dt, "duration")
        length = None if block_ms is None else steps_in(block_ms, cfg.dt, "block_ms")
        self._stop = False
        clock = self._plain_clock(length)  # user blocks: cut at epochs only, not at samples
        while self.engine.k < k0 + n_steps and not self._stop:
            end = clock.block_end(self.engine.k, k0 + n_steps)
            yield Block.join(list(self._blocks(end, self._plain_clock(), _Run(), lambda: False)))

    def stop(self) -> None:
        """End the running `run` or `iterate` after the current block (from a callback or the
        loop's body). A stopped `run` returns its partial result, marked interrupted."""
        self._stop = True

    @property
    def state(self) -> NeuronState:
        """The neuron state at t_k (v, i_s, i_f, x, a), a copy on the network's device."""
        return self.engine.state

    def set_state(self, neurons: NeuronState | dict[str, Any] | None = None, **variables: Any) -> None:
        """Replace some or all of the neuron state at t_k, e.g. `set_state(v=torch.rand(n) * 20)`
        (mV): tensors or arrays of N values, or scalars; the others keep their values."""
        self.engine.set_state(neurons, **variables)

    def store(self, name: str = "default") -> None:
        """Keep the whole state (neurons, synapses, step, switch counts) in memory under `name`."""
        self._stored[name] = self.engine.state_dict()

    def restore(self, name: str = "default") -> None:
        """Go back to the state `store(name)` kept: what follows is bitwise what followed then."""
        if name not in self._stored:
            raise WmnetError(f"restore: nothing stored as {name!r} (stored: {', '.join(self._stored) or 'nothing'})")
        self.engine.load_state_dict(self._stored[name])

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, device: str | None = None) -> Simulation:
        """The simulation of run folder `run_dir` at its checkpoint: the network rebuilt from
        config.yaml (run.json's connectivity and input files, its device unless `device`), the
        engine's state loaded. `run` then continues in memory as `wmnet resume` does on disk."""
        d = Path(run_dir)
        require_continuable(d)
        cfg = load_config(d / "config.yaml")
        ck = load_checkpoint(d / CHECKPOINT)
        if ck["config"] != cfg.to_dict():
            raise WmnetError(f"{d}: config.yaml differs from the config in {CHECKPOINT}")
        sim = cls.for_folder(cfg, read_json(d / "run.json"), device)
        sim.engine.load_state_dict(ck["engine"])
        return sim

    @classmethod
    def for_folder(cls, cfg: Config, info: dict[str, Any], device: str | None = None) -> Simulation:
        """The simulation a run folder's run.json describes (connectivity, input, device) for `cfg`."""
        conn = info.get("connectivity")
        net = Network.build(
            cfg, device=device or info.get("device", cfg.device), connectivity=None if conn == "generated" else conn
        )
        return cls(net, input_path=info.get("input"))  # a too-short input fails here

    # --- batch ----------------------------------------------------------------------------

    def run(
        self,
        duration: float | None = None,
        out: str | Path | RunFolder | None = None,
        progress: bool = True,
        keep_in_memory: bool | None = None,
        info: dict[str, Any] | None = None,
        lock: IO[str] | None = None,
        on_block: Callable[[Block], None] | None = None,
        on_interrupt: OnInterrupt | None = None,
    ) -> RunResult:
        """Simulate `duration` ms (default: the config's) from the current state.

        A protocol's epochs are looked up by the engine's step, counted from the start of the
        simulation as the stimulus is, so a second `run` continues the protocol where the first
        stopped. `lock`: `out`'s lock (`lock_folder`), already held by the caller (the CLI takes
        it when it claims the folder); the run then uses it and leaves closing it to the caller.
        `on_block(block)` is called after every block (it may call `stop()`).

        With `out`, spikes and traces stream to SONATA files there and run.json is written
        (status "running" until it ends; "interrupted" on SIGINT, SIGTERM or Ctrl-C, which stop
        the run at the end of the current block). checkpoint.pt is written there every
        record.checkpoint_every ms and at the end, and always when interrupted; `resume`
        (`wmnet resume DIR`) continues from it.

        An interrupted run raises KeyboardInterrupt(result) with `on_interrupt="raise"`, and
        returns its partial result (`result.interrupted`) with "return"; by default it returns
        in an interactive session (a notebook) and raises elsewhere (scripts, the CLI).
        """
        cfg = self.config
        n_steps = cfg.n_steps if duration is None else steps_in(duration, cfg.dt, "duration")
        keep = out is None if keep_in_memory is None else keep_in_memory
        return self._run(n_steps, out, progress, keep, info, None, lock, on_block, on_interrupt)

    def resume(
        self,
        out: str | Path | RunFolder,
        checkpoint: dict[str, Any],
        progress: bool = True,
        info: dict[str, Any] | None = None,
        lock: IO[str] | None = None,
        on_interrupt: OnInterrupt | None = None,
    ) -> RunResult:
        """Continue the run in folder `out` from `checkpoint` (run_folder.py) to its planned end.

        The network must be the one the checkpoint was written from (same config, seed and
        connectivity). The files in `out` are cut back to the checkpoint's positions, then
        appended to, so they end up as one uninterrupted run would have written them.
        """
        self.engine.load_state_dict(checkpoint["engine"])
        end = int(checkpoint["k_start"]) + self.config.n_steps
        return self._run(max(0, end - self.engine.k), out, progress, False, info, checkpoint, lock, None, on_interrupt)

    def _block_steps(self) -> int:
        """Steps per engine call: a multiple of the trace interval, so that a GPU engine replays
        one captured graph for every full block."""
        every = self.config.record.traces.every
        return every * max(1, BLOCK_STEPS // every) if self._trace() is not None else BLOCK_STEPS

    def _plain_clock(self, block_steps: int | None = None) -> Clock:
        """Blocks of `block_steps` (default: the engine's), cut at the protocol's epochs only."""
        return Clock(block_steps or self._block_steps(), self.engine.k, base_scales(self.config), self.schedule)

    def _clock(self, k_start: int) -> Clock:
        """The clock of a run whose folder starts at step k_start (clock.py)."""
        cfg, rec = self.config, self.config.record
        syn_every = rec.synapses.every if rec.synapses is not None else None
        return Clock(
            block_steps=self._block_steps(),
            k_start=k_start,
            outside=base_scales(cfg),
            schedule=self.schedule,
            sample_every=steps_in(syn_every, cfg.dt, "record.synapses.every") if syn_every is not None else 0,
            # Snapshot steps, counted from the run folder's first step (as the config's times are).
            snapshots=tuple(sorted({k_start + steps_in(t, cfg.dt, "record.snapshots") for t in rec.snapshots})),
            checkpoint_every=(
                steps_in(rec.checkpoint_every, cfg.dt, "record.checkpoint_every") if rec.checkpoint_every else 0
            ),
        )

    def _trace(self) -> TraceRequest | None:
        rec, neurons = self.config.record, trace_neurons(self.config)
        if not rec.traces.variables or not neurons.size:
            return None
        device = self.network.device
        return TraceRequest(tuple(rec.traces.variables), torch.as_tensor(neurons, device=device), rec.traces.every)

    def _blocks(self, end: int, clock: Clock, run: _Run, stop_requested: Callable[[], bool]) -> Iterator[Block]:
        """The engine's blocks up to step `end`, each with the stimulus and the receptor scales
        the clock gives, until `stop()` or `stop_requested()`."""
        eng, trace = self.engine, self._trace()
        variables = trace.variables if trace is not None else ()
        run_block = eng.run_block  # the GPU engine's replays a graph; the base class steps
        while eng.k < end and not (self._stop or stop_requested()):
            k = eng.k
            run.block_wall = time.perf_counter()
            m = clock.block_end(k, end) - k
            scales = clock.scales(k)  # the protocol's clock is the stimulus's: the step since the start
            if scales != eng.scales:
                eng.set_scales(scales)
            i_ext = self.stimulus.block(k, m)
            run.consistent = False
            flags, steps, samples = run_block(i_ext, trace)
            yield Block(k, flags, self.config.dt, steps, samples, variables)

    def _run(
        self,
        n_steps: int,
        out: str | Path | RunFolder | None,
        progress: bool,
        keep: bool,
        info: dict[str, Any] | None,
        resumed: dict[str, Any] | None,
        lock: IO[str] | None,
        on_block: Callable[[Block], None] | None,
        on_interrupt: OnInterrupt | None,
    ) -> RunResult:
        trace_neurons(self.config)  # a bad record.traces.neurons fails before the folder is touched
        # One writer per folder; a caller that already holds the lock keeps it (and closes it).
        folder = out if isinstance(out, RunFolder) or out is None else RunFolder(out, lock)
        try:
            result, stopped = self._run_locked(n_steps, folder, progress, keep, info, resumed, on_block)
        finally:
            if folder is not None and folder is not out:
                folder.close()
        # A stop() from code gets its result; a signal or Ctrl-C raises, unless in a notebook.
        if result.interrupted and not stopped and (on_interrupt or ("return" if interactive() else "raise")) == "raise":
            raise KeyboardInterrupt(result)
        return result

    def _run_locked(
        self,
        n_steps: int,
        folder: RunFolder | None,
        progress: bool,
        keep: bool,
        info: dict[str, Any] | None,
        resumed: dict[str, Any] | None,
        on_block: Callable[[Block], None] | None,
    ) -> tuple[RunResult, bool]:
        eng, dt = self.engine, self.config.dt
        k_start = eng.k if resumed is None else int(resumed["k_start"])
        rec = Recorders.create(self.network, eng, self.groups, k_start, folder, keep, append=resumed is not None)
        run, self._stop = _Run(), False
        if resumed is not None:  # drop what was written after the checkpoint; carry its sums on
            rec.load(resumed, eng.k)
            run.steps_before, run.checkpoint_k = int(resumed["steps_done"]), eng.k
        base = run_info(self.network, self.engine_name, info)
        if resumed is not None:
            base["resumed_at_ms"] = eng.k * dt
        if folder is not None:
            folder.begin(self.config, base, self.groups, self.network.n_E, self.schedule)
        clock = self._clock(k_start)
        eng.set_scales(clock.outside)  # the engine's may be a loaded checkpoint's epoch's
        bar, t_start = Progress(n_steps, dt, progress), time.perf_counter()
        rec.start()
        try:
            try:
                with stop_on_signals() as signals:
                    for block in self._blocks(eng.k + n_steps, clock, run, lambda: signals.requested):
                        rec.record(block)
                        run.done, run.consistent = run.done + block.steps, True
                        if folder is not None and clock.snapshot_due(eng.k):
                            self._snapshot(folder, eng.k - k_start)
                        if self._blown_up(run, block, folder):
                            break
                        if folder is not None and clock.checkpoint_due(block.k0, block.k1):
                            run.checkpoint_k = self._checkpoint(folder, rec, run, k_start)
                        bar.add(block.steps, time.perf_counter() - run.block_wall)
                        if on_block is not None:
                            on_block(block)
                    if run.done < n_steps and run.status != "failed":
                        run.status, run.stopped = "interrupted", self._stop and not signals.requested
            except KeyboardInterrupt:
                run.status = "interrupted"
            except OSError as e:  # a full disk, a folder gone or read-only: stop cleanly
                path = folder.path if folder is not None else None
                run.status, run.failure = "failed", write_error(e, path, run.checkpoint_k, dt)
            if folder is not None and self._final_checkpoint_wanted(run):
                run.checkpoint_k = self._checkpoint(folder, rec, run, k_start)
        finally:
            bar.close()
            self._close(rec, folder, run)
        return self._result(rec, run, base, bar.timer, t_start, folder), run.stopped

    # --- the run loop's parts -------------------------------------------------------------

    def _blown_up(self, run: _Run, block: Block, folder: RunFolder | None) -> bool:
        eng = self.engine
        run.failure = first_non_finite(eng.neurons, eng.k, block.steps, self.config.dt, stored_L(eng))
        if run.failure is None:
            return False
        run.status = "failed"
        if folder is not None:
            run.failure += f"; the data up to then is in {folder.path}"
        return True

    def _final_checkpoint_wanted(self, run: _Run) -> bool:
        """At the end of a run that has one (periodic or resumed from): never left stale; always
        when interrupted. A blown-up state is not worth resuming from: the last good one stands."""
        rec = self.config.record
        wanted = (
            run.status == "interrupted"
            or bool(rec.checkpoint_every)
            or run.checkpoint_k is not None
            or (run.status == "complete" and rec.checkpoint_at_end)
        )
        return run.consistent and wanted and run.checkpoint_k != self.engine.k and run.status != "failed"

    def _checkpoint(self, folder: RunFolder, rec: Recorders, run: _Run, k_start: int) -> int:
        """checkpoint.pt at the engine's step; returns that step."""
        recording = rec.state()  # first: the files and the positions must agree
        eng, cfg = self.engine, self.config
        folder.save_checkpoint(
            {
                "engine": eng.state_dict(),
                **recording,
                "k_start": k_start,
                "steps_done": run.steps_before + run.done,
                "config": cfg.to_dict(),
                "seed": cfg.seed,
            }
        )
        return eng.k

    def _snapshot(self, folder: RunFolder, steps: int) -> None:
        """snapshots/connectivity_<t>ms.npz, `steps` after the run folder's first step."""
        eng = self.engine
        folder.snapshot(self.network.connectivity, eng.synapses(), steps * self.config.dt, eng.k, self.config.seed)

    def _close(self, rec: Recorders, folder: RunFolder | None, run: _Run) -> None:
        """The last flush and the writers closed; a write error here fails the run (the first
        error is kept: it is the cause)."""
        try:
            rec.flush()
        except OSError as e:
            if run.status != "failed":
                path = folder.path if folder is not None else None
                run.status, run.failure = "failed", write_error(e, path, run.checkpoint_k, self.config.dt)
        if folder is not None:
            folder.close_writers()

    def _result(
        self,
        rec: Recorders,
        run: _Run,
        base: dict[str, Any],
        timer: BlockTimer,
        t_start: float,
        folder: RunFolder | None,
    ) -> RunResult:
        """run.json's final state and the result; a failed run raises WmnetError."""
        cfg, net, dt = self.config, self.network, self.config.dt
        compile_seconds = timer.compile_seconds()
        sim_seconds = time.perf_counter() - t_start - compile_seconds
        total = run.steps_before + run.done
        summary = rec.summary(cfg, self.engine, total, self.initial_potentiated)
        info = {
            **base,
            "status": run.status,
            "steps_done": total,
            "simulated_ms": total * dt,
            "checkpoint_ms": None if run.checkpoint_k is None else run.checkpoint_k * dt,
            # compile: kernel compilation and GPU graph capture in the first block (BlockTimer),
            # not part of simulate nor of the speed.
            "wall_seconds": {"build": net.build_seconds, "compile": compile_seconds, "simulate": sim_seconds},
            "wall_s_per_sim_s": sim_seconds / (run.done * dt / 1000) if run.done else float("nan"),
            "summary": summary,
        }
        if run.status == "failed":
            info["error"] = run.failure
        if folder is not None:
            try:
                folder.write_info(info)
            except OSError:
                if run.status != "failed":
                    raise
        out = folder.path if folder is not None else None
        if run.status == "failed":
            raise WmnetError(str(run.failure))
        return RunResult(
            cfg, rec.spikes, rec.traces, summary, self.engine, out, info, rec.rates, rec.synapses, network=net
        )
