"""The `endpoint` backend: the session of a `source: endpoint` point, whose model runs in an HTTP server.

It holds no model (the child prepares nothing and measures no quality, memory or work here) and serves requests
only, through the `endpoint` engine (engine.py): the batching is the server's own. Opening the session starts
the server where the entry says `launch` (its log beside the point's, its start-up outside every timed window);
closing it stops the server, and fails the point with the server's log where the server had died while in use.
"""

from __future__ import annotations

import os
from typing import Any

from ..backends import Backend, Session, backends
from ..records.schema import AS_SERVED, SessionDescription
from .client import EndpointClient, EndpointSettings, token_counter
from .launch import LaunchedServer
from .source import Endpoint


class EndpointSession(Session):
    """What the serving scenarios drive: `new_client()` is a fresh ServingSystem over the server for each run."""

    engines = frozenset({"endpoint"})

    def __init__(self, settings: EndpointSettings, tokenizer: Any, task: str, description: SessionDescription,
                 server: LaunchedServer | None = None):
        self.settings, self.tokenizer, self.task, self.server = settings, tokenizer, task, server
        self.description = description
        self.count_tokens = None if settings.api == "embeddings" else token_counter(tokenizer)
        self.clients: list[EndpointClient] = []

    def new_client(self) -> EndpointClient:
        client = EndpointClient(self.settings, self.count_tokens)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.stop()
        if self.server is not None:
            self.server.close()

    def describe(self) -> SessionDescription:
        """The server as it said what it is (its version, models and `server` header), the last client's account
        (fields the server refused, token counts against its usage) and, where the point launched the server, how:
        the command, start-up time, how it stopped and its log."""
        properties = {**self.description.properties}
        identity = self.server.record.get("server") if self.server is not None else None
        if self.clients:
            client = self.clients[-1].describe()
            identity = identity or client.pop("server", None)
            client.pop("server", None)
            properties["client"] = {**client, "runs": len(self.clients)}
        properties["server"] = identity
        if self.server is not None:
            properties["launched"] = dict(self.server.record)
        version = identity and (identity.get("version") or identity.get("header"))
        return self.description.model_copy(update={"properties": properties, "engine_version": version})


@backends.register("endpoint")
class EndpointBackend(Backend):
    stages = frozenset()
    precisions = frozenset({"fp32"})
    devices = frozenset({"cpu", "cuda"})   # the device of the machine that runs the point (and a launched server)
    libraries = ("httpx",)
    holds_model = False
    engines = EndpointSession.engines

    @classmethod
    def refuses(cls, variant: Any) -> str | None:
        if variant.transforms or variant.precision != "fp32" or variant.precision_mode != "cast" \
                or variant.backend_options:
            return ("an endpoint's server runs the model as it was started: the harness applies no variant to it "
                    "(only a plain fp32 variant runs, and stands for the model as served)")
        return None

    def open(self, endpoint: Endpoint, loaded: Any, inputs: Any, ctx: Any) -> EndpointSession:
        import httpx

        options = endpoint.options
        server = None
        if options.launch is not None:
            log = (ctx.log_path.with_name(ctx.log_path.stem + ".server.log") if ctx.log_path
                   else ctx.cache_dir / "server-logs" / f"server-{os.getpid()}.log")
            server = LaunchedServer(options.launch, log, endpoint.model_dir)
            try:
                server.start()
            except BaseException:
                server.stop()
                raise
        url = server.url if server is not None else options.url
        description = self.describe(ctx, engine="http endpoint", precision=AS_SERVED,
                                    properties={"url": url, "model": options.settings(url, endpoint.model_dir).model,
                                                "api": options.api,
                                                "client": {"implementation": f"httpx {httpx.__version__}"}})
        return EndpointSession(options.settings(url, endpoint.model_dir), loaded.tokenizer, loaded.task, description,
                               server)

    def describe(self, ctx: Any, **fields: Any) -> SessionDescription:
        return SessionDescription(device=ctx.device, reference=self.reference, **fields)
