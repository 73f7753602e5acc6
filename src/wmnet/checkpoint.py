"""Checkpoints: the state a run folder needs to continue bitwise, and `resume_run`.

checkpoint.pt (torch.save of a dict, written atomically) holds:
- `engine`: the engine's `state_dict()` (neuron state, E→E synapses, lazy clocks, step k,
  switch counts);
- `positions`: how many spike rows (per population) and trace samples (per variable) the
  SONATA files held when it was written; a resumed run truncates them there, so whatever
  was written after the checkpoint is dropped, never duplicated;
- `monitors`: the same for rates.h5 and synapses.h5 (`rows`), plus what the files do not
  hold: the partial rate bin's onset counts and the switch counts at the last synapse sample;
- `k_start`: the folder's first step; the run ends at k_start + config duration;
- `count`, `sigma_sum`, `steps_done`: the summary's running sums;
- `config` and `seed`.
The stimulus needs no state: every stimulus is a pure function of k (stimuli.py).

extension.json (EXTENSION) exists while a `wmnet extend` is under way; `resume_run` finishes
it from either checkpoint (the completed run's or one the extension wrote).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wmnet.config import Config, load_config
from wmnet.errors import WmnetError
from wmnet.io.runinfo import lock_folder, read_json, write_json

if TYPE_CHECKING:
    from wmnet.simulation import RunResult

CHECKPOINT = "checkpoint.pt"
EXTENSION = "extension.json"  # a `wmnet extend` under way: {"from_ms": old duration, "to_ms": new}
VERSION = 2  # 2: monitor positions (rates, synapses)


def save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    """torch.save to path.tmp, fsync, rename: a crash leaves the previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"version": VERSION, **data}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# What every checkpoint holds (see the module docstring); a file without one of them is refused.
_KEYS = ("engine", "positions", "monitors", "k_start", "steps_done", "count", "sigma_sum", "config", "seed")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's dict; one WmnetError naming the file if it is truncated, random bytes,
    not a dict, of another version or missing a key."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or random bytes raise anything from zip, pickle or torch
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise WmnetError(
            f"{path}: cannot read checkpoint, the file is damaged or not a wmnet checkpoint "
            f"({type(e).__name__}: {first[:200]})"
        ) from None
    if not isinstance(data, dict):
        raise WmnetError(f"{path}: not a wmnet checkpoint (it holds a {type(data).__name__}, not a dict)")
    if data.get("version") != VERSION:
        raise WmnetError(f"{path}: checkpoint version {data.get('version')}, expected {VERSION}")
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise WmnetError(f"{path}: incomplete checkpoint: missing {', '.join(missing)}")
    return data


def read_extension(run_dir: Path) -> dict[str, float] | None:
    """The pending `wmnet extend` of a run folder (EXTENSION), or None if there is none."""
    path = run_dir / EXTENSION
    if not path.exists():
        return None
    try:
        data = read_json(path)
        return {"from_ms": float(data["from_ms"]), "to_ms": float(data["to_ms"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WmnetError(f"{path}: cannot read the pending extension ({e})") from None


def _pending_config(d: Path, cfg: Config, ck_config: dict[str, Any], pending: dict[str, float]) -> Config:
    """The config a pending extension runs to, checked against config.yaml and the checkpoint:
    whenever the extending process died, config.yaml is the old or the new one and checkpoint.pt
    the completed run's (old config) or one the extension wrote (new config)."""
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
    the first check to the end.
    """
    from wmnet.network import Network  # heavy imports (numba, torch engines) only when resuming
    from wmnet.simulation import Simulation

    d = Path(run_dir)
    for name in (CHECKPOINT, "run.json", "config.yaml"):
        if not (d / name).is_file():
            raise WmnetError(f"{d}: no {name} to continue from")
    lock = lock_folder(d)  # before reading: another process may be writing this folder
    try:
        info = read_json(d / "run.json")
        cfg = load_config(d / "config.yaml")
        ck = load_checkpoint(d / CHECKPOINT)
        pending = read_extension(d)
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
            pending = {"from_ms": cfg.duration, "to_ms": cfg.duration + extend_ms}
            cfg = load_config(d / "config.yaml", [f"duration={pending['to_ms']!r}"])
        conn = info.get("connectivity")
        net = Network.build(
            cfg, device=info.get("device", cfg.device), connectivity=None if conn == "generated" else conn
        )
        sim = Simulation(net, input_path=info.get("input"))  # a too-short input fails here, nothing written
        if extend_ms:
            write_json(d / EXTENSION, pending)
        if pending is not None:
            ck["config"] = cfg.to_dict()
            if load_config(d / "config.yaml").to_dict() != ck["config"]:
                (d / "config.yaml.tmp").write_text(cfg.to_yaml())
                os.replace(d / "config.yaml.tmp", d / "config.yaml")
        result = sim.resume(d, ck, progress=progress, info={"input": info.get("input")}, lock=lock)
        if pending is not None:  # complete (an interrupted or failed run raised): nothing pending
            (d / EXTENSION).unlink(missing_ok=True)
        return result
    finally:
        lock.close()
