"""Config: MODEL.md defaults, field documentation, YAML, overrides and one-line errors."""

from __future__ import annotations

import re
import textwrap
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from wmnet.config import Config, Constant, Sinusoid, load_config
from wmnet.errors import WmnetError

# ---------------------------------------------------------------------------------------------
# Defaults: MODEL.md's tables, written out here (not read from the code)


def test_defaults_population_table():
    c = load_config(None)
    E, I = c.populations.E, c.populations.I  # noqa: E741
    assert (E.size, I.size) == (8000, 2000)
    assert (E.tau_m, I.tau_m) == (20.0, 10.0)
    assert (E.theta, I.theta) == (20.0, 20.0)
    assert (E.v_reset, I.v_reset) == (15.0, 10.0)
    assert (E.tau_ref, I.tau_ref) == (2.0, 2.0)
    assert (E.tau_s, I.tau_s) == (10.0, 10.0)
    assert c.n_neurons == 10_000


def test_defaults_projections():
    pr = load_config(None).projections
    for proj in (pr.EE, pr.EI, pr.IE, pr.II):
        assert proj.p == 0.2
        assert proj.k_in is None
    assert (pr.EE.slow_fraction, pr.II.slow_fraction, pr.EI.slow_fraction, pr.IE.slow_fraction) == (0.5, 0.1, 0.0, 0.0)
    assert (pr.EE.J_p, pr.EE.J_d, pr.EE.p_potentiated) == (0.21, 0.03, 0.2)
    assert (pr.EI.efficacy, pr.IE.efficacy, pr.II.efficacy) == (0.08, -0.18, -0.18)


def test_defaults_stp_plasticity_integration_stimulus():
    c = load_config(None)
    assert (c.stp.U, c.stp.tau_rec) == (0.45, 200.0)
    pl = c.plasticity
    assert pl.enabled is True
    assert tuple(pl.bounds) == (0.0, 1.0)
    assert (pl.alpha, pl.beta, pl.theta_X) == (0.0147, 0.01, 0.4)
    assert (pl.a_H, pl.b_H, pl.theta_LTP, pl.theta_LTD) == (0.25, 0.17, 17.5, 15.5)
    assert (c.dt, c.duration, c.n_steps) == (0.1, 1000.0, 10_000)
    assert c.dtype == "float32"  # MODEL.md: wmnet's default dtype is float32
    assert c.seed == 0
    st = c.stimulus
    assert isinstance(st, Sinusoid)
    assert (st.amplitude_max, st.phase_max, st.F_min, st.F_max) == (5.0, 10.0, 5.0, 10.0)


def test_defaults_from_empty_yaml_equal_no_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == load_config(None) == Config()


# ---------------------------------------------------------------------------------------------
# Every field documented, with units


