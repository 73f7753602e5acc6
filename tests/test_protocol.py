"""Neuron groups, stimuli, protocols and receptor scaling (issue 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wmnet.config import Selective, load_config
from wmnet.errors import WmnetError
from wmnet.network import Network
from wmnet.protocol import Schedule, read_events
from wmnet.simulation import Simulation
from wmnet.stimuli import make_stimulus

CPU = torch.device("cpu")
F64 = torch.float64
SMALL = ["populations.E.size=400", "populations.I.size=100", "device=cpu"]
PROTOTYPES = "groups.prototypes={count: 4, fraction: 0.1, fraction_I: 0.2}"
BACKGROUND = "background={E: {mean: 2.0, std: 0.5}, I: {mean: 1.0, std: 0.25}, grain: 0.5}"


def ids_of(g: tuple[int, int] | list[int]) -> np.ndarray:
    return np.arange(*g) if isinstance(g, tuple) else np.asarray(g)


# --- groups ---------------------------------------------------------------------------------


def test_prototype_groups_have_their_sizes_and_do_not_overlap() -> None:
    groups = load_config(None, [*SMALL, PROTOTYPES]).resolve_groups()
    assert list(groups) == ["E", "I", "P1", "P2", "P3", "P4", "nonselective"]
    members = [ids_of(groups[f"P{i}"]) for i in range(1, 5)]
    for m in members:
        assert (m < 400).sum() == 40 and (m >= 400).sum() == 20  # 0.1·400 E and 0.2·100 I
        assert np.all(np.diff(m) > 0)  # sorted, unique
    every = np.concatenate(members)
    assert np.unique(every).size == every.size  # disjoint
    rest = ids_of(groups["nonselective"])
    assert np.array_equal(rest, np.setdiff1d(np.arange(400), every))


def test_groups_are_drawn_from_the_seed() -> None:
    a = load_config(None, [*SMALL, PROTOTYPES, "seed=3"]).resolve_groups()
    b = load_config(None, [*SMALL, PROTOTYPES, "seed=3"]).resolve_groups()
    c = load_config(None, [*SMALL, PROTOTYPES, "seed=4"]).resolve_groups()
    assert a == b
    assert a["P1"] != c["P1"]


def test_overlapping_prototypes_only_when_asked() -> None:
    # 3 groups of half the E neurons cannot be disjoint: an error, unless overlap is allowed.
    spec = "groups.prototypes={count: 3, fraction: 0.5}"
    with pytest.raises(WmnetError, match=r"groups\.prototypes: 3 disjoint groups of 200 E .* groups\.overlap: true"):
        load_config(None, [*SMALL, spec])
    groups = load_config(None, [*SMALL, spec, "groups.overlap=true"]).resolve_groups()
    p = [set(groups[f"P{i}"]) for i in (1, 2, 3)]
    assert all(len(s) == 200 for s in p)
    assert p[0] & p[1]  # independent draws of half the neurons share some


def test_explicit_groups_and_their_errors() -> None:
    groups = load_config(None, [*SMALL, "groups.sets={A: [5, 3, 3], B: {start: 450, stop: 460}}"]).resolve_groups()
    assert groups["A"] == [3, 5] and groups["B"] == (450, 460)
    with pytest.raises(WmnetError, match=r"groups\.sets\.A: shares neuron \d+ with another group"):
        load_config(None, [*SMALL, PROTOTYPES, "groups.sets={A: {start: 0, stop: 400}}"])


# --- stimuli --------------------------------------------------------------------------------


def stimulus(*sets: str, dtype: torch.dtype = F64):  # noqa: ANN201
    cfg = load_config(None, [*SMALL, *sets])
    return cfg, make_stimulus(cfg, CPU, dtype)


def test_background_statistics_and_grain() -> None:
    cfg, stim = stimulus(BACKGROUND, "stimulus={kind: background}", "duration=2000")
    x = stim.block(0, 20000).numpy()  # 2000 ms: 4000 grains of 5 steps
    grains = x.reshape(4000, 5, 500)
    assert np.all(grains == grains[:, :1])  # piecewise constant within a grain
    assert np.all(grains[1:, 0] != grains[:-1, 0])  # and redrawn at every grain
    e, i = grains[:, 0, :400], grains[:, 0, 400:]
    # 1.6 M and 0.4 M draws: the sample moments are within 5 standard errors of the truth.
    assert abs(e.mean() - 2.0) < 5 * 0.5 / np.sqrt(e.size) and abs(i.mean() - 1.0) < 5 * 0.25 / np.sqrt(i.size)
    assert abs(e.std() - 0.5) < 0.005 and abs(i.std() - 0.25) < 0.005
    # Neurons are independent: correlation between two neurons' noise is near 0.
    assert abs(np.corrcoef(e[:, 0], e[:, 1])[0, 1]) < 0.1
    # Any block equals the same steps taken one by one (resumed runs and GPU blocks rely on it).
    assert torch.equal(stim.block(1237, 31), torch.stack([stim(k) for k in range(1237, 1268)]))


def test_selective_stimulus_multiplies_the_group_mean() -> None:
    cfg, stim = stimulus(
        BACKGROUND, PROTOTYPES, "stimulus={kind: selective, group: P2, contrast_E: 3.0, contrast_I: 0.5}"
    )
    _, plain = stimulus(BACKGROUND, PROTOTYPES, "stimulus={kind: background}")
    x, base = stim.block(0, 50).numpy(), plain.block(0, 50).numpy()
    member = np.zeros(500, dtype=bool)
    member[ids_of(cfg.resolve_groups()["P2"])] = True
    mean = np.r_[np.full(400, 2.0), np.full(100, 1.0)]
    contrast = np.where(member, np.r_[np.full(400, 3.0), np.full(100, 0.5)], 1.0)
    # The same noise, around the scaled mean: x − c·mean = base − mean.
    np.testing.assert_allclose(x - contrast * mean, base - mean, rtol=0, atol=1e-12)
    assert np.array_equal(x[:, ~member], base[:, ~member])


def test_noisy_prototype_flips_membership_per_presentation() -> None:
    sets = [
        *SMALL,
        "background={E: {mean: 1.0}, I: {mean: 1.0}}",
        "groups.prototypes={count: 1, fraction: 0.5}",
        "protocol={epochs: [{block: t, repeat: 40, epochs: [{name: cue, duration: 1, "
        "stimulus: {kind: selective, group: P1, contrast_E: 2.0, noise: 0.2}}]}]}",
    ]
    cfg = load_config(None, sets)
    stim = make_stimulus(cfg, CPU, F64)
    member = np.zeros(400, dtype=bool)
    member[ids_of(cfg.resolve_groups()["P1"])] = True
    x = stim.block(0, cfg.n_steps).numpy()[::10, :400]  # one row per presentation (10 steps each)
    stimulated = x == 2.0
    flipped = stimulated != member
    assert abs(flipped.mean() - 0.2) < 0.02  # 16,000 Bernoulli(0.2) draws
    assert abs(flipped[:, member].mean() - 0.2) < 0.03 and abs(flipped[:, ~member].mean() - 0.2) < 0.03
    assert len({r.tobytes() for r in stimulated}) == 40  # drawn anew each presentation
    again = make_stimulus(cfg, CPU, F64).block(0, cfg.n_steps).numpy()[::10, :400]
    assert np.array_equal(again, x)  # and from the seed


def test_sum_and_array_stimuli(tmp_path: Path) -> None:
    arr = np.arange(500 * 30, dtype=np.float64).reshape(500, 30) / 100
    np.save(tmp_path / "in.npy", arr)
    sets = [
        BACKGROUND,
        "stimulus={kind: constant, E: 0.5, I: 0.25}",
        "protocol={epochs: [{name: a, duration: 2}, {name: b, duration: 3, stimulus: {kind: sum, terms: ["
        f"{{kind: array, path: {tmp_path / 'in.npy'}}}, {{kind: background}}]}}}}]}}",
    ]
    cfg, stim = stimulus(*sets)
    _, bg = stimulus(BACKGROUND, "stimulus={kind: background}")
    x = stim.block(0, 50)
    assert torch.all(x[:20, :400] == 0.5) and torch.all(x[:20, 400:] == 0.25)
    # Epoch b starts at step 20: its array columns count from there.
    expected = torch.from_numpy(arr[:, :30].T) + bg.block(20, 30)
    assert torch.equal(x[20:], expected)


def test_short_array_input_fails_before_the_run(tmp_path: Path) -> None:
    np.save(tmp_path / "in.npy", np.zeros((500, 10)))
    with pytest.raises(WmnetError, match=r"in\.npy: input has shape \(500, 10\), expected \(500, 30\)"):
        stimulus(
            f"protocol={{epochs: [{{name: b, duration: 3, stimulus: {{kind: array, path: {tmp_path / 'in.npy'}}}}}]}}"
        )


# --- protocols ------------------------------------------------------------------------------

TRIALS = (
    "protocol={initial_rest: 10, epochs: [{block: train, repeat: 3, shuffle: true, groups: [P1, P2, P3, P4], "
    "epochs: [{name: cue, duration: 5, stimulus: {kind: selective, group: $group, contrast_E: 2}}, "
    "{name: delay, duration: 7.5}]}, {block: assoc, repeat: 2, pairs: [[P1, P2], [P3, P4]], "
    "epochs: [{name: A, duration: 2, stimulus: {kind: selective, group: $A, contrast_E: 2}}, "
    "{name: B, duration: 2, stimulus: {kind: selective, group: $B, contrast_E: 2}}]}]}"
)


def test_protocol_schedule_is_step_exact() -> None:
    cfg = load_config(None, [*SMALL, PROTOTYPES, BACKGROUND, TRIALS])
    sched = Schedule.from_config(cfg)
    ep = sched.epochs
    # 10 ms rest + 3 reps × 4 groups × (50 + 75 steps) + 2 reps × 2 pairs × (20 + 20 steps)
    assert cfg.n_steps == sched.n_steps == 100 + 12 * 125 + 4 * 40
    assert cfg.duration == pytest.approx(176.0)
    assert ep[0].name == "rest" and (ep[0].start, ep[0].stop) == (0, 100)
    assert all(a.stop == b.start for a, b in zip(ep, ep[1:]))  # they tile the run
    train = [e for e in ep if e.block == "train" and e.name == "cue"]
    for rep in range(3):  # every group once per repetition, in a shuffled order
        assert sorted(e.groups[0] for e in train if e.repetition == rep) == ["P1", "P2", "P3", "P4"]
    orders = [tuple(e.groups[0] for e in train if e.repetition == rep) for rep in range(3)]
    assert len(set(orders)) > 1  # seed 0 draws different orders
    assoc = [e for e in ep if e.block == "assoc"]
    assert [e.name for e in assoc[:2]] == ["A", "B"] and assoc[0].groups == ("P1", "P2")
    stim_a, stim_b = assoc[0].stimulus, assoc[1].stimulus
    assert isinstance(stim_a, Selective) and isinstance(stim_b, Selective)
    assert stim_a.group == "P1" and stim_b.group == "P2"
    first = sched.at(99)
    assert first is not None and first.name == "rest" and sched.at(100) is ep[1] and sched.at(cfg.n_steps) is None


def test_stimulus_switches_exactly_at_the_epoch_boundaries() -> None:
    cfg = load_config(
        None, [*SMALL, PROTOTYPES, "background={E: {mean: 1.0}, I: {mean: 1.0}}", "stimulus={kind: background}", TRIALS]
    )
    stim = make_stimulus(cfg, CPU, F64)
    x = stim.block(0, cfg.n_steps).numpy()
    groups = cfg.resolve_groups()
    for e in Schedule.from_config(cfg).epochs:
        rows = x[e.start : e.stop, :400]
        if e.name in ("cue", "A", "B"):
            member = np.zeros(400, dtype=bool)
            member[ids_of(groups[e.groups[0 if e.name != "B" else 1]])[:40]] = True
            assert np.all(rows[:, member] == 2.0) and np.all(rows[:, ~member] == 1.0), e
        else:
            assert np.all(rows == 1.0), e


def test_events_file_matches_the_steps(tmp_path: Path) -> None:
    cfg = load_config(None, [*SMALL, PROTOTYPES, TRIALS])
    sched = Schedule.from_config(cfg)
    sched.write_events(tmp_path / "events.tsv")
    rows = read_events(tmp_path / "events.tsv")
    assert len(rows) == len(sched.epochs)
    for row, e in zip(rows, sched.epochs):
        assert (int(row["start_step"]), int(row["stop_step"])) == (e.start, e.stop)
        assert float(row["onset"]) == pytest.approx(e.start * 0.1 / 1000)
        assert float(row["duration"]) == pytest.approx((e.stop - e.start) * 0.1 / 1000)
        assert row["trial_type"] == e.name
    assert rows[1]["group"] in ("P1", "P2", "P3", "P4") and rows[0]["group"] == "n/a"
    assert rows[-1]["group"] in ("P1+P2", "P3+P4") and rows[-1]["block"] == "assoc"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "protocol={epochs: [{name: a, duration: 1.05}]}",
            r"protocol\.epochs\.0\.duration: 1\.05 ms is not a whole multiple",
        ),
        (
            "protocol={epochs: [{name: a, duration: 1, stimulus: {kind: selective, group: Q}}]}",
            r"protocol\.epochs\.0\.stimulus\.group: unknown group 'Q'",
        ),
        (
            "protocol={epochs: [{block: b, groups: [P1, Q], epochs: [{name: a, duration: 1}]}]}",
            r"protocol\.epochs\.0: unknown group 'Q'",
        ),
        (
            "protocol={epochs: [{block: b, groups: [P1], epochs: [{name: a, duration: 1, "
            "stimulus: {kind: selective, group: $A}}]}]}",
            r"\$A is only defined in a block with pairs",
        ),
        (
            "stimulus={kind: selective, group: P1, contrast_E: -1}",
            r"contrast_E: Input should be greater than or equal to 0",
        ),
        ("stimulus={kind: selective, group: P1, noise: 1.5}", r"noise: Input should be less than or equal to 1"),
        ("protocol={initial_rest: 0.01, epochs: [{name: a, duration: 1}]}", r"protocol\.initial_rest: 0\.01 ms"),
        ("background.grain=0.15", r"background\.grain: 0\.15 ms is not a whole multiple of dt"),
    ],
)
def test_bad_protocol_input_is_one_clear_line(setting: str, message: str) -> None:
    with pytest.raises(WmnetError, match=message) as exc:
        load_config(None, [*SMALL, PROTOTYPES, setting])
    assert "\n" not in str(exc.value)


def test_duration_comes_from_the_protocol() -> None:
    proto = "protocol={epochs: [{name: a, duration: 12}]}"
    assert load_config(None, [*SMALL, proto]).duration == 12.0
    assert load_config(None, [*SMALL, proto, "duration=12"]).duration == 12.0
    assert load_config(None, [*SMALL, proto, "duration=20"]).duration == 20.0  # `stimulus` after the protocol
    with pytest.raises(WmnetError, match=r"duration: 10\.0 ms is shorter than the protocol's length 12 ms"):
        load_config(None, [*SMALL, proto, "duration=10"])


# --- receptor scaling -----------------------------------------------------------------------

SCALED = (
    "protocol={epochs: [{name: a, duration: 15}, {name: quiet, duration: 4, projections: {"
    "E->E: {fast_scale: 0}, E->I: {fast_scale: 0}, I->E: {fast_scale: 0}, I->I: {fast_scale: 0}}}, "
    "{name: b, duration: 3}]}"
)


@pytest.mark.parametrize("engine", ["reference", "sparse"])
def test_scales_apply_from_the_epochs_first_step(engine: str) -> None:
    """With every fast scale 0 from step 150 to 189, i_f(t_k) = Σ J_fast s(t_{k−1}) is exactly 0
    for k = 151..190, and not just before or after (the drive keeps neurons firing)."""
    cfg = load_config(
        None,
        [
            *SMALL,
            SCALED,
            "dtype=float64",
            f"engine={engine}",
            "record.traces.every=1",
            f"record.traces.neurons={list(range(500))}",
            "record.traces.variables=[i_f]",
            "background={E: {mean: 3, std: 1}, I: {mean: 3, std: 1}, grain: 0.1}",
            "stimulus={kind: background}",
        ],
    )  # strong noisy drive: some neuron is always on
    res = Simulation(Network.build(cfg)).run(progress=False)
    i_f = res.traces["i_f"]  # (steps, neurons), sampled at t_k for k = 0..99
    assert i_f.shape[0] == 220
    busy = np.abs(i_f).sum(axis=1)
    assert np.all(busy[151:191] == 0)
    assert busy[150] > 0 and busy[191] > 0


@pytest.mark.parametrize("engine", ["reference", "sparse"])
def test_scaled_efficacies_hand_computed(engine: str, tmp_path: Path) -> None:
    """One E→E fast synapse and one I→E fast synapse: i_f' = scale·J·x of each pulsing pre."""
    from wmnet.dynamics import NeuronState
    from wmnet.engines import make_engine

    cfg = load_config(
        None,
        [
            "populations.E.size=2",
            "populations.I.size=1",
            "device=cpu",
            "dtype=float64",
            "projections.E->E.fast_scale=0.5",
            "projections.I->E.fast_scale=1.5",
            "stimulus={kind: constant}",
        ],
    )
    j_fast = np.zeros((3, 3))
    j_fast[1, 0] = 0.21  # E0 → E1, potentiated
    j_fast[0, 2] = -0.18  # I → E0
    np.savez(tmp_path / "c.npz", j_fast=j_fast, j_slow=np.zeros((3, 3)))
    net = Network.build(cfg, connectivity=str(tmp_path / "c.npz"))
    st = NeuronState.initial(3, CPU, F64)
    st.v[:] = torch.tensor([25.0, 0.0, 25.0], dtype=F64)  # E0 and I on
    st.x[:] = torch.tensor([0.8, 1.0, 0.6], dtype=F64)
    eng = make_engine(engine, net, st)
    eng.step(torch.zeros(3, dtype=F64))
    i_f = eng.neurons.i_f
    assert i_f[1].item() == 0.5 * 0.21 * 0.8  # the scaled efficacy, rounded once, times x
    assert i_f[0].item() == (1.5 * -0.18) * 0.6
    assert i_f[2].item() == 0.0


