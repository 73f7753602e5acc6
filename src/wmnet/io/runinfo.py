"""run.json: written atomically (temporary file, then rename), so it is never half-written."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

from wmnet.errors import WmnetError


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
