"""Stimulus protocols: the config's epochs and blocks expanded into a step-exact schedule.

    schedule = Schedule.from_config(cfg)
    schedule.epochs[3]          # EpochRun(name="cue", groups=("P2",), start=..., stop=..., ...)
    schedule.at(k)              # the epoch that step k belongs to
    schedule.write_events(path) # events.tsv (BIDS-style: onset and duration in s)

Shuffles are drawn from the run's seed, so a schedule is fixed by the config alone.
"""

from __future__ import annotations

import bisect
import csv
import decimal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmnet import model
from wmnet.config import Block, Config, Epoch, Selective, Sum, steps_in
from wmnet.model import Scales  # receptor scales: projection name → (slow_scale, fast_scale)
from wmnet.rng import stream_seed

EVENT_COLUMNS = (
    "onset",
    "duration",
    "trial_type",
    "stimulus",
    "group",
    "block",
    "repetition",
    "start_step",
    "stop_step",
)


def seconds(steps: int, dt: float) -> str:
    """steps·dt in seconds, exactly, as the shortest decimal: dt is taken as the decimal it was
    written as (repr), so 3000 steps of 0.1 ms are "0.3", not 0.30000000000000004 or a 6-digit
    rounding (which has only 10 ms resolution past 1000 s)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 80  # 2^48 steps × a 17-digit dt: exact
        d = decimal.Decimal(repr(float(dt))) * steps / 1000
        return format(d.normalize(), "f") if d else "0"


def describe(stim: object) -> str:
    """Short text for a stimulus spec: its kind, selective ones with their group; None is the
    config's own stimulus ("default")."""
    if stim is None:
        return "default"
    if isinstance(stim, Selective):
        return f"selective:{stim.group}"
    if isinstance(stim, Sum):
        return "+".join(describe(t) for t in stim.terms)
    return str(getattr(stim, "kind", type(stim).__name__))


def base_scales(cfg: Config) -> Scales:
    """The projections' own receptor scales (valid outside epochs that set theirs)."""
    specs = {p.name: model.projection_config(cfg, p) for p in model.PROJECTIONS}
    return {name: (spec.slow_scale, spec.fast_scale) for name, spec in specs.items()}


def _substitute(stim: object, case: dict[str, str]) -> object:
    """The stimulus spec with $group / $A / $B replaced by the case's groups."""
    if isinstance(stim, Selective) and stim.group in case:
        return stim.model_copy(update={"group": case[stim.group]})
    if isinstance(stim, Sum):
        return stim.model_copy(update={"terms": [_substitute(t, case) for t in stim.terms]})
    return stim


@dataclass(frozen=True)
class EpochRun:
    """One epoch as it runs: steps start..stop−1, its stimulus spec (None: the config's) and scales."""

    index: int  # position in the schedule; also the presentation index of noisy stimuli
    name: str
    start: int
    stop: int
    stimulus: object | None
    scales: Scales
    groups: tuple[str, ...] = ()  # the groups a block substituted ($group, or $A and $B)
    block: str = ""
    repetition: int = -1  # 0-based repetition of its block (−1 outside blocks)


@dataclass
class Schedule:
    """The epochs of a protocol in time order; they tile steps 0..n_steps−1."""

    epochs: list[EpochRun]
    dt: float
    _starts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self._starts = [e.start for e in self.epochs]

    @property
    def n_steps(self) -> int:
        return self.epochs[-1].stop if self.epochs else 0

    @classmethod
    def from_config(cls, cfg: Config) -> Schedule:
        assert cfg.protocol is not None, "the config has no protocol"
        base = base_scales(cfg)
        rng = np.random.default_rng(stream_seed(cfg.seed, "protocol"))
        out: list[EpochRun] = []
        k = 0

        def add(ep: Epoch | None, name: str, n: int, **extra: object) -> None:
            nonlocal k
            scales = dict(base)
            for proj, over in ep.projections.items() if ep is not None else ():
                slow, fast = scales[proj]
                scales[proj] = (
                    slow if over.slow_scale is None else over.slow_scale,
                    fast if over.fast_scale is None else over.fast_scale,
                )
            stim = None if ep is None else ep.stimulus
            out.append(EpochRun(len(out), name, k, k + n, stim, scales, **extra))  # type: ignore[arg-type]
            k += n

        if cfg.protocol.initial_rest:
            add(None, "rest", steps_in(cfg.protocol.initial_rest, cfg.dt, "protocol.initial_rest"))
        for item in cfg.protocol.epochs:
            if isinstance(item, Epoch):
                add(item, item.name, steps_in(item.duration, cfg.dt, "duration"))
                continue
            assert isinstance(item, Block)
            cases = item.cases()
            for rep in range(item.repeat):
                order = rng.permutation(len(cases)) if item.shuffle else range(len(cases))
                for c in order:
                    case = cases[int(c)]
                    for ep in item.epochs:
                        sub = ep.model_copy(update={"stimulus": _substitute(ep.stimulus, case)})
                        add(
                            sub,
                            ep.name,
                            steps_in(ep.duration, cfg.dt, "duration"),
                            groups=tuple(case.values()),
                            block=item.block,
                            repetition=rep,
                        )
        return cls(out, cfg.dt)

    def at(self, k: int) -> EpochRun | None:
        """The epoch holding step k; None past the protocol's end."""
        i = bisect.bisect_right(self._starts, k) - 1
        return self.epochs[i] if 0 <= i and k < self.epochs[i].stop else None

    def write_events(self, path: Path) -> None:
        """events.tsv: one row per epoch. onset and duration in seconds (BIDS events files);
        stimulus names the input (selective ones with their group); group is the trial's group(s)
        in a block; start_step and stop_step are exact (the epoch runs steps start_step..stop_step−1)."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, delimiter="\t", lineterminator="\n")
            w.writerow(EVENT_COLUMNS)
            for e in self.epochs:
                w.writerow(
                    [
                        seconds(e.start, self.dt),
                        seconds(e.stop - e.start, self.dt),
                        e.name,
                        describe(e.stimulus),
                        "+".join(e.groups) or "n/a",
                        e.block or "n/a",
                        e.repetition if e.repetition >= 0 else "n/a",
                        e.start,
                        e.stop,
                    ]
                )
        tmp.replace(path)


def read_events(path: Path) -> list[dict[str, str]]:
    """The rows of an events.tsv, as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))
