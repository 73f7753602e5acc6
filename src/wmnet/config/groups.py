"""Named neuron groups: explicit index sets and random prototype groups, and their resolution to
global neuron indices."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from wmnet.config.base import Probability, _Strict
from wmnet.rng import stream_seed

Group = tuple[int, int] | list[int]  # global neuron indices: [start, stop) or a sorted list


def group_ids(group: Group) -> np.ndarray:
    """Global neuron indices of a group (int64)."""
    return np.arange(*group, dtype=np.int64) if isinstance(group, tuple) else np.asarray(group, dtype=np.int64)


class IndexRange(_Strict):
    """Global neuron indices start, start+1, …, stop−1."""

    start: int = Field(ge=0, description="first global neuron index")
    stop: int = Field(description="one past the last global neuron index")

    @model_validator(mode="after")
    def _nonempty(self) -> IndexRange:
        if self.stop <= self.start:
            raise ValueError(f"stop = {self.stop} must exceed start = {self.start}")
        return self


class Prototypes(_Strict):
    """P random "prototype" groups named <prefix>1 … <prefix>P, drawn from the run's seed."""

    count: int = Field(gt=0, description="number of groups P")
    fraction: float = Field(gt=0, le=1, description="E neurons per group, as a fraction f of N_E")
    fraction_I: Probability = Field(0.0, description="I neurons per group, as a fraction of N_I (0: none)")
    prefix: str = Field("P", min_length=1, description="group names are the prefix and 1 … P")


class Groups(_Strict):
    """Named neuron sets, for stimuli and monitors. E and I (the populations) always exist; with
    prototypes, `nonselective` holds the E neurons in no prototype group."""

    prototypes: Prototypes | None = Field(None, description="random prototype groups")
    sets: dict[str, list[int] | IndexRange] = Field(
        default_factory=dict, description="explicit groups: global neuron indices, as a list or {start, stop}"
    )
    overlap: bool = Field(False, description="allow groups to share neurons (prototypes are then drawn independently)")

    @field_validator("sets", mode="before")
    @classmethod
    def _ranges(cls, sets: Any) -> Any:
        # Check {start, stop} here: the union's own error would list both alternatives.
        for name, g in sets.items() if isinstance(sets, dict) else ():
            if isinstance(g, dict):
                try:
                    IndexRange.model_validate(g)
                except ValidationError as e:
                    raise ValueError(f"{name}: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        return sets

    def names(self) -> list[str]:
        """Every group name, in order: E, I, prototypes, nonselective, sets."""
        out = ["E", "I"]
        if self.prototypes is not None:
            out += [f"{self.prototypes.prefix}{i + 1}" for i in range(self.prototypes.count)] + ["nonselective"]
        return out + list(self.sets)

    def resolve(self, seed: int, n_e: int, n_i: int) -> dict[str, Group]:
        """Every group as (start, stop) or sorted unique global indices. ValueError on bad groups."""
        n = n_e + n_i
        out: dict[str, Group] = {"E": (0, n_e), "I": (n_e, n)}
        if self.prototypes is None and not self.sets:
            return out  # nothing to draw: allocate nothing (a config of 10^12 neurons stays cheap)
        from wmnet.memory import check_host

        # The membership flags, and with prototypes the permutations of E and I (int64).
        check_host(
            n + (16.0 * n if self.prototypes is not None else 0), f"groups: resolving the groups of {n:,} neurons"
        )
        taken = np.zeros(n, dtype=bool)  # neurons already in a group (overlap checks)
        if self.prototypes is not None:
            pr = self.prototypes
            size_e, size_i = round(pr.fraction * n_e), round(pr.fraction_I * n_i)
            if size_e == 0:
                raise ValueError(f"groups.prototypes.fraction: {pr.fraction} × {n_e} E neurons rounds to 0")
            if not self.overlap and (pr.count * size_e > n_e or pr.count * size_i > n_i):
                raise ValueError(
                    f"groups.prototypes: {pr.count} disjoint groups of {size_e} E and {size_i} I "
                    f"neurons do not fit in {n_e} E and {n_i} I (set groups.overlap: true)"
                )
            rng = np.random.default_rng(stream_seed(seed, "groups"))
            perm_e, perm_i = rng.permutation(n_e), rng.permutation(n_i)
            for i in range(pr.count):
                if self.overlap:  # independent draws: groups share neurons by chance
                    e, inh = rng.permutation(n_e)[:size_e], rng.permutation(n_i)[:size_i]
                else:
                    e, inh = perm_e[i * size_e : (i + 1) * size_e], perm_i[i * size_i : (i + 1) * size_i]
                ids = np.concatenate([e, inh + n_e])
                taken[ids] = True
                out[f"{pr.prefix}{i + 1}"] = sorted(int(j) for j in ids)
            rest = np.flatnonzero(~taken[:n_e])
            if rest.size:
                out["nonselective"] = rest.tolist()
        for name, g in self.sets.items():
            where = f"groups.sets.{name}"
            if name in out or name in ("E", "I", "nonselective") or not name or "/" in name or name.startswith("$"):
                raise ValueError(
                    f"{where}: invalid or repeated name (E, I and nonselective are reserved; "
                    "no '/', no leading '$', not empty)"
                )
            if isinstance(g, list) and not g:
                raise ValueError(f"{where}: empty group")
            lo, hi = (g.start, g.stop) if isinstance(g, IndexRange) else (min(g), max(g) + 1)
            if lo < 0 or hi > n:
                raise ValueError(f"{where}: indices must lie in 0..{n - 1}")
            ids = np.arange(lo, hi) if isinstance(g, IndexRange) else np.unique(np.asarray(g))
            if not self.overlap and taken[ids].any():
                raise ValueError(
                    f"{where}: shares neuron {int(ids[taken[ids]][0])} with another group "
                    "(set groups.overlap: true to allow that)"
                )
            taken[ids] = True
            out[name] = (g.start, g.stop) if isinstance(g, IndexRange) else ids.tolist()
        return out
