"""Parameter sweeps: many runs of one model, one table of results (docs/sweeps.md).

    import wmnet
    df = wmnet.sweep("configs/sweep_example.yaml", out="sweeps/example", workers=2)

`wmnet.sweep` is this package, callable as `run_sweep` (runner.py): importing the subpackage
binds the name `wmnet.sweep` to it, so the package itself is what `wmnet.sweep(...)` calls.
Nothing heavy (torch, numba, pandas) is imported until a sweep runs.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any


def sweep(*args: Any, **kwargs: Any) -> Any:
    """run_sweep(sweep, out, executor="local", workers=None, address=None, per_gpu=1,
    extend=False, progress=True, plots=False) -> pandas.DataFrame (see wmnet.sweep.runner)."""
    from wmnet.sweep.runner import run_sweep

    return run_sweep(*args, **kwargs)


class _CallableModule(ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__all__ = ["sweep"]
