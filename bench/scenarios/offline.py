"""`offline`: every sample issued at once; the system under test serves them in batches of the point's
batch size. The metric is samples/s over the whole run (MLPerf's offline scenario).

A sample's latency from the one issue only measures its place in the backlog, so the record's `latency`
and `samples_ms` hold each batch's service time (its completion minus the previous one): what a
significance test between two offline runs should compare.
"""

from __future__ import annotations

from ..measurement.stats import summarize
from ..records.schema import Batching, Loop, ScenarioResult, Throughput
from . import DriverOptions, Scenario, driver_for, scenarios


@scenarios.register("offline")
class Offline(Scenario):
    Options = DriverOptions

    def run(self, session, workload, settings, options) -> ScenarioResult:
        def issue_batch(n: int) -> None:
            if n == workload.batch_size:
                session.run()
            else:
                session.run_rows(n)

        timed = driver_for(options).offline(issue_batch, workload.batch_size, settings)
        wall_s = timed.wall_ns / 1e9
        per_batch_ms = [b / 1e6 for b in _batch_service_ns(timed.completions_ns)]
        return ScenarioResult(
            latency=summarize(per_batch_ms, settings.instability_cv),
            throughput=Throughput(samples_per_s=timed.served / wall_s,
                                  tokens_per_s=timed.served * workload.seq_len / wall_s,
                                  basis="samples served / (last completion - the one issue)"),
            loop=Loop(driver=getattr(options, "driver", "bench"), queries=len(timed.batch_sizes),
                      samples=timed.samples, wall_s=wall_s, warmup_iterations=timed.warmup_iterations,
                      warmup_s=timed.warmup_ns / 1e9, stopped_by_max_duration=timed.stopped_by_max_duration,
                      min_iterations=settings.min_iterations, min_duration_s=settings.min_duration_s,
                      served=workload.served(timed.served)),
            batching=Batching(policy="offline", max_batch_size=workload.batch_size),
            sufficient=len(timed.batch_sizes) >= settings.min_iterations and wall_s >= settings.min_duration_s,
            samples_ms=[round(v, 4) for v in per_batch_ms],
            phase_seconds={"forward": wall_s * workload.batch_size / timed.served} if timed.served else {},
        )


def _batch_service_ns(completions_ns: list[int]) -> list[int]:
    """How long each batch took: its completion minus the previous one."""
    return [b - a for a, b in zip([0, *completions_ns], completions_ns)]
