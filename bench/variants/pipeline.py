"""The one transform pipeline every backend goes through, stage by stage:

    torch-stage transforms -> precision -> after-precision torch transforms -> backend.export
    -> the exported artifact's transforms (any stage but torch: `onnx` graphs, an engine's own) -> backend.open

Backends only export and open; they never look at a variant's transforms. Each applied transform
leaves an `AppliedTransform` that carries what the report needs (description, compute precision,
FLOP scales), so report code never switches on transform names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import VariantSpec
from . import Transform, transforms
from .precision import apply_precision


@dataclass(frozen=True)
class AppliedTransform:
    name: str
    stage: str
    kind: str
    description: str
    compute_precision: str | None
    flop_scales: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        return {"name": self.name, "stage": self.stage, "kind": self.kind, "description": self.description,
                "compute_precision": self.compute_precision, "flop_scales": self.flop_scales, **self.info}


@dataclass
class Prepared:
    """The system under test and what was done to get it."""

    session: Any
    model: Any  # the torch model after the torch and precision stages
    applied: list[AppliedTransform]
    precision_info: dict

    def compute_precision(self, precision: str) -> str:
        """The last precision a transform declared, else the variant's own."""
        declared = [t.compute_precision for t in self.applied if t.compute_precision]
        return declared[-1] if declared else precision

    def flop_scale(self, kind: str) -> float:
        scale = 1.0
        for t in self.applied:
            scale *= t.flop_scales.get(kind, 1.0)
        return scale


def _specs(variant: VariantSpec) -> list[tuple[Any, type[Transform]]]:
    return [(spec, transforms.get(spec.name)) for spec in variant.transforms]


def _run(target: Any, selected: list, ctx: Any, applied: list[AppliedTransform]) -> Any:
    for spec, cls in selected:
        options = cls.Options.model_validate(spec.options)
        transform = cls()
        target, info = transform.apply(target, options, ctx)
        info = dict(info)
        applied.append(AppliedTransform(name=spec.name, stage=cls.stage, kind=cls.kind,
                                        description=transform.describe(options),
                                        compute_precision=transform.compute_precision(options, ctx.precision),
                                        flop_scales=info.pop("flop_scales", {}), info=info))
        if cls.stage == "torch":  # the export cache is keyed by what was done to the torch model, inputs included
            ctx.model_key.setdefault("torch_transforms", []).append(
                {**spec.model_dump(mode="json"), "inputs": transform.cache_inputs(options, ctx)})
    return target


def prepare(loaded: Any, variant: VariantSpec, backend: Any, inputs: dict, ctx: Any) -> Prepared:
    """Run every stage of `variant` on `loaded.model` and open `backend`'s session on the result."""
    specs = _specs(variant)
    applied: list[AppliedTransform] = []
    model = _run(loaded.model, [s for s in specs if s[1].stage == "torch" and not s[1].after_precision], ctx, applied)
    model, precision_info = apply_precision(model, ctx, backend.precision_api)
    ctx.model_key["precision"] = {"precision": ctx.precision, "mode": ctx.precision_mode}
    model = _run(model, [s for s in specs if s[1].stage == "torch" and s[1].after_precision], ctx, applied)
    artifact = backend.export(model, loaded, inputs, ctx)
    # the plan admits only the stages the backend declares, so whatever is not torch is its artifact's
    artifact = _run(artifact, [s for s in specs if s[1].stage != "torch"], ctx, applied)
    session = backend.open(artifact, loaded, inputs, ctx)
    return Prepared(session=session, model=model, applied=applied, precision_info=precision_info)
