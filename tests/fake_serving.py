"""Stand-ins registered on import, importable by a point's child and by a `bench serve` process: an engine that
serves any session with a PoolSystem (tests/serving_fakes.py), and a scenario that sends one burst of requests
through the session's engine. The HTTP path's tests judge the client, the launcher and the server, not a model: a
system with a known time per token and one burst (with `hang_s`, a point that overruns its timeout) keep them
fast and exact. The real engines and scenarios are judged in test_engines and test_serving_scenarios, and over
HTTP by the shipped endpoint suite's test."""

from __future__ import annotations

import sys

from pydantic import Field

from bench.config import NoOptions
from bench.measurement.stats import summarize
from bench.records.schema import Loop, ScenarioResult, Served, Throughput
from bench.scenarios import Scenario, scenarios
from bench.serving.engines import Engine, EngineSettings, engines
from bench.serving.loads import burst
from bench.serving.metrics import serving_metrics
from bench.serving.workload import build_requests
from serving_fakes import PoolSystem

FAKE_ENGINE = "fake-pool"
BURST = "requests-burst"


@engines.register(FAKE_ENGINE)
class FakePoolEngine(Engine):
    name = FAKE_ENGINE

    def build(self, session, settings: EngineSettings) -> PoolSystem:
        return PoolSystem(capacity=settings.max_batch, per_token_s=0.002)


class BurstOptions(NoOptions):
    requests: int = Field(8, ge=1)
    output_tokens: int = Field(4, ge=0)
    engine: str | None = None
    hang_s: float = Field(0.0, ge=0, description="sleep this long after the burst (a point that overruns)")


@scenarios.register(BURST)
class RequestsBurst(Scenario):
    Options = BurstOptions
    serving = True

    def run(self, session, workload, settings, options) -> ScenarioResult:
        import time

        engine = options.engine or (session.engines or (FAKE_ENGINE,))[0]
        system = engines.get(engine)().build(session, EngineSettings(max_batch=workload.batch_size))
        requests = build_requests(session.tokenizer, options.requests, workload.seq_len, options.output_tokens,
                                  settings.seed)
        system.start()
        try:
            result = burst(system, requests, deadline_s=60)
        finally:
            system.stop()
        metrics = serving_metrics(result, system.engine)
        print(f"served {metrics.requests} requests, {metrics.failed_requests} failed", flush=True)
        time.sleep(options.hang_s)
        e2e = [t for t in (metrics.e2e_ms.p50,) if t is not None]
        return ScenarioResult(
            latency=summarize(e2e or [0.0]),
            throughput=Throughput(samples_per_s=metrics.requests_per_s, tokens_per_s=metrics.output_tokens_per_s,
                                  requests_per_s=metrics.requests_per_s, basis="test burst"),
            loop=Loop(queries=metrics.requests, wall_s=metrics.duration_s, min_iterations=1, min_duration_s=0.0,
                      served=Served(samples=metrics.requests - metrics.failed_requests, tokens=metrics.output_tokens,
                                    tokens_counted="output tokens generated")),
            sufficient=metrics.failed_requests == 0)


def child_main(*args) -> None:
    """A point's child with these registered (run_isolated's `target`)."""
    from bench.isolation.child import child_main as real

    real(*args)


def serve_main() -> None:
    """`bench serve` with these registered: python tests/fake_serving.py serve ARGS..."""
    from bench.cli import main

    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    serve_main()