def test_scaled_sparse_matches_reference_float64() -> None:
    """A protocol that halves the slow E→E and scales the fast I→E by 1.5 midway: the sparse
    engine reproduces the reference exactly (spikes, switches) and to 1e-9 (state)."""
    drive = [
        "background={E: {mean: 1.0, std: 0.5}, I: {mean: 1.0, std: 0.5}}",
        "stimulus={kind: background}",
        "dtype=float64",
        "record.traces.variables=[]",
        "record.rates=null",
        "record.synapses=null",
    ]
    sets = [
        *SMALL,
        *drive,
        "protocol={epochs: [{name: a, duration: 40}, {name: drug, duration: 60, projections: "
        "{E->E: {slow_scale: 0.5}, I->E: {fast_scale: 1.5}}}, {name: c, duration: 30}]}",
    ]
    results = {}
    for engine in ("reference", "sparse"):
        cfg = load_config(None, [*sets, f"engine={engine}"])
        sim = Simulation(Network.build(cfg), keep_switch_events=True)
        res = sim.run(progress=False)
        results[engine] = (res, sim.engine)
    (ref, e_ref), (sp, e_sp) = results["reference"], results["sparse"]
    assert np.array_equal(ref.spikes.i, sp.spikes.i) and np.array_equal(ref.spikes.t, sp.spikes.t)
    assert np.array_equal(e_ref.switches.table(), e_sp.switches.table())
    for var in ("v", "i_s", "i_f", "x"):
        np.testing.assert_allclose(e_ref.neurons[var].numpy(), e_sp.neurons[var].numpy(), rtol=0, atol=1e-9)
    # And the scaling mattered: without it the spikes differ.
    plain = Simulation(Network.build(load_config(None, [*SMALL, *drive, "duration=130", "engine=sparse"])))
    res = plain.run(progress=False)
    assert np.array_equal(res.spikes.t[res.spikes.t < 40], sp.spikes.t[sp.spikes.t < 40])
    assert not np.array_equal(res.spikes.t, sp.spikes.t)