def _models(root: type[BaseModel] = Config) -> list[type[BaseModel]]:
    """Every pydantic model reachable from Config's fields (unions and lists included)."""
    seen: list[type[BaseModel]] = []

    def visit(tp: object) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp not in seen:
                seen.append(tp)
                for f in tp.model_fields.values():
                    visit(f.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return seen


def test_model_walk_finds_every_section():
    names = {m.__name__ for m in _models()}
    assert {
        "Config",
        "Populations",
        "Population",
        "Projections",
        "PlasticProjection",
        "StaticProjection",
        "ShortTermDepression",
        "Plasticity",
        "Sinusoid",
        "Constant",
        "Record",
        "Traces",
    } <= names


def test_every_field_has_a_description():
    missing = [
        f"{m.__name__}.{name}"
        for m in _models()
        for name, f in m.model_fields.items()
        if not (f.description and f.description.strip())
    ]
    assert missing == []


# Time (ms) and potential (mV) fields, listed by hand from MODEL.md's units.
TIME_FIELDS = {
    "Population": ["tau_m", "tau_ref", "tau_s"],
    "ShortTermDepression": ["tau_rec"],
    "Config": ["dt", "duration"],
    "Sinusoid": ["F_min", "F_max"],
    "Record": ["flush_every"],
}
POTENTIAL_FIELDS = {
    "Population": ["theta", "v_reset"],
    "Plasticity": ["theta_LTP", "theta_LTD"],
}
MS = re.compile(r"(?<![/\w])ms\b")  # "ms", not "mV/ms" or "1/ms"
MV = re.compile(r"\bmV\b(?!/)")  # "mV", not "mV/ms"


@pytest.mark.parametrize(("table", "unit", "pattern"), [(TIME_FIELDS, "ms", MS), (POTENTIAL_FIELDS, "mV", MV)])
def test_time_and_potential_fields_name_their_unit(table, unit, pattern):
    models = {m.__name__: m for m in _models()}
    for model, names in table.items():
        for name in names:
            desc = models[model].model_fields[name].description or ""
            assert pattern.search(desc), f"{model}.{name}: {desc!r} does not name {unit}"


def test_unit_patterns_are_strict():
    assert MS.search("membrane time constant τ_m (ms)")
    assert not MS.search("current into every E neuron (mV/ms)")
    assert not MS.search("downward drift rate α (1/ms)")
    assert MV.search("firing threshold θ (mV)")
    assert not MV.search("current (mV/ms)")


# ---------------------------------------------------------------------------------------------
# YAML and overrides


def test_yaml_load_nested(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        textwrap.dedent("""
        seed: 7
        dt: 0.05
        duration: 200
        populations:
          E: {size: 80, tau_m: 25}
          I: {size: 20}
        projections:
          E->E: {p: 0.3, J_p: 0.25}
          I->I: {slow_fraction: 0.4}
        plasticity: {bounds: null, theta_X: 0.5}
        stimulus: {kind: constant, E: 1.5}
    """)
    )
    c = load_config(path)
    assert (c.seed, c.dt, c.duration, c.n_steps) == (7, 0.05, 200.0, 4000)
    assert (c.populations.E.size, c.populations.E.tau_m, c.populations.I.size) == (80, 25.0, 20)
    # untouched siblings keep their defaults (deep merge)
    assert (c.populations.E.v_reset, c.populations.I.tau_m) == (15.0, 10.0)
    assert (c.projections.EE.p, c.projections.EE.J_p, c.projections.EE.J_d) == (0.3, 0.25, 0.03)
    assert (c.projections.II.slow_fraction, c.projections.II.p, c.projections.II.efficacy) == (0.4, 0.2, -0.18)
    assert c.plasticity.bounds is None and c.plasticity.theta_X == 0.5 and c.plasticity.alpha == 0.0147
    assert isinstance(c.stimulus, Constant) and (c.stimulus.E, c.stimulus.I) == (1.5, 0.0)


def test_yaml_round_trip():
    c = load_config(None, ["populations.E.size=50", "plasticity.bounds=null", "stimulus.kind=constant", "stimulus.I=2"])
    again = Config.model_validate(yaml.safe_load(c.to_yaml()))
    assert again == c
    assert c.to_dict()["projections"]["E->E"]["J_p"] == 0.21  # dumped by alias


def test_override_nested_keys():
    c = load_config(
        None,
        [
            "projections.E->E.p=0.1",
            "populations.I.tau_m=12.5",
            "stp.U=0.3",
            "projections.I->E.efficacy=-0.25",
            "plasticity.enabled=false",
        ],
    )
    assert c.projections.EE.p == 0.1
    assert c.projections.EI.p == 0.2 and c.projections.EE.slow_fraction == 0.5
    assert c.populations.I.tau_m == 12.5 and c.populations.E.tau_m == 20.0
    assert c.stp.U == 0.3 and c.stp.tau_rec == 200.0
    assert c.projections.IE.efficacy == -0.25
    assert c.plasticity.enabled is False


def test_override_values_are_parsed_as_yaml():
    c = load_config(None, ["plasticity.bounds=[0.1, 0.9]", "projections.E->E.k_in=12", "dtype=float64"])
    assert tuple(c.plasticity.bounds) == (0.1, 0.9)
    assert c.projections.EE.k_in == 12 and isinstance(c.projections.EE.k_in, int)
    assert c.dtype == "float64"
    assert load_config(None, ["plasticity.bounds=null"]).plasticity.bounds is None


def test_override_later_wins_and_applies_over_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dt: 0.05\npopulations:\n  E:\n    size: 40\n")
    c = load_config(path, ["dt=0.2", "dt=0.25"])
    assert c.dt == 0.25
    assert c.populations.E.size == 40  # from the file
    assert c.populations.I.size == 2000  # default


def test_override_switches_stimulus_kind():
    c = load_config(None, ["stimulus.kind=constant"])
    assert isinstance(c.stimulus, Constant)
    assert (c.stimulus.E, c.stimulus.I) == (0.0, 0.0)
    c = load_config(None, ["stimulus.kind=constant", "stimulus.E=3.5"])
    assert isinstance(c.stimulus, Constant) and c.stimulus.E == 3.5
    # a sinusoid override without a kind stays a sinusoid
    c = load_config(None, ["stimulus.amplitude_max=2"])
    assert isinstance(c.stimulus, Sinusoid) and c.stimulus.amplitude_max == 2.0 and c.stimulus.F_max == 10.0
    # a constant stimulus takes its own fields
    c = load_config(None, ["stimulus.kind=constant", "stimulus.E=1"])
    assert isinstance(c.stimulus, Constant) and c.stimulus.E == 1.0


@pytest.mark.parametrize("source", ["tmp", "seed"])
def test_override_switches_kind_over_file(tmp_path, source):
    if source == "seed":
        path = Path(__file__).resolve().parents[1] / "configs" / "seed.yaml"
    else:
        path = tmp_path / "run.yaml"
        path.write_text("stimulus:\n  kind: sinusoid\n  amplitude_max: 3\n")
    c = load_config(path, ["stimulus.kind=constant", "stimulus.I=-1"])
    assert isinstance(c.stimulus, Constant) and (c.stimulus.E, c.stimulus.I) == (0.0, -1.0)


# ---------------------------------------------------------------------------------------------
# Errors: one WmnetError line that names the field


def _error(path: Path | None = None, overrides: list[str] | None = None) -> str:
    with pytest.raises(WmnetError) as exc:
        load_config(path, overrides)
    msg = str(exc.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("populations:\n  E: {size: 10\n  I: [1, 2\n")
    msg = _error(path)
    assert str(path) in msg and "YAML" in msg
    assert "line" in msg


def test_yaml_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    msg = _error(path)
    assert str(path) in msg


def test_missing_file(tmp_path):
    msg = _error(tmp_path / "nope.yaml")
    assert "nope.yaml" in msg


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["foo=1"], "foo"),
        (["populations.E.foo=1"], "populations.E.foo"),
        (["projections.E->E.J_x=0.1"], "projections.E->E.J_x"),
        (["plasticity.theta=3"], "plasticity.theta"),
        (["stimulus.kind=constant", "stimulus.amplitude_max=3"], "amplitude_max"),
    ],
)
def test_unknown_key(overrides, field):
    msg = _error(None, overrides)
    assert field in msg and "unknown key" in msg


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("populations:\n  E:\n    sise: 10\n")
    msg = _error(path)
    assert str(path) in msg and "populations.E.sise" in msg and "unknown key" in msg


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("populations.E.tau_m=0", "populations.E.tau_m"),
        ("populations.I.tau_m=-10", "populations.I.tau_m"),
        ("populations.E.tau_ref=0", "populations.E.tau_ref"),
        ("populations.I.tau_s=-1", "populations.I.tau_s"),
        ("stp.tau_rec=0", "stp.tau_rec"),
        ("dt=0", "dt"),
        ("dt=-0.1", "dt"),
        ("duration=0", "duration"),
        ("stimulus.F_min=0", "stimulus"),
    ],
)
def test_non_positive_time_constant(override, field):
    msg = _error(None, [override])
    assert field in msg
    assert "greater than 0" in msg


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("projections.E->E.p=1.5", "projections.E->E.p"),
        ("projections.I->I.p=-0.1", "projections.I->I.p"),
        ("projections.E->I.slow_fraction=2", "projections.E->I.slow_fraction"),
        ("projections.E->E.p_potentiated=-0.2", "projections.E->E.p_potentiated"),
        ("stp.U=1.01", "stp.U"),
    ],
)
def test_probability_out_of_range(override, field):
    msg = _error(None, [override])
    assert field in msg


