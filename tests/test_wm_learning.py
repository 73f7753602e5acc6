"""Reduced working-memory learning experiment: the direction of every effect in docs/tutorial.md.

The physics and learning rule of configs/working_memory_cpu.yaml (2000 E + 500 I: a smaller network
would change the in-degrees), but one trained group and few trials (10.5 s simulated instead of 68):
P1 is tested, trained three times, and tested again with P2, which is never trained (the control).
The memory state must appear by learning alone: before training P1's cue leaves nothing behind,
after training P1 holds through the delay; P2's cue leaves nothing behind; learning potentiates
P1's inner synapses past the mean-field's critical fraction and leaves P2's where they were; and
memory_states finds the presentation after which P1 first holds its delay.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wmnet import Network, Simulation, load_config
from wmnet.memory_states import Criterion, criteria, delay_holds, emergence

ROOT = Path(__file__).resolve().parents[1]
TRIAL = (
    "{name: reset, duration: 300, stimulus: {kind: sum, terms: [{kind: background}, {kind: constant, E: -1.0}]}},"
    "{name: cue, duration: %d, stimulus: {kind: selective, group: $group, contrast_E: 1.5}},"
)
PROTOCOL = (
    "protocol={initial_rest: 300, epochs: ["
    "{block: test_before, groups: [P1], epochs: [" + TRIAL % 300 + "{name: delay, duration: 800},"
    "{name: delay_end, duration: 200}]},"
    "{block: train, repeat: 3, groups: [P1], epochs: [" + TRIAL % 500 + "{name: delay, duration: 1000}]},"
    "{block: test_after, groups: [P1, P2], epochs: [" + TRIAL % 300 + "{name: delay, duration: 800},"
    "{name: delay_end, duration: 200}]}]}"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(
        ROOT / "configs/working_memory_cpu.yaml",
        [
            PROTOCOL,
            "record.synapses.every=100",
            "record.synapses.groups=[[P1, P1], [P2, P2], [P1, P2], [P1, nonselective], [nonselective, P1], "
            "[nonselective, nonselective]]",
            "record.snapshots=[]",
            "record.traces.every=1000",
        ],
    )
    out = tmp_path_factory.mktemp("wm_learning") / "run"
    Simulation(Network.build(cfg)).run(out=out, progress=False)
    return out


def by_name(run: Path) -> dict[str, Criterion]:
    return {c.name.split(":")[0]: c for c in criteria(run)}


def test_before_training_a_cue_leaves_nothing(run: Path) -> None:
    c = by_name(run)["before training P1"]
    assert c.passed, c.value


def test_after_training_the_group_holds_its_memory(run: Path) -> None:
    c = by_name(run)["after training P1"]
    assert c.passed, c.value


def test_untrained_group_holds_nothing(run: Path) -> None:
    c = by_name(run)["untrained control P2"]
    assert c.passed, c.value
    (p2,) = [h for h in delay_holds(run) if h.block == "test_after" and h.group == "P2"]
    assert not p2.holds and p2.rate_hz < 5


def test_learning_emerges_within_training_and_past_the_critical_fraction(run: Path) -> None:
    (p1,) = emergence(run, critical=True)
    assert p1.group == "P1" and p1.presentation is not None and p1.presentation <= 3
    assert p1.g_in is not None and p1.g_critical is not None
    # The state appears once the inner fraction has crossed the mean-field boundary (docs/tutorial.md:
    # the simulation's emergence fraction and the theory's critical one agree within 0.1).
    assert p1.g_in > p1.g_critical - 0.1
    holds = [h for h in delay_holds(run) if h.block == "train"]
    assert not holds[0].holds  # the first presentation does not yet leave a memory state


def test_learning_is_selective(run: Path) -> None:
    import h5py

    with h5py.File(run / "synapses.h5") as f:
        p11 = f["synapses/P1->P1/potentiated_fraction"][:]
        p22 = f["synapses/P2->P2/potentiated_fraction"][:]
        p12 = f["synapses/P1->P2/potentiated_fraction"][:]
    assert p11[0] == pytest.approx(0.2, abs=0.03) and p11[-1] > 0.7  # P1's inner synapses potentiate
    assert p22[-1] < 0.35  # the untrained group's stay near the start (one test cue)
    assert p12[-1] < p12[0]  # synapses from the trained group onto another depress
