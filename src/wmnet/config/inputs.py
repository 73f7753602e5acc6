"""External input: the stimulus kinds (sinusoid, constant, background, selective, array, sum) and
the background noise they draw on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from wmnet.config.base import PositiveMs, Probability, _Strict


class Sinusoid(_Strict):
    """The seed's stimulus: I_n(t) = A_n sin(t/F_n + φ_n) + A_n, per neuron."""

    kind: Literal["sinusoid"] = Field("sinusoid", description="stimulus type")
    amplitude_max: float = Field(5.0, ge=0, description="A_n ~ U(0, amplitude_max) (mV/ms)")
    phase_max: float = Field(10.0, ge=0, description="φ_n ~ U(0, phase_max) (rad)")
    F_min: PositiveMs = Field(5.0, description="F_n ~ U(F_min, F_max): time scale of t/F_n (ms)")
    F_max: PositiveMs = Field(10.0, description="upper bound of F_n (ms)")


class Constant(_Strict):
    """A constant current per population."""

    kind: Literal["constant"] = Field("constant", description="stimulus type")
    E: float = Field(0.0, description="current into every E neuron (mV/ms)")
    I: float = Field(0.0, description="current into every I neuron (mV/ms)")  # noqa: E741


class Background(_Strict):
    """The background input: per population, its mean plus Gaussian noise redrawn every `grain` ms.

    I_n(t) = c_n·mean_pop(n) + std_pop(n)·z_n(g), z ~ N(0, 1) drawn from the run's seed for each
    grain g = ⌊t / grain⌋ (the same realisation whatever the epoch); c_n is a selective stimulus's
    contrast (1 elsewhere).
    """

    kind: Literal["background"] = Field("background", description="stimulus type")


class Selective(_Strict):
    """The background, with the mean of one group's E and I neurons multiplied by contrasts.

    With `noise` > 0, a noisy prototype: for each presentation (epoch), every neuron of the group
    drops out, and every neuron outside it joins, with probability `noise`, drawn from the seed.
    """

    kind: Literal["selective"] = Field("selective", description="stimulus type")
    group: str = Field(description="neuron group (see `groups`); in a protocol block also $group, $A or $B")
    contrast_E: float = Field(1.0, ge=0, description="multiplies the background mean of the group's E neurons")
    contrast_I: float = Field(1.0, ge=0, description="multiplies the background mean of the group's I neurons")
    noise: Probability = Field(0.0, description="probability that a neuron's membership flips, per presentation")


class ArrayInput(_Strict):
    """Currents from a .npy array of shape (N, steps) (mV/ms): element [n, k] drives neuron n in
    step k, counted from the start of the epoch (or of the run, outside a protocol)."""

    kind: Literal["array"] = Field("array", description="stimulus type")
    path: str = Field(
        description=".npy file (N × steps); extra steps are ignored. A relative path is resolved "
        "against the working folder when the config is loaded, and stored absolute"
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, p: str) -> str:
        # Stored resolved: `wmnet resume` may run from another folder than the run did.
        return str(Path(p).expanduser().absolute()) if p else p


class Sum(_Strict):
    """The sum of several stimuli."""

    kind: Literal["sum"] = Field("sum", description="stimulus type")
    terms: list[Stimulus] = Field(min_length=1, description="the stimuli to add")


Stimulus = Annotated[Sinusoid | Constant | Background | Selective | ArrayInput | Sum, Field(discriminator="kind")]
Sum.model_rebuild()


class PopulationNoise(_Strict):
    """Background input into one population."""

    mean: float = Field(0.0, description="mean current (mV/ms)")
    std: float = Field(0.0, ge=0, description="standard deviation of the noise (mV/ms)")


class BackgroundInput(_Strict):
    """Parameters of the `background` and `selective` stimuli."""

    E: PopulationNoise = Field(default_factory=PopulationNoise, description="into each E neuron")
    I: PopulationNoise = Field(default_factory=PopulationNoise, description="into each I neuron")  # noqa: E741
    grain: PositiveMs = Field(1.0, description="the noise is piecewise constant over this many ms (a multiple of dt)")
