"""Model transforms (quantization, pruning, graph rewrites) and the named variant presets built from them.

A transform works at one stage: `torch` transforms change an nn.Module before any backend sees it (by
default before the precision stage; `after_precision` ones see the cast model); any other stage names the
artifact an engine exports (`onnx` graphs; an engine may declare its own), so only backends that declare that
stage can take them. `pipeline.prepare` runs the stages.

A transform also declares what the report needs, so no report code switches on transform names: the
precision its kernels compute in (`compute_precision`), a short `describe`, and its `kind` (report
sections pick their rows by kind: the pruning table shows every `pruning` transform). FLOP scales that only the
run can know (how many neurons a structured prune removed) are returned in its info as `flop_scales`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from ..config import NoOptions
from ..registry import Registry


class Transform:
    """Base for registered transforms. Subclasses set `stage`, `Options` and implement `apply`."""

    stage: ClassVar[str] = "torch"  # "torch", or the artifact stage of the backends that accept it ("onnx"...)
    kind: ClassVar[Literal["quantization", "pruning", "precision", "graph", "recovery"]] = "quantization"
    after_precision: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def apply(self, target: Any, options: BaseModel, ctx: Any) -> tuple[Any, dict]:
        """Return the transformed model (or graph path) and a record of what was done."""
        raise NotImplementedError

    def cache_inputs(self, options: BaseModel, ctx: Any) -> dict:
        """What the result depends on besides the options and the model (a calibration's sequence length and
        text): builds and exports of the result are keyed on it, so a cache never serves another's result."""
        return {}

    def compute_precision(self, options: BaseModel, precision: str) -> str | None:
        """The precision the transformed layers compute in, or None when the variant's precision still holds."""
        return None

    def describe(self, options: BaseModel) -> str:
        """A short phrase for tables (e.g. 'int8 dynamic, per-channel')."""
        set_options = options.model_dump(exclude_defaults=True)
        return type(self).__name__ + (f" ({', '.join(f'{k}={v}' for k, v in set_options.items())})" if set_options else "")


transforms: Registry[type[Transform]] = Registry("transform", "bench.variants", "bench.backends")
