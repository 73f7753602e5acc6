"""Why a run stops before its end: SIGINT or SIGTERM (a request to stop at the end of the
current block; or Ctrl-C in a notebook, `interactive`), a numerical blow-up, a failed write."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from wmnet import model

if TYPE_CHECKING:
    from wmnet.dynamics import NeuronState
    from wmnet.engines import Engine


@dataclass
class StopRequest:
    """Set by SIGINT/SIGTERM (or `Simulation.stop`): the run stops at the end of the current block."""

    requested: bool = False


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT and SIGTERM into a StopRequest while the block runs; restore the old handlers.

    A second signal raises KeyboardInterrupt at once (the run then keeps its last checkpoint).
    Handlers can only be set in the main thread; elsewhere the signals keep their handlers.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, h in old.items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)


def interactive() -> bool:
    """Whether Python runs interactively (a Jupyter or IPython shell, or the plain REPL)."""
    ipython = sys.modules.get("IPython")
    if ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None:
        return True
    return hasattr(sys, "ps1") or bool(sys.flags.interactive)


def write_error(err: OSError, out: Path | None, checkpoint_k: int | None, dt: float) -> str:
    """One line for a failed write, saying what can still be resumed from."""
    what = f"cannot write the outputs in {out} ({err.strerror or err})"
    if checkpoint_k is None:
        return f"{what}; no checkpoint was written, so the run must start again"
    return (
        f"{what}; checkpoint.pt from step {checkpoint_k} (t = {checkpoint_k * dt:g} ms) is intact: "
        f"`wmnet resume {out}` once the problem is fixed"
    )


def first_non_finite(state: NeuronState, k: int, block: int, dt: float, L: torch.Tensor | None = None) -> str | None:
    """None if every neuron's state, and the E→E hidden variables `L`, are finite at step k; else
    a message naming the variable, the neuron (or synapse) and the step. Checked on the device
    once per block (one reduction, one sync)."""
    tensors = [state[v] for v in model.VARIABLES] + ([L.reshape(-1)] if L is not None else [])
    if bool(torch.stack([t.isfinite().all() for t in tensors]).all()):
        return None
    for var, t in zip([*model.VARIABLES, "L"], tensors):
        bad = (~t.isfinite()).nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            what = f"L of E→E synapse {i} (storage order)" if var == "L" else f"{var} of neuron {i}"
            return (
                f"numerical blow-up: {what} is {float(t[i])} at step {k} (t = {k * dt:g} ms; "
                f"the state is checked every block, it was finite at step {k - block})"
            )
    return None


def stored_L(eng: Engine) -> torch.Tensor | None:
    """The engine's own E→E L tensor (no copy, no catch-up: lazily updated values are checked
    as they stand)."""
    return eng.stored_L()
