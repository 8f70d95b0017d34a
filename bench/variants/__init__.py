"""Model transforms (precision, quantization, pruning) and the named variant presets built from them.

A transform works at one stage: `torch` transforms change an nn.Module before any backend sees it;
`onnx` transforms change an exported graph, so only backends that export can take them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..registry import Registry


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Transform:
    """Base for registered transforms. Subclasses set `stage`, `Options` and implement `apply`."""

    stage: ClassVar[str] = "torch"
    Options: ClassVar[type[BaseModel]] = NoOptions

    def apply(self, target: Any, options: BaseModel, ctx: Any) -> tuple[Any, dict]:
        """Return the transformed model (or graph path) and a record of what was done."""
        raise NotImplementedError


transforms: Registry[type[Transform]] = Registry("transform", "bench.variants")
