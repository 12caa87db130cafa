"""The base of every config model: unknown keys are errors (docs/architecture.md, rule 2), NaN and inf refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # .nan/.inf: refused
