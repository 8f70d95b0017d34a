"""The two kinds of record model: typed and closed (`Frozen`), or open to keys that depend on the source (`Open`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable, no unknown keys, and no NaN or infinity: strict JSON, and no figure that is not a number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Open(BaseModel):
    """For descriptions whose keys depend on the source (a loader, a backend, a machine)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
