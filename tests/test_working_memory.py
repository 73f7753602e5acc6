"""Reduced working-memory experiment: the direction of every effect of configs/working_memory_cpu.yaml.

The physics of the CPU config (2000 E + 500 I, the same in-degrees as the full network; a
smaller network would change them), but short epochs and no learning: the E→E structure is
pre-wired with `projections.E->E.structure` at the potentiated fractions training reaches, so
the test takes seconds of simulated time instead of the experiment's 38 s.
- unstructured (every synapse 0.2, as before training, which is also what an untrained group
  has): a cue leaves no delay activity;
- within-group 0.88 (what training reaches): the spontaneous state lights no group, the cued
  group holds through the delay far above the others, and a second group's cue hands the
  memory over.
The learning itself is checked, shortened, by tests/test_wm_learning.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wmnet import Network, Simulation, load_config
from wmnet.analysis import epoch_rates

ROOT = Path(__file__).resolve().parents[1]
# The fractions the demo's training reaches outside the groups (docs/tutorial.md, section 3).
LEARNED = [
    "projections.E->E.structure.between=0.0",
    "projections.E->E.structure.to_nonselective=0.0",
    "projections.E->E.structure.from_nonselective=0.2",
    "projections.E->E.structure.nonselective=0.2",
]
PROTOCOL = (
    "protocol={initial_rest: 300, epochs: [{block: probe, pairs: [[P1, P2]], epochs: ["
    "{name: cue_A, duration: 300, stimulus: {kind: selective, group: $A, contrast_E: 1.5}},"
    "{name: delay_A, duration: 600},"
    "{name: cue_B, duration: 300, stimulus: {kind: selective, group: $B, contrast_E: 1.5}},"
    "{name: delay_B, duration: 400}]}]}"
)


def run_probe(tmp_path: Path, name: str, structure: list[str]) -> dict[str, dict[str, float]]:
    """Rates (Hz) per epoch name of the probe: P1 cued, its delay, then P2 cued, its delay."""
    cfg = load_config(
        ROOT / "configs/working_memory_cpu.yaml",
        [
            "plasticity.enabled=false",
            PROTOCOL,
            "record.synapses.every=null",
            "record.snapshots=[]",
            "record.traces.every=1000",
            *structure,
        ],
    )
    out = tmp_path / name
    Simulation(Network.build(cfg)).run(out=out, progress=False)
    return {r["trial_type"]: r["rate_hz"] for r in epoch_rates(out)}


def others(rates: dict[str, float], *cued: str) -> float:
    return max(rates[g] for g in ("P1", "P2", "P3", "P4", "P5") if g not in cued)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    return run_probe(tmp_path_factory.mktemp("wm"), "trained", ["projections.E->E.structure.within=0.88", *LEARNED])


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    return run_probe(tmp_path_factory.mktemp("wm"), "untrained", [])


def test_before_training_no_delay_activity(untrained: dict[str, dict[str, float]]) -> None:
    r = untrained
    assert r["cue_A"]["P1"] > 20 * max(1.0, others(r["cue_A"], "P1"))  # the cue drives its group
    assert r["delay_A"]["P1"] <= 2 * max(1.0, others(r["delay_A"], "P1"))  # and leaves nothing behind
    assert r["delay_A"]["P1"] < 5


def test_after_training_the_cued_group_holds(trained: dict[str, dict[str, float]]) -> None:
    r = trained
    assert r["rest"]["E"] < 5 and r["rest"]["I"] < 20 and others(r["rest"]) < 5  # spontaneous: no group lit
    assert r["delay_A"]["P1"] >= 15
    assert r["delay_A"]["P1"] >= 4 * max(1.0, others(r["delay_A"], "P1"))
    assert others(r["delay_A"], "P1") <= 5


def test_a_second_cue_hands_the_memory_over(trained: dict[str, dict[str, float]]) -> None:
    r = trained
    assert r["delay_B"]["P2"] >= 15 and r["delay_B"]["P1"] <= 5
    assert others(r["delay_B"], "P2") <= 5
