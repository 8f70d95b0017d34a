"""`single`: one request at a time, in arrival order: the static batcher with batches of one and no wait."""

from __future__ import annotations

from typing import Any

from . import Engine, EngineSettings, engines
from .static import BatchingSystem


@engines.register("single")
class Single(Engine):
    name = "single"

    def build(self, session: Any, settings: EngineSettings) -> BatchingSystem:
        return BatchingSystem(session, self.name, max_batch=1, max_wait_s=0.0)
