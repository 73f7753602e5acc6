"""Building blocks shared by the config schema: the strict base model and the constrained field types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from wmnet import model

# Names from the model schema, as Literal types: pydantic rejects others and lists the schema's in
# JSON schemas and errors. (mypy cannot evaluate a Literal over a runtime tuple: str for it.)
if TYPE_CHECKING:
    StateVariableName = str
    ProjectionName = str
else:
    StateVariableName = Literal[model.VARIABLES]
    ProjectionName = Literal[model.PROJECTION_NAMES]

PositiveMs = Annotated[float, Field(gt=0)]

Probability = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    # allow_inf_nan=False: every float field (also inside tuples and lists) must be finite; an
    # inf duration or a NaN threshold would otherwise overflow later or run to silently wrong results.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True, allow_inf_nan=False)
