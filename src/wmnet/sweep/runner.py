"""Run a sweep: check the folder against the sweep file, then run the points that are not done.

DIR/sweep.yaml     the canonical sweep (base as an absolute path), for reading
DIR/manifest.json  the points: folder name, swept values, seed, sha256 of their config.yaml
DIR/state.json     per point: last status, one-line error, wall and import times (s)
DIR/results.parquet  the table (results.py), rewritten atomically as points finish
DIR/points/<name>/   one ordinary run folder per point

Executors: `local`, a ProcessPoolExecutor of spawned workers (each point in a separate process,
so a crash, NaN or OOM stays there), and `ray`, one Ray task per point.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from wmnet.errors import WmnetError
from wmnet.io.runinfo import write_json
from wmnet.sweep.point import init_worker, one_line, prime_worker, run_point
from wmnet.sweep.results import STATE, point_row, read_run, table, write_table
from wmnet.sweep.spec import Point, SweepSpec, config_hash, load_sweep, parse_sweep, validate

MANIFEST = "manifest.json"
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


def _points_dir(out: Path) -> Path:
    return out / "points"


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _assign_names(points: list[Point], hashes: list[str], out: Path, extend: bool) -> list[Point]:
    """Match the points to an existing sweep in `out`: the same sweep keeps its folder names;
    --extend adds new points after the old ones; any other change is refused."""
    path = out / MANIFEST
    if not path.is_file():
        if out.exists() and not out.is_dir():
            raise WmnetError(f"--out {out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()):
            raise WmnetError(f"--out {out}: folder is not empty and holds no sweep ({MANIFEST})")
        return points
    try:
        old = json.loads(path.read_text())["points"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WmnetError(f"{path}: cannot read the sweep's manifest ({e})") from None
    by_key = {json.dumps({"params": p["params"], "seed": p["seed"]}, sort_keys=True): p for p in old}
    new_keys = {p.key for p in points}
    changed = [p for p, h in zip(points, hashes) if p.key in by_key and by_key[p.key]["config_sha256"] != h]
    removed = [p for k, p in by_key.items() if k not in new_keys]
    added = [p for p in points if p.key not in by_key]
    if changed or removed or (added and not extend):
        what = ", ".join(
            f"{n} {w}" for n, w in ((len(added), "added"), (len(changed), "changed"), (len(removed), "removed")) if n
        )
        hint = (
            "--extend only adds points; the others must stay as they were"
            if extend
            else "rerun with the same sweep file to continue it, --extend to add points, or choose a new --out"
        )
        first = changed[0].name if changed else removed[0]["name"] if removed else added[0].name
        raise WmnetError(f"--out {out}: holds a different sweep ({what} points, e.g. {first}): {hint}")
    named = []
    nxt = 1 + max((p["index"] for p in old), default=-1)
    for p in points:
        if p.key in by_key:
            named.append(replace(p, index=int(by_key[p.key]["index"])))
        else:
            named.append(replace(p, index=nxt))
            nxt += 1
    return sorted(named, key=lambda p: p.index)


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


@dataclass
class Sweep:
    """A validated sweep bound to its folder; `run` executes what is left."""

    spec: SweepSpec
    out: Path
    points: list[Point]
    configs: dict[str, Any]  # name -> Config
    source: str
    prior: dict[str, dict[str, Any]] = field(default_factory=dict)  # state.json as found

    @classmethod
    def prepare(cls, sweep: str | Path | dict[str, Any], out: str | Path, extend: bool) -> Sweep:
        """Parse, expand and validate every point, and check the folder: nothing is written."""
        spec = parse_sweep(sweep, "sweep", Path.cwd()) if isinstance(sweep, dict) else load_sweep(sweep)
        checked = validate(spec)
        points = [p for p, _ in checked]
        hashes = [config_hash(c) for _, c in checked]
        out = Path(out)
        named = _assign_names(points, hashes, out, extend)
        by_key = {p.key: c for p, c in checked}
        try:
            prior = json.loads((out / STATE).read_text()) if (out / STATE).is_file() else {}
        except (OSError, ValueError):
            prior = {}
        return cls(
            spec,
            out,
            named,
            {p.name: by_key[p.key] for p in named},
            spec.source,
            prior if isinstance(prior, dict) else {},
        )

    def write_manifest(self) -> None:
        try:
            _points_dir(self.out).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WmnetError(f"--out {self.out}: cannot create the sweep folder ({e.strerror or e})") from None
        canon = self.spec.canonical()
        _write_yaml(self.out / "sweep.yaml", canon)
        write_json(
            self.out / MANIFEST,
            {
                "wmnet_sweep": 1,
                "sweep_file": self.source,
                "sweep_sha256": _sha(canon),
                "swept_keys": self.spec.swept_keys,
                "points": [
                    {
                        "name": p.name,
                        "index": p.index,
                        "params": p.params,
                        "seed": p.seed,
                        "seed_value": self.configs[p.name].seed,
                        "config_sha256": config_hash(self.configs[p.name]),
                    }
                    for p in self.points
                ],
            },
        )

    def entries(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "params": p.params, "seed_value": self.configs[p.name].seed} for p in self.points]

    def done(self, p: Point) -> bool:
        """Complete (also when extended since by `wmnet extend`: its config.yaml then has a longer
        duration, and running it again would throw the extension away)."""
        from wmnet.checkpoint import EXTENSION

        folder = _points_dir(self.out) / p.name
        info = read_run(folder)
        if info is None or info.get("status") != "complete" or (folder / EXTENSION).exists():
            return False  # (an extension under way is finished by resuming the point)
        return not self.failed_before(p)  # e.g. its epoch rates could not be written: run it again

    def failed_before(self, p: Point) -> bool:
        return self.prior.get(p.name, {}).get("status") == "failed"

    def task(self, p: Point, threads: int, plots: bool) -> dict[str, Any]:
        cfg = self.configs[p.name]
        return {
            "name": p.name,
            "folder": str((_points_dir(self.out) / p.name).absolute()),
            "base": None if self.spec.base is None else str(self.spec.base),
            "overrides": p.overrides(self.spec.fixed),
            "config_yaml": cfg.to_yaml(),
            "threads": threads,
            "protocol": cfg.protocol is not None,
            "plots": plots,
        }


class Tracker:
    """The sweep's live state: rows of the table, state.json, the progress bar."""

    def __init__(self, sweep: Sweep, progress: bool, total: int):
        from tqdm import tqdm

        self.sweep = sweep
        path = sweep.out / STATE
        try:
            self.state: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            self.state = {}  # unreadable state (a crash while writing is atomic, so only by hand)
        self.running: set[str] = set()
        self.entries = {e["name"]: e for e in sweep.entries()}
        self.rows = {name: self._row(name) for name in self.entries}
        self.n_done = self.n_failed = 0
        self.bar = tqdm(total=total, unit="point", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        self.write()

    def _row(self, name: str) -> dict[str, Any]:
        return point_row(
            self.entries[name], _points_dir(self.sweep.out) / name, self.state.get(name, {}), name in self.running
        )

    def write(self) -> None:
        write_json(self.sweep.out / STATE, self.state)
        write_table(table([self.rows[n] for n in self.entries], self.sweep.spec.swept_keys), self.sweep.out)

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"done {self.n_done}, running {len(self.running)}, failed {self.n_failed}")

    def started(self, name: str) -> None:
        self.running.add(name)
        self.rows[name] = self._row(name)
        self._postfix()
        self.bar.refresh()

    def finished(self, res: dict[str, Any]) -> None:
        name = res["name"]
        self.running.discard(name)
        self.state[name] = {
            k: res.get(k)
            for k in ("status", "error", "mode", "wall_s", "import_s", "compiled", "pid", "t_start", "t_end")
        }
        self.rows[name] = self._row(name)
        if self.rows[name]["status"] == "complete":
            self.n_done += 1
        else:
            self.n_failed += 1
        self.write()
        self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        self.running.clear()
        self.rows = {name: self._row(name) for name in self.entries}
        self.write()
        self.bar.close()


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


