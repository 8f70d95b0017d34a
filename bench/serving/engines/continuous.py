"""`continuous`: iteration-level scheduling, the session's own (PyTorch decoders: transformers' continuous batching,
bench/backends/pytorch/continuous.py). A session without one raises `Unsupported` with the reason."""

from __future__ import annotations

from typing import Any

from ..requests import ServingSystem
from . import Engine, EngineSettings, engines


@engines.register("continuous")
class Continuous(Engine):
    name = "continuous"

    def build(self, session: Any, settings: EngineSettings) -> ServingSystem:
        return session.continuous_batching(settings)
