"""One point of a suite's matrix, fully resolved: what its isolated run needs, and its identity for resume."""

from __future__ import annotations

import hashlib
import json

from pydantic import Field

from .schema import Defaults, ModelSpec, QualitySettings, ScenarioSpec, Strict, VariantSpec


class RunPoint(Strict):
    """The fully resolved config of one isolated run; its hash identifies the point for resume."""

    suite: str
    model: ModelSpec
    task: str | None
    weights: str
    backend: str
    device: str
    variant: VariantSpec
    scenario: ScenarioSpec
    batch_size: int
    seq_len: int
    settings: Defaults
    quality: QualitySettings = QualitySettings()
    target: str | None = Field(None, description="the node kind a cluster runs this point on (suite `targets`)")
    extensions: list[str] | None = Field(None, description="what the point's process imports first (suite "
                                                           "`extensions`); where it lies is not the point's identity")

    @property
    def point_id(self) -> str:
        """sha256 of the config minus the suite name, where its extensions lie and how the model is reached
        (`model.access`: headers, credentials); a field left at None is left out, so adding an optional field
        (such as `target`) keeps the ids of existing points."""
        identity = self.model_dump(mode="json", exclude={"suite", "extensions"})
        identity["model"].pop("access", None)
        identity = {k: v for k, v in identity.items() if v is not None}
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        on = f" · on {self.target}" if self.target else ""
        return (f"{self.model.name} · {self.backend} · {self.device} · {self.variant.name} · "
                f"{self.scenario.label} · b{self.batch_size} s{self.seq_len}{on}")
