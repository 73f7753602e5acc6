"""Run a sweep: check the folder against the sweep file, then run the points that are not done.

DIR/sweep.yaml     the canonical sweep (base as an absolute path), for reading
DIR/manifest.json  the points: folder name, swept values, seed, sha256 of their config.yaml
DIR/state.json     per point: last status, one-line error, wall and import times (s)
DIR/results.parquet  the table (results.py), rewritten atomically as points finish
DIR/points/<name>/   one ordinary run folder per point

Where the points run (`plan`) and the executors (`local`, `ray`): executors.py.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from wmnet.errors import WmnetError
from wmnet.io.runinfo import write_json
from wmnet.sweep.executors import EXECUTORS, Plan, _run_local, _run_ray, plan
from wmnet.sweep.results import STATE, point_row, read_run, table, write_table
from wmnet.sweep.spec import Point, SweepSpec, config_hash, load_sweep, parse_sweep, validate

MANIFEST = "manifest.json"


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