def test_probability_bounds_are_inclusive():
    c = load_config(None, ["projections.E->E.p=1", "projections.I->I.p=0"])
    assert (c.projections.EE.p, c.projections.II.p) == (1.0, 0.0)


@pytest.mark.parametrize("overrides", [["dt=0.3"], ["duration=100.05"], ["dt=0.07", "duration=1"]])
def test_dt_must_divide_duration(overrides):
    msg = _error(None, overrides)
    assert "dt" in msg and "duration" in msg


def test_dt_dividing_duration_is_accepted():
    assert load_config(None, ["dt=0.05", "duration=0.35"]).n_steps == 7
    assert load_config(None, ["dt=0.25", "duration=1000"]).n_steps == 4000


@pytest.mark.parametrize("bounds", ["[1, 0]", "[0.5, 0.5]", "[2, -1]"])
def test_bounds_must_be_ordered(bounds):
    msg = _error(None, [f"plasticity.bounds={bounds}"])
    assert "plasticity.bounds" in msg


def test_bad_override_syntax():
    msg = _error(None, ["dt"])
    assert "dt" in msg


def test_wrong_types_name_the_field():
    assert "populations.E.size" in _error(None, ["populations.E.size=many"])
    assert "dtype" in _error(None, ["dtype=float8"])
    assert "engine" in _error(None, ["engine=gpu"])


