"""The stimulus protocol's schema: epochs (with receptor-scale overrides), blocks of repeated epochs
over groups or pairs, and the protocol that orders them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator

from wmnet.config.base import PositiveMs, ProjectionName, _Strict
from wmnet.config.inputs import Stimulus


class ScaleOverride(_Strict):
    """Receptor scales of one projection during an epoch; unset ones keep the projection's value."""

    slow_scale: float | None = Field(None, ge=0, description="multiplies the slow-channel efficacies")
    fast_scale: float | None = Field(None, ge=0, description="multiplies the fast-channel efficacies")


class Epoch(_Strict):
    """A stretch of the protocol with one stimulus (and, optionally, its own receptor scales)."""

    name: str = Field(min_length=1, description="epoch name, written to events.tsv (e.g. cue, delay)")
    duration: PositiveMs = Field(description="length (ms), a multiple of dt")
    stimulus: Stimulus | None = Field(None, description="input during the epoch; null: the config's `stimulus`")
    projections: dict[ProjectionName, ScaleOverride] = Field(
        default_factory=dict, description="receptor scales during this epoch, e.g. {E->E: {slow_scale: 0.5}}"
    )


class Block(_Strict):
    """Epochs repeated `repeat` times. With `groups`, each repetition runs the epochs once per
    group ($group in a stimulus names it); with `pairs`, once per pair ($A then $B)."""

    block: str = Field(min_length=1, description="block name, written to events.tsv")
    repeat: int = Field(1, ge=1, description="number of repetitions")
    shuffle: bool = Field(False, description="a new random order of the groups or pairs in each repetition")
    groups: list[str] | None = Field(None, min_length=1, description="groups substituted for $group")
    pairs: list[tuple[str, str]] | None = Field(
        None, min_length=1, description="pair association: [A, B] groups substituted for $A and $B"
    )
    epochs: list[Epoch] = Field(min_length=1, description="the epochs of one trial")

    def cases(self) -> list[dict[str, str]]:
        """One substitution ($group, or $A and $B) per trial of a repetition."""
        if self.groups is not None:
            return [{"$group": g} for g in self.groups]
        if self.pairs is not None:
            return [{"$A": a, "$B": b} for a, b in self.pairs]
        return [{}]

    @model_validator(mode="after")
    def _one_kind(self) -> Block:
        if self.groups is not None and self.pairs is not None:
            raise ValueError(f"block {self.block}: give groups or pairs, not both")
        return self


def _item_kind(v: Any) -> str:
    return "block" if (isinstance(v, dict) and "block" in v) or isinstance(v, Block) else "epoch"


ProtocolItem = Annotated[Annotated[Epoch, Tag("epoch")] | Annotated[Block, Tag("block")], Discriminator(_item_kind)]


class Protocol(_Strict):
    """An ordered list of epochs and blocks; the run's duration is its total length."""

    initial_rest: float = Field(0.0, ge=0, description="rest (ms) before the first epoch, with the config's `stimulus`")
    epochs: list[ProtocolItem] = Field(min_length=1, description="epochs and blocks, in order")
