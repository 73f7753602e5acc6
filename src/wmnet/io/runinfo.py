"""run.json: what it says about a run (`run_info`), written atomically (temporary file, then
rename) so that it is never half-written; and the lock every run folder holds while written."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from wmnet.errors import WmnetError

if TYPE_CHECKING:
    import torch

    from wmnet.network import Network

PACKAGES = ("wmnet", "torch", "numpy", "numba", "triton", "h5py", "pydantic")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_info(net: Network, engine: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """run.json's description of a run of `net` with engine `engine` (its status and summary
    are added as it runs and ends); `extra` (e.g. the input file) is added as it is."""
    from wmnet.memory import footprint

    return {
        "wmnet_run": 1,
        "seed": net.config.seed,
        "config": net.config.to_dict(),
        "engine": engine,
        "device": str(net.device),
        "device_name": device_name(net.device),
        "dtype": str(net.dtype).removeprefix("torch."),
        "connectivity": net.connectivity.source,
        "n_neurons": net.n,
        "n_synapses": net.connectivity.n_synapses(),
        "memory": footprint(net),
        "versions": package_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; null reads as "not applicable"
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(_clean(data), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def lock_folder(path: Path) -> IO[str]:
    """Hold an exclusive lock on `path`/.lock while a run writes there (released when the
    returned file is closed, or the process ends): a second run or resume in the same folder
    stops with a clear error instead of interleaving its writes with the first one's."""
    import fcntl

    try:
        path.mkdir(parents=True, exist_ok=True)
        fh = open(path / ".lock", "a")
    except OSError as e:
        raise WmnetError(f"{path}: cannot write the run folder ({e.strerror or e})") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise WmnetError(f"{path}: another wmnet process is writing this run folder") from None
    return fh
