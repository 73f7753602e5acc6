"""Time on the dt grid: how many steps a duration is, and the most steps a run can take."""

from __future__ import annotations

import math

# At most 2^48 steps (about 890 years of simulated time at dt = 0.1 ms): beyond that a step
# count overflows the engines' int64 arithmetic on k·dt and the progress/summary float maths.
MAX_STEPS = 1 << 48


class TooManySteps(ValueError):
    """A duration that is a valid multiple of dt but more steps than a run can take."""


def steps_in(duration: float, dt: float, what: str) -> int:
    """Number of dt steps in `duration` (ms); error unless dt divides it (and at most MAX_STEPS)."""
    q = duration / dt
    if not math.isfinite(q):
        raise TooManySteps(f"{what}: {duration} ms is not a finite number of steps of dt = {dt} ms")
    n = round(q)
    if n > MAX_STEPS:
        raise TooManySteps(
            f"{what}: {duration} ms is {n:.3g} steps of dt = {dt} ms, more than the "
            f"{MAX_STEPS:.3g} (2^48) a run can take"
        )
    if n <= 0 or not math.isclose(n * dt, duration, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"{what} {duration} ms is not a whole multiple of dt = {dt} ms")
    return n


def _period_steps(ms: float, dt: float, where: str) -> int:
    """steps_in, with the message naming the field `where`."""
    try:
        return steps_in(ms, dt, where)
    except TooManySteps:
        raise
    except ValueError:
        raise ValueError(f"{where}: {ms} ms is not a whole multiple of dt = {dt} ms") from None
