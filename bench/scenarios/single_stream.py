"""`single-stream` (alias `latency`): one query at a time, the next issued when the last completes.

It reports both latency percentiles and samples/s over the timed loop, so no second scenario times the
same loop again.
"""

from __future__ import annotations

from ..measurement.stats import summarize
from ..records.schema import Loop, ScenarioResult, Throughput
from . import DriverOptions, Scenario, driver_for, scenarios


@scenarios.register("single-stream")
class SingleStream(Scenario):
    Options = DriverOptions

    def run(self, session, workload, settings, options) -> ScenarioResult:
        timed = driver_for(options).single_stream(session.run, settings)
        wall_s = timed.wall_ns / 1e9
        samples_ms = [ns / 1e6 for ns in timed.samples_ns]
        latency = summarize(samples_ms, settings.instability_cv)
        return ScenarioResult(
            latency=latency,
            throughput=Throughput(samples_per_s=timed.count * workload.batch_size / wall_s,
                                  tokens_per_s=timed.count * workload.tokens_per_query / wall_s,
                                  basis="queries x batch / wall time of the timed loop"),
            loop=Loop(driver=getattr(options, "driver", "bench"), queries=timed.count, wall_s=wall_s,
                      warmup_iterations=timed.warmup_iterations, warmup_s=timed.warmup_ns / 1e9,
                      stopped_by_max_duration=timed.stopped_by_max_duration,
                      min_iterations=settings.min_iterations, min_duration_s=settings.min_duration_s,
                      served=workload.served(timed.count * workload.batch_size)),
            sufficient=timed.count >= settings.min_iterations and wall_s >= settings.min_duration_s,
            samples_ms=[round(v, 4) for v in samples_ms],
            phase_seconds={"forward": latency.p50_ms / 1e3} if latency.p50_ms else {},
        )