def test_every_shipped_config_loads() -> None:
    """configs/*.yaml validate; the CPU working-memory config is the full one at a reduced size
    (same in-degrees) and a stronger E background (1.45 against 1.35 mV/ms: each size's measured
    setting with the previous synapses, docs/tutorial.md; the full size is not yet re-measured with
    the slow E→E current), so the two cannot drift apart otherwise."""
    folder = Path(__file__).resolve().parents[1] / "configs"
    from wmnet.sweep.spec import load_sweep, validate

    files = sorted(folder.glob("*.yaml"))
    sweeps = [p for p in files if p.name.startswith("sweep_")]  # sweep files: every point validates
    assert all(validate(load_sweep(p)) for p in sweeps)
    configs = {p.name: load_config(p) for p in files if p not in sweeps}
    assert {"seed.yaml", "working_memory.yaml", "working_memory_cpu.yaml"} <= set(configs)
    full, cpu = configs["working_memory.yaml"].to_dict(), configs["working_memory_cpu.yaml"].to_dict()
    for pop in ("E", "I"):
        assert full["populations"][pop]["size"] == 4 * cpu["populations"][pop]["size"]
        full["populations"][pop]["size"] = cpu["populations"][pop]["size"]
    for name, proj in full["projections"].items():
        assert proj["p"] * 4 == pytest.approx(cpu["projections"][name]["p"])  # the same in-degree
        proj["p"] = cpu["projections"][name]["p"]
    # J_p and the background E mean are the parameters that differ: the dense CPU network's shared
    # fluctuations move its bistable window (docs/tutorial.md, "Robustness"); both use U 0.02.
    assert (full["projections"]["E->E"]["J_p"], cpu["projections"]["E->E"]["J_p"]) == (0.42, 0.3)
    assert full["stp"]["U"] == cpu["stp"]["U"] == 0.02
    assert (full["background"]["E"]["mean"], cpu["background"]["E"]["mean"]) == (1.6, 1.7)
    full["projections"]["E->E"]["J_p"] = cpu["projections"]["E->E"]["J_p"]
    full["background"]["E"]["mean"] = cpu["background"]["E"]["mean"]
    assert full == cpu
