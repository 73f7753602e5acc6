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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.io.runinfo import read_json

if TYPE_CHECKING:
    from wmnet.simulation import RunResult

CHECKPOINT = "checkpoint.pt"
VERSION = 2  # 2: monitor positions (rates, synapses)


def save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    """torch.save to path.tmp, fsync, rename: a crash leaves the previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"version": VERSION, **data}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise WmnetError(f"{path}: cannot read checkpoint ({e})") from None
    if data.get("version") != VERSION:
        raise WmnetError(f"{path}: checkpoint version {data.get('version')}, expected {VERSION}")
    return data


def resume_run(run_dir: str | Path, progress: bool = True, extend_ms: float = 0.0) -> RunResult:
    """Continue the run in `run_dir` from its checkpoint to its planned end; with `extend_ms`,
    continue a completed run that many ms beyond its end (`wmnet extend`).

    The network is rebuilt from run_dir/config.yaml (same seed, same connectivity; a
    connectivity or input file named in run.json is reused) on the device run.json names.
    """
    from wmnet.network import Network  # heavy imports (numba, torch engines) only when resuming
    from wmnet.simulation import Simulation

    d = Path(run_dir)
    for name in (CHECKPOINT, "run.json", "config.yaml"):
        if not (d / name).is_file():
            raise WmnetError(f"{d}: no {name} to continue from")
    info = read_json(d / "run.json")
    cfg = load_config(d / "config.yaml")
    ck = load_checkpoint(d / CHECKPOINT)
    if ck["config"] != cfg.to_dict():
        raise WmnetError(f"{d}: config.yaml differs from the config in {CHECKPOINT}")
    if extend_ms:
        if info.get("status") != "complete" or int(ck["engine"]["k"]) != int(ck["k_start"]) + cfg.n_steps:
            raise WmnetError(f"{d}: only a completed run with its final checkpoint can be extended "
                             f"(status {info.get('status')!r}; an interrupted run needs `wmnet resume` first)")
        cfg = load_config(d / "config.yaml", [f"duration={cfg.duration + extend_ms}"])
        ck["config"] = cfg.to_dict()
        (d / "config.yaml.tmp").write_text(cfg.to_yaml())
        os.replace(d / "config.yaml.tmp", d / "config.yaml")
    conn = info.get("connectivity")
    net = Network.build(cfg, device=info.get("device", cfg.device), connectivity=None if conn == "generated" else conn)
    sim = Simulation(net, input_path=info.get("input"))
    return sim.resume(d, ck, progress=progress, info={"input": info.get("input")})
