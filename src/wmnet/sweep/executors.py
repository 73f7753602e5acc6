"""Where and how a sweep's points run: the plan (workers, threads, GPUs) and the executors.

Executors: `local`, a ProcessPoolExecutor of spawned workers (each point in a separate process,
so a crash, NaN or OOM stays there), and `ray`, one Ray task per point.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wmnet.errors import WmnetError
from wmnet.sweep.point import init_worker, one_line, prime_worker, run_point

if TYPE_CHECKING:
    from wmnet.sweep.runner import Tracker

EXECUTORS = ("local", "ray")
CRASHES_ALLOWED = 1  # a point whose worker dies twice is failed (the first may be a neighbour's fault)


def cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class Plan:
    """Where each worker runs: `workers` processes of `threads` threads, `gpus` GPU ids to share."""

    workers: int
    threads: int
    gpus: list[str] = field(default_factory=list)  # CUDA_VISIBLE_DEVICES value per worker slot
    gpu_fraction: float = 0.0  # Ray: num_gpus per task


def plan(n_points: int, workers: int | None, per_gpu: int, use_gpu: bool) -> Plan:
    """Workers: one per GPU (× per_gpu) on a GPU machine, else the cores; threads × workers ≤ cores."""
    n_cores = cores()
    gpus: list[str] = []
    if use_gpu:
        import torch

        n_gpu = torch.cuda.device_count()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [v.strip() for v in visible.split(",")][:n_gpu] if visible else [str(i) for i in range(n_gpu)]
        gpus = [g for g in ids for _ in range(per_gpu)]
    if gpus:
        w = min(workers or len(gpus), len(gpus))
    else:
        w = workers or n_cores
    w = max(1, min(w, max(1, n_points)))
    return Plan(w, max(1, n_cores // w), gpus[:w] if gpus else [], 1.0 / per_gpu if gpus else 0.0)


def _stop_idle_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM the pool's workers once every result is in: they are idle, and a worker that has
    imported torch takes seconds to exit by itself (measured 3-5 s on 2 busy cores)."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            proc.terminate()


def _run_local(
    tasks: list[dict[str, Any]], pl: Plan, tracker: Tracker, warm: Callable[[], object] | None = None
) -> None:
    """A pool of spawned workers; at most `workers` points in flight, so `running` is exact.

    A worker that dies (kill -9, the OOM killer) breaks the pool: every point in flight then is
    suspected, retried in a new pool with at most one suspect in flight at a time, and failed
    when its worker dies again."""
    ctx = mp.get_context("spawn")  # torch and numba do not survive fork
    pending = deque(tasks)
    crashes: dict[str, int] = {}
    barren = 0  # pools in a row that broke before any point finished
    while pending:
        if barren >= CRASHES_ALLOWED + 2:
            for t in pending:  # e.g. a worker cannot even import wmnet: no point can run
                tracker.finished(
                    {"name": t["name"], "status": "failed", "error": "the worker processes die before running a point"}
                )
            return
        finished_before = tracker.n_done + tracker.n_failed
        slots = None
        if pl.gpus:
            slots = ctx.Queue()
            for g in pl.gpus:
                slots.put(g)
        in_flight: dict[Future[dict[str, Any]], dict[str, Any]] = {}
        broken = False
        with ProcessPoolExecutor(
            pl.workers, mp_context=ctx, initializer=init_worker, initargs=(pl.threads, slots)
        ) as pool:
            if warm is not None:
                # The workers import torch while this process compiles (or loads) the engine;
                # they get their first point once the cache is warm.
                primes = [pool.submit(prime_worker) for _ in range(pl.workers)]
                warm()
                warm = None
                wait(primes)
            while (pending or in_flight) and not broken:
                while pending and len(in_flight) < pl.workers:
                    suspect_flying = any(crashes.get(t["name"]) for t in in_flight.values())
                    pick = next((t for t in pending if not (suspect_flying and crashes.get(t["name"]))), None)
                    if pick is None:
                        break
                    try:
                        fut = pool.submit(run_point, pick)
                    except BrokenProcessPool:  # a worker died between two points (or priming)
                        broken = True
                        break
                    pending.remove(pick)
                    in_flight[fut] = pick
                    tracker.started(pick["name"])
                if broken:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    tracker.finished(res)
                    del in_flight[fut]
            if not pending and not in_flight:
                _stop_idle_workers(pool)
        barren = barren + 1 if broken and tracker.n_done + tracker.n_failed == finished_before else 0
        if broken:
            for fut, t in in_flight.items():
                name = t["name"]
                if fut.done() and fut.exception() is None:  # finished before the pool broke
                    tracker.finished(fut.result())
                    continue
                crashes[name] = crashes.get(name, 0) + 1
                if crashes[name] > CRASHES_ALLOWED:
                    tracker.finished(
                        {
                            "name": name,
                            "status": "failed",
                            "error": "its worker process died twice (killed, or out of memory)",
                        }
                    )
                else:
                    pending.appendleft(t)
                    tracker.running.discard(name)


def _run_ray(tasks: list[dict[str, Any]], pl: Plan, tracker: Tracker, address: str | None) -> None:
    """One Ray task per point; joins the cluster at `address`, else starts a local instance."""
    try:
        import ray
    except ImportError:
        raise WmnetError("--executor ray needs Ray: pip install 'wmnet[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=pl.workers * pl.threads, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(run_point).options(
            num_cpus=pl.threads, num_gpus=pl.gpu_fraction, max_retries=CRASHES_ALLOWED
        )
        pending = deque(tasks)
        in_flight: dict[Any, dict[str, Any]] = {}
        # Submitted at most `workers` at a time, as the local pool: `running` stays exact.
        limit = pl.workers if not address else max(pl.workers, len(tasks))
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                t = pending.popleft()
                in_flight[remote.remote(t)] = t
                tracker.started(t["name"])
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                t = in_flight.pop(ref)
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayError as e:
                    res = {
                        "name": t["name"],
                        "status": "failed",
                        "error": one_line(f"Ray: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"),
                    }
                tracker.finished(res)
    finally:
        if started:
            ray.shutdown()
