"""One sweep point, run inside a worker process (local pool or Ray task).

`run_point` does what `wmnet run CONFIG --set ... --out FOLDER --no-plot --quiet` does, through
the same library calls, so the folder's files are those of that command; or, when the folder
holds an interrupted run with a checkpoint, what `wmnet resume FOLDER` does. It never raises:
every failure comes back as a status and a one-line reason, so one point cannot stop the others.
Torch and numba are imported here only inside the function, after the thread limits are set.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ERROR_MAX = 500  # characters of a failure's one-line reason

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= ERROR_MAX else line[: ERROR_MAX - 3] + "..."


def limit_threads(threads: int) -> None:
    """Thread pools of this process: set before numba and torch are first imported (numba reads
    NUMBA_NUM_THREADS once); torch's intra-op pool is set again after import."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(threads)


def die_with_parent() -> None:
    """Linux: SIGKILL this worker when the sweep's main process dies (kill -9 included), so no
    orphan keeps writing (and locking) a point folder the next run of the sweep resumes."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def init_worker(threads: int, gpu_slots: Any) -> None:
    """A local worker's start: thread limits before any import, its GPU, dying with the sweep.
    (Here, not in runner.py: a spawned worker imports only this light module before its first point.)"""
    limit_threads(threads)
    if gpu_slots is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_slots.get()
    die_with_parent()


PRIMED = "WMNET_SWEEP_IMPORT_S"  # set in a worker by prime_worker: its import time, for its first point


def prime_worker() -> float:
    """Import torch and the engines in a fresh worker (while the main process warms numba's
    cache); the time goes to the worker's first point as its `import_s`."""
    t0 = time.perf_counter()
    import torch  # noqa: F401

    import wmnet.simulation  # noqa: F401

    took = time.perf_counter() - t0
    os.environ.setdefault(PRIMED, str(took))
    return took


def _status(folder: Path) -> str | None:
    try:
        with open(folder / "run.json") as f:
            return json.load(f).get("status")
    except (OSError, ValueError):
        return None


def _fresh(task: dict[str, Any], folder: Path) -> None:
    """What `wmnet run` does (launch.py): validate and build first, then (re)create the folder and run."""
    from wmnet.config import load_config
    from wmnet.errors import WmnetError
    from wmnet.io.claim import claim_owned_folder
    from wmnet.launch import build, plan, run_in

    cfg = load_config(task["base"], task["overrides"])
    if cfg.to_yaml() != task["config_yaml"]:
        raise WmnetError(
            "the point's config differs from the one validated when the sweep started "
            "(was the base config file edited?)"
        )
    device, _reason = plan(cfg)  # as `wmnet run`: refuse before allocating
    sim = build(cfg, device)
    # Locked before anything in it is deleted or written; the run then holds the lock to its end.
    run_in(claim_owned_folder(folder), sim, progress=False, info={"input": None})


def _continue(task: dict[str, Any], folder: Path) -> str:
    """Resume an interrupted point from its checkpoint (as `wmnet resume`), else run it afresh."""
    from wmnet.checkpoint import CHECKPOINT, EXTENSION, resume_run
    from wmnet.errors import WmnetError

    # (config.yaml may differ from the validated one after a `wmnet extend`: resume that too,
    # and finish an extension that was under way.)
    unfinished = _status(folder) in ("running", "interrupted") or (folder / EXTENSION).exists()
    resumable = unfinished and (folder / CHECKPOINT).is_file() and (folder / "config.yaml").is_file()
    if resumable:
        try:
            resume_run(folder, progress=False)
            return "resumed"
        except WmnetError:
            if _status(folder) == "failed":
                raise  # the resumed run itself failed (a blow-up): a real failure
            # The checkpoint could not be used (unreadable, another version): start again.
    _fresh(task, folder)
    return "run"


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Run one point; return {name, status, error, mode, wall_s, import_s, pid}.

    task: name, folder, base (config file or None), overrides (`key=value` list), config_yaml
    (the validated config, as config.yaml), threads, protocol (bool), plots (bool).
    """
    t0 = time.perf_counter()
    limit_threads(int(task["threads"]))
    out: dict[str, Any] = {
        "name": task["name"],
        "status": "failed",
        "error": None,
        "mode": None,
        "import_s": 0.0,
        "pid": os.getpid(),
        "t_start": time.time(),
    }
    try:
        import torch  # the heavy imports, timed: paid by a worker's first point only

        import wmnet.simulation  # noqa: F401

        torch.set_num_threads(int(task["threads"]))
        out["import_s"] = time.perf_counter() - t0 + float(os.environ.pop(PRIMED, 0.0))
        from wmnet.analysis import write_epoch_rates

        folder = Path(task["folder"])
        out["mode"] = _continue(task, folder)
        if task["protocol"]:
            write_epoch_rates(folder)
        if task["plots"]:
            import matplotlib

            matplotlib.use("Agg")  # a worker has no display (as the CLI chooses for `wmnet run`)
            from wmnet.plotting import save_run_figures

            save_run_figures(folder)
        out["status"] = "complete"
    except KeyboardInterrupt:  # SIGINT/SIGTERM: the run stopped at a block and wrote its checkpoint
        out["status"], out["error"] = "interrupted", "interrupted (rerun the sweep to resume it)"
    except MemoryError:
        out["error"] = "out of memory (MemoryError)"
    except Exception as e:  # noqa: BLE001 - any failure is this point's, reported in one line
        from wmnet.errors import WmnetError

        msg = str(e) if isinstance(e, WmnetError) else f"{type(e).__name__}: {e}"
        if "out of memory" in msg.lower() and not isinstance(e, WmnetError):
            msg = f"out of memory ({msg})"
        out["error"] = one_line(msg)
    out["wall_s"] = time.perf_counter() - t0
    out["t_end"] = time.time()  # Unix times: the sweep's timeline (bench/sweep_bench.py)
    out["compiled"] = numba_compilations()
    return out


def numba_compilations() -> int:
    """How many CPU-engine functions this process compiled instead of loading them from numba's
    cache (0 when the cache is shared and warm; counted over the process's life)."""
    import sys

    sparse = sys.modules.get("wmnet.engines.sparse")
    if sparse is None:
        return 0
    return sum(
        sum(f.stats.cache_misses.values())
        for f in vars(sparse).values()
        if hasattr(f, "stats") and hasattr(f.stats, "cache_misses")
    )
