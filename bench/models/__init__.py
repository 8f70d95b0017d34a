"""Model sources: where weights come from, what task a model serves, and whether its weights are real.

Each source is registered by name (`packaged`, `random`, `hub`, `local`, `gguf`); a suite's model entry
names one. Loading happens only in the isolated child process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..config import ModelSpec
from ..registry import Registry


@dataclass
class LoadedModel:
    model: Any  # torch.nn.Module in eval mode, fp32, on CPU
    tokenizer: Any
    task: str  # "encoder" | "causal-lm"
    weights: str  # "real" | "random"
    provenance: dict = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return self.model.config


class Source:
    """Base for model sources. `check` runs at plan time and must not load weights."""

    weights: ClassVar[str] = "real"

    def check(self, spec: ModelSpec) -> tuple[str, str] | None:
        """Return (problem, fix) when the entry cannot work, else None."""
        return None

    def task(self, spec: ModelSpec) -> str | None:
        """The task when it is known without loading, else None."""
        return spec.task

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        """The model and tokenizer; `cache_dir` (the run's build cache) may hold a faster form of the weights."""
        raise NotImplementedError


model_sources: Registry[type[Source]] = Registry("model source", "bench.models")
