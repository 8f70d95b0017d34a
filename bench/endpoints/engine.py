"""The `endpoint` engine: an HTTP server's own batching. Each build is a fresh client (a ServingSystem) over the
server of an endpoint session, so every run of a scenario (a sweep's levels, a capacity search's probes) starts
from a client of its own while the server stays up."""

from __future__ import annotations

from typing import Any

from ..errors import Unsupported
from ..serving.engines import Engine, EngineSettings, engines
from ..serving.requests import ServingSystem


@engines.register("endpoint")
class EndpointEngine(Engine):
    name = "endpoint"

    def build(self, session: Any, settings: EngineSettings) -> ServingSystem:
        """The server batches as it was started to: `settings` (the suite's batch size) do not reach it."""
        new_client = getattr(session, "new_client", None)
        if new_client is None:
            raise Unsupported("the endpoint engine serves the sessions of endpoint models (source: endpoint) only")
        return new_client()
