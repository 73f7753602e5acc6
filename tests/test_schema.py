"""The model schema (wmnet.model) is what config, connectivity, protocols, monitors and engines use.

Adding a state variable or a projection should mean editing the schema and the engines'
arithmetic; these tests fail where some other module still spells the vocabulary out itself.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
import torch

from wmnet import model
from wmnet.config import Config, Epoch, PlasticProjection, Projections, StaticProjection, Traces, load_config
from wmnet.dynamics import NeuronState
from wmnet.engines import make_engine
from wmnet.network import Network
from wmnet.protocol import base_scales

TINY = ["populations.E.size=40", "populations.I.size=10", "device=cpu", "seed=2"]


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(None, TINY)


def test_state_variables_are_neuron_state_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(NeuronState)) == model.VARIABLES
    assert set(model.UNITS) == set(model.VARIABLES) and all(model.UNITS.values())
    assert set(model.DEFAULT_TRACES) <= set(model.VARIABLES)


def test_initial_state_follows_the_schema() -> None:
    st = NeuronState.initial(5, torch.device("cpu"), torch.float32)
    for var in model.STATE_VARIABLES:
        assert torch.equal(st[var.name], torch.full((5,), var.initial)), var.name
    assert st.as_dict().keys() == set(model.VARIABLES)


def test_config_accepts_exactly_the_schema_names() -> None:
    assert Traces(variables=list(model.VARIABLES)).variables == list(model.VARIABLES)
    assert Traces().variables == list(model.DEFAULT_TRACES)
    with pytest.raises(ValueError, match="Input should be"):
        Traces(variables=["w"])
    enum = Traces.model_json_schema()["properties"]["variables"]["items"]["enum"]
    assert tuple(enum) == model.VARIABLES
    for name in model.PROJECTION_NAMES:
        Epoch(name="e", duration=1.0, projections={name: {"slow_scale": 0.5}})
    with pytest.raises(ValueError, match="Input should be"):
        Epoch(name="e", duration=1.0, projections={"E->X": {}})


def test_every_projection_is_a_config_section(cfg: Config) -> None:
    fields = Projections.model_fields
    assert {f.alias for f in fields.values()} == set(model.PROJECTION_NAMES)
    for p in model.PROJECTIONS:
        assert fields[p.field].alias == p.name
        spec = model.projection_config(cfg, p)
        assert isinstance(spec, PlasticProjection if p.plastic else StaticProjection)
        assert p.pre in model.POPULATIONS and p.post in model.POPULATIONS
    assert model.projection("I->E").pre == "I"
    with pytest.raises(KeyError, match="unknown projection"):
        model.projection("E->X")


def test_every_projection_is_generated_and_scaled(cfg: Config) -> None:
    net = Network.build(cfg)
    conn = net.connectivity
    assert tuple(conn.projections) == model.PROJECTION_NAMES
    for p in model.PROJECTIONS:
        proj = conn.projections[p.name]
        assert (proj.pre, proj.post) == (p.pre, p.post)
        assert proj.n_synapses > 0
    assert conn.initial.L.numel() == conn.projections[model.PLASTIC.name].n_synapses
    assert tuple(base_scales(cfg)) == model.PROJECTION_NAMES


def test_parameter_vector_round_trips(cfg: Config) -> None:
    scales = {name: (0.5, 2.0) for name in model.PROJECTION_NAMES}
    values = model.parameter_values(cfg, scales)
    assert tuple(values) != () and set(values) == set(model.PARAMETER_NAMES)
    for dtype in (np.float32, np.float64):
        vec = model.pack_parameters(values, dtype)
        assert vec.dtype == dtype and vec.shape == (len(model.PARAMETERS),)
        back = model.unpack_parameters(vec)
        assert list(back) == list(model.PARAMETER_NAMES)
        # Each value rounded once to the dtype, as a Python float constant would be.
        assert all(back[name] == float(dtype(values[name])) for name in model.PARAMETER_NAMES)
    with pytest.raises(KeyError, match="no value"):
        model.pack_parameters({"dt": 0.1}, np.float32)
    with pytest.raises(ValueError, match="shape"):
        model.unpack_parameters(np.zeros(3))


def test_parameter_vector_holds_every_scaled_efficacy(cfg: Config) -> None:
    scales = {name: (0.5, 2.0) for name in model.PROJECTION_NAMES}
    values = model.parameter_values(cfg, scales)
    ee = cfg.projections.EE
    assert values[f"{model.PLASTIC.name}_d_slow"] == 0.5 * ee.J_d
    assert values[f"{model.PLASTIC.name}_p_fast"] == 2.0 * ee.J_p
    for p in model.STATIC:
        eff = model.projection_config(cfg, p).efficacy  # type: ignore[union-attr]
        assert (values[f"{p.name}_slow"], values[f"{p.name}_fast"]) == (0.5 * eff, 2.0 * eff)
    assert values["dt"] == cfg.dt and values["neg_alpha"] == -cfg.plasticity.alpha
    assert values["one"] == 1.0 and values["zero"] == 0.0
    assert len(set(model.PARAMETER_NAMES)) == len(model.PARAMETER_NAMES)
    assert all(p.unit for p in model.PARAMETERS)


def test_gpu_kernels_read_the_schema_layout() -> None:
    """The Triton kernels' constexpr indices are the schema's (checked without a GPU)."""
    pytest.importorskip("triton")
    from wmnet.engines import kernels as K

    assert K.PARAMS == model.PARAMETER_NAMES
    idx = model.PARAMETER_INDEX
    pairs = {"P_DT": "dt", "P_THX": "theta_X", "P_AH": "a_H", "P_TAU_REC": "tau_rec", "P_JP_F": "E->E_p_fast"}
    for const, name in pairs.items():
        assert getattr(K, const).value == idx[name], const
    assert K.P_II.value == idx["I->I_slow"] and idx["I->I_fast"] == idx["I->I_slow"] + 1


@pytest.mark.parametrize("kind", ["reference", "sparse"])
def test_engine_state_is_the_schema(cfg: Config, kind: str) -> None:
    net = Network.build(cfg)
    eng = make_engine(kind, net)
    assert tuple(eng.state.as_dict()) == model.VARIABLES
    tensors = eng.state_dict()["tensors"]
    assert [name for name in tensors if name in model.VARIABLES] == list(model.VARIABLES)


def test_monitor_and_output_units_follow_the_schema() -> None:
    from wmnet import plotting
    from wmnet.io import sonata

    assert {v: sonata.UNITS[v] for v in model.VARIABLES} == model.UNITS
    assert set(plotting.LABELS) >= set(model.VARIABLES)


def test_literal_types_list_the_schema() -> None:
    from wmnet import config

    assert typing.get_args(config.ProjectionName) == model.PROJECTION_NAMES
    assert typing.get_args(config.StateVariableName) == model.VARIABLES