def warm_up(sweep: Sweep, points: list[Point]) -> float:
    """Compile the CPU engine's numba functions once, here, before the workers run a point: they
    load them from numba's on-disk cache instead of each compiling them (a minute or more of CPU
    each on a cold cache, measured in docs/performance.md). One
    short run per distinct (engine, dtype) of the points, with the first such point's config."""
    t0 = time.perf_counter()
    seen = set()
    for p in points:
        cfg = sweep.configs[p.name]
        if cfg.device not in ("cpu", "auto") or (cfg.engine, cfg.dtype) in seen:
            continue
        seen.add((cfg.engine, cfg.dtype))
        from wmnet.network import Network, resolve_device
        from wmnet.simulation import Simulation

        dev = resolve_device(cfg.device)
        if dev.type != "cpu":
            continue
        try:
            Simulation(Network.build(cfg, device=dev)).run(duration=10 * cfg.dt, progress=False)
        except WmnetError:
            pass  # the point itself will fail and say why
    return time.perf_counter() - t0


def run_sweep(
    sweep: str | Path | dict[str, Any],
    out: str | Path,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    per_gpu: int = 1,
    extend: bool = False,
    progress: bool = True,
    plots: bool = False,
    warm: bool = True,
    on_ready: Callable[[Sweep, list[Point], Plan], None] | None = None,
) -> Any:
    """Run (or continue) the sweep `sweep` (a file, or its mapping) in folder `out`.

    Every point is validated before anything is written. Completed points are skipped,
    interrupted ones resumed from their checkpoints, failed ones run again. Returns the
    results table (a pandas DataFrame, as DIR/results.parquet).
    """
    if mp.parent_process() is not None and mp.current_process().name.startswith("SpawnProcess"):
        # A spawned worker re-imports the caller's main module: a script without the guard
        # would start a sweep in every worker.
        raise WmnetError(
            "wmnet.sweep was called while a sweep worker imported the main script: put the call "
            "under `if __name__ == '__main__':`"
        )
    if executor not in EXECUTORS:
        raise WmnetError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise WmnetError(f"--workers {workers}: expected at least 1")
    if per_gpu < 1:
        raise WmnetError(f"--per-gpu {per_gpu}: expected at least 1")
    if address is not None and executor != "ray":
        raise WmnetError("--address: only with --executor ray")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise WmnetError("--executor ray needs Ray: pip install 'wmnet[ray]'") from None
    sw = Sweep.prepare(sweep, out, extend)
    todo = [p for p in sw.points if not sw.done(p)]
    devices = {sw.configs[p.name].device for p in todo}
    if executor == "ray" and address is not None:
        # A remote cluster's GPUs are Ray's to place: ask for them when a point names CUDA.
        pl = plan(len(todo), workers, per_gpu, False)
        if any(d.startswith("cuda") for d in devices):
            pl.gpu_fraction = 1.0 / per_gpu
    else:
        pl = plan(len(todo), workers, per_gpu, any(d != "cpu" for d in devices))
    sw.write_manifest()
    if on_ready is not None:
        on_ready(sw, todo, pl)
    tracker = Tracker(sw, progress, len(todo))
    try:
        if todo:
            tasks = [sw.task(p, pl.threads, plots) for p in todo]
            warm_cache = warm and not pl.gpus and address is None
            if executor == "local":
                _run_local(tasks, pl, tracker, (lambda: warm_up(sw, todo)) if warm_cache else None)
            else:
                if warm_cache:
                    warm_up(sw, todo)
                _run_ray(tasks, pl, tracker, address)
    finally:
        tracker.close()
    return table([tracker.rows[n] for n in tracker.entries], sw.spec.swept_keys)
