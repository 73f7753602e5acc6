"""Claiming a run folder: created atomically and locked before anything in it is written or deleted.

    check_out(out, overwrite)        # cheap, before the network is built: refuse an unusable --out at once
    folder = claim_run_folder(out, overwrite, inputs=[config_file, connectivity, input_path])
    try:
        sim.run(out=folder)          # a RunFolder (run_folder.py): the lock is held from creation to the end
    finally:
        folder.close()

- No `out`: a new `runs/<YYYYmmdd-HHMMSS>` (then `-2`, `-3`, ... when that name is taken),
  made with an exclusive mkdir, so runs started in the same second get different folders.
- `out` missing: made with an exclusive mkdir (its parents as needed).
- `out` empty (a symlink to an empty folder or an empty mount point too): used as it is.
- `out` not empty, with `overwrite`: its contents are deleted (the folder itself stays, so a
  mount point or a symlink keeps working) only if it is a wmnet run folder (run.json with
  `wmnet_run`), no wmnet process holds its lock, and it is neither the working folder, one of
  its parents, nor a folder holding one of the run's inputs. Anything else is refused with one
  line and nothing deleted.
The lock is taken before the deletion, and the folder is checked again under it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from wmnet.errors import WmnetError
from wmnet.io.runinfo import lock_folder

if TYPE_CHECKING:
    from wmnet.run_folder import RunFolder

LOCK = ".lock"  # the lock file lock_folder keeps in every run folder; not counted as content
MAX_NAME_TRIES = 1000  # runs/<timestamp>-2 ... -1000: more runs in one second than anyone starts


def _claimed(path: Path, lock: IO[str]) -> RunFolder:
    """The claimed folder, holding `lock` until its `close()`."""
    from wmnet.run_folder import RunFolder  # torch and h5py: only once a folder is claimed

    return RunFolder(path, lock, owns_lock=True)


def is_run_folder(path: Path) -> bool:
    """True if `path` holds a run.json that wmnet wrote (a JSON object with `wmnet_run`)."""
    try:
        with open(path / "run.json") as f:
            data: Any = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("wmnet_run"))


def config_inputs(node: object) -> list[Path]:
    """Every array-stimulus `path` in a config (any depth: stimulus, protocol epochs, sums)."""
    from pydantic import BaseModel

    from wmnet.config import ArrayInput

    found: list[Path] = []
    if isinstance(node, ArrayInput):
        found.append(Path(node.path))
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            found += config_inputs(getattr(node, name))
    elif isinstance(node, (list, tuple)):
        for item in node:
            found += config_inputs(item)
    elif isinstance(node, dict):
        for item in node.values():
            found += config_inputs(item)
    return found


def _contents(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name != LOCK]


def _inside(child: Path, folder: Path) -> bool:
    return child == folder or folder in child.parents


def _running_inside(path: Path) -> Path | None:
    """A folder below `path` whose lock a wmnet process holds (a run writing there), or None.
    Probed with a shared lock, released at once: it never blocks or fails the holder."""
    import fcntl

    for root, _dirs, files in os.walk(path):  # not into symlinked folders: we only unlink those
        if LOCK not in files or Path(root) == path:
            continue
        try:
            with open(Path(root) / LOCK, "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return Path(root)
    return None


def _why_not_replaceable(path: Path, inputs: Iterable[tuple[str, Path]]) -> str | None:
    """Why the non-empty folder `path` must not be replaced; None if it may be."""
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd:
        return "it is the working folder"
    if real in cwd.parents:
        return f"it holds the working folder {cwd}"
    for what, p in inputs:
        if _inside(Path(os.path.realpath(p)), real):
            return f"it holds this run's {what} {p}"
    if not is_run_folder(path):
        return "it is not a wmnet run folder (no run.json written by wmnet)"
    busy = _running_inside(path)
    if busy is not None:
        return f"a wmnet process is writing the run folder {busy} inside it"
    return None


def _lock(path: Path, label: str) -> IO[str]:
    try:
        return lock_folder(path)
    except WmnetError:
        raise WmnetError(f"{label}: a wmnet process is writing this run folder; nothing was deleted") from None


def _clear(path: Path, label: str) -> None:
    """Delete everything in `path` but the lock file (symlinks themselves, never their targets)."""
    try:
        for p in _contents(path):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    except OSError as e:
        raise WmnetError(
            f"{label}: cannot clear the previous run ({e.strerror or e}: {getattr(e, 'filename', '') or path})"
        ) from None


def _new_default(base: Path) -> RunFolder:
    """A fresh base/<timestamp>[-n], made by an exclusive mkdir and locked."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WmnetError(f"{base}: cannot create the runs folder ({e.strerror or e})") from None
    for i in range(1, MAX_NAME_TRIES + 1):
        path = base / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise WmnetError(f"{path}: cannot create the output folder ({e.strerror or e})") from None
        try:
            return _claimed(path, lock_folder(path))
        except WmnetError:
            continue  # someone claimed our new, empty folder with --out first: take the next name
    raise WmnetError(f"{base}: {MAX_NAME_TRIES} run folders named {stamp}* exist already")


