"""Validated configuration: every parameter of docs/model.md, with the seed notebook's defaults.

One `Config` object is the single source of a run's parameters. It loads from YAML, takes
dotted `key=value` overrides, rejects unknown keys, and dumps back to YAML/JSON.

The schema is split by concept: `network` (populations, projections, plasticity), `groups`
(named neuron sets), `inputs` (stimuli and background), `recording`, `schedule` (the protocol's
epochs and blocks), `run` (`Config` itself), `steps` (the dt grid) and `loading` (YAML and
overrides). Every name is importable from `wmnet.config` itself.
"""

from __future__ import annotations

from wmnet.config.base import PositiveMs, Probability, ProjectionName, StateVariableName
from wmnet.config.groups import Group, Groups, IndexRange, Prototypes, group_ids
from wmnet.config.inputs import (
    ArrayInput,
    Background,
    BackgroundInput,
    Constant,
    PopulationNoise,
    Selective,
    Sinusoid,
    Stimulus,
    Sum,
)
from wmnet.config.loading import _format_validation_error, _merge, _parse_value, apply_override, load_config
from wmnet.config.network import (
    Plasticity,
    PlasticProjection,
    Population,
    Populations,
    Projections,
    ShortTermDepression,
    StaticProjection,
    Structure,
)
from wmnet.config.recording import Rates, Record, SynapseStats, Traces
from wmnet.config.run import Config
from wmnet.config.schedule import Block, Epoch, Protocol, ProtocolItem, ScaleOverride
from wmnet.config.steps import MAX_STEPS, TooManySteps, _period_steps, steps_in

__all__ = [
    "MAX_STEPS",
    "ArrayInput",
    "Background",
    "BackgroundInput",
    "Block",
    "Config",
    "Constant",
    "Epoch",
    "Group",
    "Groups",
    "IndexRange",
    "PlasticProjection",
    "Plasticity",
    "Population",
    "PopulationNoise",
    "Populations",
    "PositiveMs",
    "Probability",
    "ProjectionName",
    "Projections",
    "Protocol",
    "ProtocolItem",
    "Prototypes",
    "Rates",
    "Record",
    "ScaleOverride",
    "Selective",
    "ShortTermDepression",
    "Sinusoid",
    "StateVariableName",
    "StaticProjection",
    "Stimulus",
    "Structure",
    "Sum",
    "SynapseStats",
    "TooManySteps",
    "Traces",
    "_format_validation_error",
    "_merge",
    "_parse_value",
    "_period_steps",
    "apply_override",
    "group_ids",
    "load_config",
    "steps_in",
]
