"""Resuming and extending a run folder: `resume_run` (`wmnet resume` and `wmnet extend`).

What checkpoint.pt holds, and how it is written and read, is in run_folder.py (the run folder
owns its files); this module decides whether and how a folder continues, then lets the
simulation run on in it.

extension.json (EXTENSION) exists while a `wmnet extend` is under way; `resume_run` finishes
it from either checkpoint (the completed run's or one the extension wrote).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wmnet.config import Config, load_config
from wmnet.errors import WmnetError
from wmnet.result import RunResult
from wmnet.run_folder import (
    CHECKPOINT,
    EXTENSION,
    VERSION,
    RunFolder,
    load_checkpoint,
    read_extension,
    require_continuable,
    save_checkpoint,
)

__all__ = ["CHECKPOINT", "EXTENSION", "VERSION", "load_checkpoint", "read_extension", "resume_run", "save_checkpoint"]


def _pending_config(d: Path, cfg: Config, ck_config: dict[str, Any], pending: dict[str, float]) -> Config:
    """The config a pending extension runs to, checked against config.yaml and the checkpoint:
    whenever the extending process died, config.yaml is the old or the new one and checkpoint.pt
    the completed run's (old config) or one the extension wrote (new config)."""
    assert cfg.duration is not None, "load_config resolves the duration"
    if not any(math.isclose(cfg.duration, pending[key], rel_tol=0, abs_tol=1e-9) for key in ("from_ms", "to_ms")):
        raise WmnetError(
            f"{d}: config.yaml's duration {cfg.duration:g} ms is neither end of the pending "
            f"extension in {EXTENSION} ({pending['from_ms']:g} -> {pending['to_ms']:g} ms)"
        )
    target = load_config(d / "config.yaml", [f"duration={pending['to_ms']!r}"])
    before = load_config(d / "config.yaml", [f"duration={pending['from_ms']!r}"])
    if ck_config not in (target.to_dict(), before.to_dict()):
        raise WmnetError(f"{d}: config.yaml differs from the config in {CHECKPOINT}")
    return target


def resume_run(run_dir: str | Path, progress: bool = True, extend_ms: float = 0.0) -> RunResult:
    """Continue the run in `run_dir` from its checkpoint to its planned end; with `extend_ms`,
    continue a completed run that many ms beyond its end (`wmnet extend`).

    The network is rebuilt from run_dir/config.yaml (same seed, same connectivity; a
    connectivity or input file named in run.json is reused) on the device run.json names.

    An extension can be killed at any moment and finished by `wmnet resume`: everything is
    validated (the network built, the input checked against the longer run) before anything is
    written; then EXTENSION records it (atomically) before config.yaml gets the new duration,
    and it is removed only once the extended run is complete. The folder's lock is held from
    the first check to the end. An interrupted run raises KeyboardInterrupt(result).
    """
    from wmnet.simulation import Simulation  # heavy imports (numba, torch engines) only when resuming

    d = Path(run_dir)
    require_continuable(d)
    with RunFolder(d) as folder:  # locked before reading: another process may be writing this folder
        info = folder.read_info()
        cfg = folder.config()
        ck = folder.load_checkpoint()
        pending = folder.extension()
        if extend_ms and pending is not None:
            raise WmnetError(
                f"{d}: an extension to {pending['to_ms']:g} ms is unfinished: `wmnet resume {d}` completes it first"
            )
        if pending is not None:
            cfg = _pending_config(d, cfg, ck["config"], pending)
        elif ck["config"] != cfg.to_dict():
            raise WmnetError(f"{d}: config.yaml differs from the config in {CHECKPOINT}")
        if extend_ms:
            if info.get("status") != "complete" or int(ck["engine"]["k"]) != int(ck["k_start"]) + cfg.n_steps:
                raise WmnetError(
                    f"{d}: only a completed run with its final checkpoint can be extended "
                    f"(status {info.get('status')!r}; an interrupted run needs `wmnet resume` first)"
                )
            assert cfg.duration is not None, "load_config resolves the duration"
            pending = {"from_ms": cfg.duration, "to_ms": cfg.duration + extend_ms}
            cfg = folder.config([f"duration={pending['to_ms']!r}"])
        sim = Simulation.for_folder(cfg, info)  # a too-short input fails here, nothing written
        if extend_ms:
            assert pending is not None
            folder.start_extension(pending)
        if pending is not None:
            ck["config"] = cfg.to_dict()
            if folder.config().to_dict() != ck["config"]:
                folder.write_config(cfg)
        result = sim.resume(folder, ck, progress=progress, info={"input": info.get("input")}, on_interrupt="raise")
        if pending is not None:  # complete (an interrupted or failed run raised): nothing pending
            folder.finish_extension()
        return result
