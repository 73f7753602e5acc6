"""Initial E→E structure (projections.E->E.structure): potentiated fractions per kind of synapse."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pytest
import torch

from wmnet.config import load_config
from wmnet.errors import WmnetError
from wmnet.rng import generator
from wmnet.wiring import generate

CPU = torch.device("cpu")
N_E, N_I = 1000, 250
BASE = [
    f"populations.E.size={N_E}",
    f"populations.I.size={N_I}",
    "device=cpu",
    "groups.prototypes.count=4",
    "groups.prototypes.fraction=0.1",
]
# Distinct probabilities per kind, so that a swapped kind fails.
PROBS = {"within": 0.9, "between": 0.05, "to_nonselective": 0.3, "from_nonselective": 0.6, "nonselective": 0.15}


def kinds_by_hand(
    groups: Mapping[str, Iterable[int]], pre: np.ndarray, post: np.ndarray, names: list[str], overlap: bool
) -> np.ndarray:
    """Kind of each synapse as a string, from the resolved groups (independent of the library's code)."""
    member: list[set[int]] = [set() for _ in range(N_E)]
    for gi, name in enumerate(names):
        for j in groups[name]:
            if j < N_E:
                member[j].add(gi)
    out = np.empty(pre.size, dtype=object)
    for s, (a, b) in enumerate(zip(pre.tolist(), post.tolist())):
        ma, mb = member[a], member[b]
        out[s] = (
            ("within" if ma & mb else "between")
            if ma and mb
            else "to_nonselective"
            if ma
            else "from_nonselective"
            if mb
            else "nonselective"
        )
    return out


def check_fractions(overrides: list[str], expected: dict[str, float], overlap: bool = False) -> None:
    cfg = load_config(None, BASE + overrides)
    conn = generate(cfg, CPU, torch.float32)
    ee = conn.projections["E->E"]
    pre, post = ee.pre_idx().numpy(), ee.post_idx.long().numpy()
    pot = conn.initial.potentiated.numpy()
    names = [f"P{i + 1}" for i in range(4)]
    kinds = kinds_by_hand(cfg.resolve_groups(), pre, post, names, overlap)
    for kind, p in expected.items():
        sel = kinds == kind
        n = int(sel.sum())
        assert n > 500, (kind, n)
        k = int(pot[sel].sum())
        sd = math.sqrt(n * p * (1 - p))
        assert abs(k - n * p) <= 5 * sd + 1e-9, f"{kind}: {k}/{n} potentiated, expected p = {p}"
    # L starts at the potentiated bit.
    assert torch.equal(conn.initial.L, conn.initial.potentiated.float())


def test_fractions_per_kind() -> None:
    check_fractions([f"projections.E->E.structure.{k}={v}" for k, v in PROBS.items()], PROBS)


def test_absent_kinds_use_p_potentiated() -> None:
    expected = {
        "within": 0.8,
        "between": 0.35,
        "to_nonselective": 0.35,
        "from_nonselective": 0.35,
        "nonselective": 0.35,
    }
    check_fractions(["projections.E->E.p_potentiated=0.35", "projections.E->E.structure.within=0.8"], expected)


def test_overlapping_groups() -> None:
    check_fractions(
        ["groups.overlap=true", "groups.prototypes.fraction=0.2"]
        + [f"projections.E->E.structure.{k}={v}" for k, v in PROBS.items()],
        PROBS,
        overlap=True,
    )


def test_bits_unchanged_without_structure() -> None:
    """No structure: the bits are the plain draw u < p_potentiated of the synapse_state stream, and an
    empty structure (every kind absent) gives the very same bits."""
    cfg = load_config(None, BASE)
    conn = generate(cfg, CPU, torch.float32)
    n = conn.projections["E->E"].n_synapses
    u = torch.rand(n, generator=generator(cfg.seed, "synapse_state", CPU))
    assert torch.equal(conn.initial.potentiated, (u < 0.2).to(torch.uint8))
    empty = generate(load_config(None, BASE + ["projections.E->E.structure={}"]), CPU, torch.float32)
    assert torch.equal(empty.initial.potentiated, conn.initial.potentiated)
    # The connectivity itself does not depend on the structure.
    within = generate(load_config(None, BASE + ["projections.E->E.structure.within=1.0"]), CPU, torch.float32)
    for name, proj in conn.projections.items():
        assert torch.equal(within.projections[name].post_idx, proj.post_idx), name
    assert not torch.equal(within.initial.potentiated, conn.initial.potentiated)


def test_needs_prototypes() -> None:
    with pytest.raises(WmnetError, match="structure: needs groups.prototypes"):
        load_config(
            None, [f"populations.E.size={N_E}", f"populations.I.size={N_I}", "projections.E->E.structure.within=0.5"]
        )
    with pytest.raises(WmnetError, match="within"):
        load_config(None, BASE + ["projections.E->E.structure.within=1.5"])