def claim_owned_folder(path: Path) -> RunFolder:
    """A folder its caller owns (a sweep's point folder): created if missing, locked, then
    emptied of whatever an earlier attempt left there. Refused while another process holds it."""
    label = str(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WmnetError(f"{label}: cannot create the folder ({e.strerror or e})") from None
    lock = _lock(path, label)
    try:
        _clear(path, label)
    except BaseException:
        lock.close()
        raise
    return _claimed(path, lock)


def _usable(path: Path, overwrite: bool, label: str) -> bool:
    """Whether the existing `path` is full (holds more than a lock file); a WmnetError if it is
    not a folder, cannot be read, or is full and not to be overwritten."""
    if not path.is_dir():
        raise WmnetError(f"{label}: exists and is not a folder")
    try:
        full = bool(_contents(path))
    except OSError as e:
        raise WmnetError(f"{label}: cannot read the folder ({e.strerror or e})") from None
    if full and not overwrite:
        raise WmnetError(f"{label}: folder is not empty (use --overwrite to replace a previous run there)")
    return full


def check_out(out: str | Path | None, overwrite: bool) -> None:
    """Refuse an unusable --out before the network is built (cheap, no lock: claim_run_folder
    decides for good, under the folder's lock, once everything else has been validated)."""
    if out is None:
        return
    label = f"--out {out}"
    try:
        if Path(out).exists():
            _usable(Path(out), overwrite, label)
    except OSError as e:  # e.g. a name too long to stat
        raise WmnetError(f"{label}: cannot use the output folder ({e.strerror or e})") from None


def claim_run_folder(
    out: str | Path | None,
    overwrite: bool,
    inputs: Iterable[tuple[str, str | Path | None]] = (),
    base: Path = Path("runs"),
) -> RunFolder:
    """Create or claim the output folder of a run and hold its lock (see the module docstring).

    `inputs`: (what, path) of every file the run reads, e.g. ("--connectivity", "x.npz"); a
    folder holding one is never replaced. `base`: where folders without `out` go.
    """
    if out is None:
        return _new_default(base)
    label = f"--out {out}"
    try:
        return _claim(Path(out), overwrite, [(what, Path(p)) for what, p in inputs if p is not None], label)
    except OSError as e:  # e.g. a name too long to stat, a folder we may not list
        raise WmnetError(f"{label}: cannot use the output folder ({e.strerror or e})") from None


def _claim(path: Path, overwrite: bool, files: list[tuple[str, Path]], label: str) -> RunFolder:
    """claim_run_folder for a given --out (`label` starts its messages)."""
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a parent folder should be, no permission, ...
            raise WmnetError(f"{label}: cannot create the output folder ({e.strerror or e})") from None
        try:
            path.mkdir()
            return _claimed(path, lock_folder(path))
        except FileExistsError:
            pass  # made by someone else since: claim it as an existing folder below
        except WmnetError:
            raise WmnetError(f"{label}: another wmnet process claimed this new folder first") from None
        except OSError as e:
            raise WmnetError(f"{label}: cannot create the output folder ({e.strerror or e})") from None
    full = _usable(path, overwrite, label)
    if full:
        why = _why_not_replaceable(path, files)
        if why is not None:
            raise WmnetError(f"{label}: refusing to replace it: {why}; nothing was deleted")
    lock = _lock(path, label)
    try:
        # Checked again under the lock: another run may have finished or started in between.
        if _contents(path):
            if not overwrite:
                raise WmnetError(f"{label}: folder is not empty (use --overwrite to replace a previous run there)")
            why = _why_not_replaceable(path, files)
            if why is not None:
                raise WmnetError(f"{label}: refusing to replace it: {why}; nothing was deleted")
            _clear(path, label)
    except BaseException:
        lock.close()
        raise
    return _claimed(path, lock)
