"""`cold-start`: the first queries of a fresh session, with no warm-up, each timed.

What a user of a serverless endpoint or a just-started replica sees: lazy initialisation, allocator
growth and (for compiled backends) compilation land on the first queries. The record keeps every
latency in order (`samples_ms`); the `cold-start` report section reads the first query, the steady
state and how many queries it took to get there.
"""

from __future__ import annotations

import time

from pydantic import Field

from ..config import NoOptions
from ..measurement.stats import summarize
from ..measurement.timing import gc_paused
from ..records.schema import Loop, ScenarioResult, Throughput
from . import Scenario, scenarios


class ColdStartOptions(NoOptions):
    queries: int = Field(16, ge=2, description="queries timed from the first one on, in order")


@scenarios.register("cold-start")
class ColdStart(Scenario):
    Options = ColdStartOptions

    def work_phases(self, workload, options):
        """None: a cold query's time is start-up, not the steady cost of a phase."""
        return []

    def run(self, session, workload, settings, options) -> ScenarioResult:
        clock = time.perf_counter_ns
        samples: list[int] = []
        with gc_paused():
            settings.window.opened()
            for _ in range(options.queries):
                start = clock()
                session.run()
                samples.append(clock() - start)
            settings.window.closed()
        samples_ms = [ns / 1e6 for ns in samples]
        wall_s = sum(samples) / 1e9
        return ScenarioResult(
            latency=summarize(samples_ms, settings.instability_cv),
            throughput=Throughput(samples_per_s=len(samples) * workload.batch_size / wall_s,
                                  basis="queries x batch / their summed latency, cold queries included"),
            loop=Loop(queries=len(samples), wall_s=wall_s, min_iterations=options.queries, min_duration_s=0.0,
                      served=workload.served(len(samples) * workload.batch_size)),
            sufficient=len(samples) == options.queries,
            samples_ms=[round(v, 4) for v in samples_ms],
        )