# --- end to end -----------------------------------------------------------------------------

PROTOCOL_YAML = """
populations: {E: {size: 400}, I: {size: 100}}
device: cpu
background: {E: {mean: 1.2, std: 0.4}, I: {mean: 1.0, std: 0.3}, grain: 1.0}
stimulus: {kind: background}
groups:
  prototypes: {count: 2, fraction: 0.15, fraction_I: 0.1}
protocol:
  initial_rest: 20
  epochs:
    - block: train
      repeat: 2
      shuffle: true
      groups: [P1, P2]
      epochs:
        - {name: cue, duration: 15, stimulus: {kind: selective, group: $group, contrast_E: 2.0, noise: 0.1}}
        - {name: delay, duration: 10, projections: {E->E: {slow_scale: 0.5}}}
record:
  synapses: {every: 10, groups: [[P1, P1], [P1, nonselective]]}
  snapshots: [20, 120]
"""


def test_protocol_run_through_the_cli(tmp_path: Path) -> None:
    """`wmnet run` of a small protocol: events.tsv matches the steps, the groups are saved as
    SONATA node sets, the duration is the protocol's, and the figures are drawn."""
    import json

    from click.testing import CliRunner

    from wmnet.cli import cli
    from wmnet.io.nodesets import read_groups

    (tmp_path / "p.yaml").write_text(PROTOCOL_YAML)
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", str(tmp_path / "p.yaml"), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["simulated_ms"] == pytest.approx(120.0)  # 20 + 2·2·25
    rows = read_events(out / "events.tsv")
    assert [r["trial_type"] for r in rows] == ["rest"] + ["cue", "delay"] * 4
    assert [int(r["start_step"]) for r in rows] == [0, 200, 350, 450, 600, 700, 850, 950, 1100]
    assert int(rows[-1]["stop_step"]) == 1200
    assert sorted(r["group"] for r in rows if r["trial_type"] == "cue") == ["P1", "P1", "P2", "P2"]
    assert all(r["stimulus"] == f"selective:{r['group']}" for r in rows if r["trial_type"] == "cue")
    assert {r["stimulus"] for r in rows if r["trial_type"] != "cue"} == {"default"}
    cfg = load_config(out / "config.yaml")
    groups = read_groups(out / "node_sets.json", 400, 500)
    for name, g in cfg.resolve_groups().items():
        assert np.array_equal(groups[name], ids_of(g)), name
    sets = json.loads((out / "node_sets.json").read_text())
    assert sets["P1"] == ["P1:E", "P1:I"] and sets["P1:I"]["population"] == "I"
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"raster.png", "rates.png", "learning.png", "efficacy_blocks.png", "trials.png"} <= figures
    # epoch_rates.tsv: each group's rate in each epoch, counted directly from spikes.h5 here.
    from wmnet.analysis import epoch_rates, trial_psth
    from wmnet.io.sonata import read_spikes

    t, ids = read_spikes(out / "spikes.h5")["E"]
    table = read_events(out / "epoch_rates.tsv")
    assert len(table) == len(rows) == len(epoch_rates(out))
    for r in table:
        k0, k1 = int(r["start_step"]), int(r["stop_step"])
        for group in ("P1", "P2", "nonselective"):
            e_ids = groups[group][groups[group] < 400]
            n = np.isin(ids[(np.rint(t * 10) >= k0) & (np.rint(t * 10) < k1)], e_ids).sum()
            assert float(r[f"rate_hz_{group}"]) == pytest.approx(n / (e_ids.size * (k1 - k0) * 1e-4), rel=1e-3)
    psth = trial_psth(out)["train"]
    assert psth["trials"] == 4 and [e[0] for e in psth["epochs"]] == ["cue", "delay"]
    assert psth["epochs"][0][1:] == (0.0, 15.0) and psth["t"].size == 1  # one whole 20 ms bin in a 25 ms trial


def test_protocol_run_stops_and_resumes_bitwise(tmp_path: Path) -> None:
    """Ctrl-C inside a scaled epoch, then resume: every file as in one uninterrupted run."""
    from test_checkpoint import StopAt, assert_same_files, start_run

    from wmnet.checkpoint import resume_run

    sets = [
        *SMALL,
        BACKGROUND,
        "stimulus={kind: background}",
        "record.checkpoint_every=20",
        "protocol={epochs: [{name: a, duration: 40}, {name: drug, duration: 40, projections: "
        "{E->E: {slow_scale: 0.5}, I->E: {fast_scale: 1.5}}}, {name: c, duration: 20}]}",
    ]
    cfg = load_config(None, sets)
    whole = tmp_path / "whole"
    start_run(cfg, whole).run(out=whole, progress=False)
    out = tmp_path / "stopped"
    sim = start_run(cfg, out)
    sim.stimulus = StopAt(sim.stimulus, out, k_copy=-1, k_stop=600)  # in the drug epoch
    with pytest.raises(KeyboardInterrupt):
        sim.run(out=out, progress=False)
    result = resume_run(out, progress=False)
    assert result.info["status"] == "complete"
    assert_same_files(whole, out)
