"""Model sources: where weights come from, what task a model serves, and whether its weights are real.

Each source is registered by name (`packaged`, `random`, `hub`, `local`, `gguf` here; `endpoint`, a model an
HTTP server runs, in bench/endpoints/); a suite's model entry names one. Loading happens only in the isolated
child process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..config import ModelSpec, NoOptions
from ..registry import Registry


@dataclass
class LoadedModel:
    model: Any  # torch.nn.Module in eval mode, fp32, on CPU; for a model a server runs, what reaches it (.config)
    tokenizer: Any
    task: str  # "encoder" | "causal-lm"
    weights: str  # "real" | "random" | "served"
    provenance: dict = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return self.model.config


class Source:
    """Base for model sources. `check` runs at plan time and must not load weights.

    Declarations the plan reads: `Options`, the entry's own keys beyond ModelSpec's (none by default: an unknown
    key is refused); `access`, those of them (dotted paths for nested keys) that say how to reach the model rather
    than what it is (left out of the point's identity, values never recorded); `takes_id`, whether the entry names
    its model with `id`; `backend`, the one backend that runs every point of this source whatever the suite's
    `backends` (None: the suite's)."""

    weights: ClassVar[str] = "real"
    Options: ClassVar[type] = NoOptions
    access: ClassVar[frozenset[str]] = frozenset()
    takes_id: ClassVar[bool] = True
    backend: ClassVar[str | None] = None

    def check(self, spec: ModelSpec) -> tuple[str, str] | None:
        """Return (problem, fix) when the entry cannot work, else None."""
        return None

    def task(self, spec: ModelSpec) -> str | None:
        """The task when it is known without loading, else None."""
        return spec.task

    def weights_of(self, spec: ModelSpec) -> str:
        """Whether the entry's weights are real, random, or neither is known (`served`), without loading."""
        return self.weights

    def load(self, spec: ModelSpec, seed: int = 0, cache_dir: Path | None = None) -> LoadedModel:
        """The model and tokenizer; `cache_dir` (the run's build cache) may hold a faster form of the weights."""
        raise NotImplementedError


model_sources: Registry[type[Source]] = Registry("model source", "bench.models", "bench.endpoints")
