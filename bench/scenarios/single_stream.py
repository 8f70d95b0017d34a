"""`latency` (single stream) and `throughput` (offline) over one forward pass per query."""

from __future__ import annotations

from ..measurement.stats import summarize
from ..measurement.timing import LoopSettings, time_loop
from . import Scenario, Workload, scenarios


def _measure(session, workload: Workload, settings: LoopSettings) -> dict:
    timed = time_loop(session.run, settings)
    latency = summarize([ns / 1e6 for ns in timed.samples_ns], settings.instability_cv)
    wall_s = timed.wall_ns / 1e9
    queries = timed.count
    sufficient = queries >= settings.min_iterations and wall_s >= settings.min_duration_s
    return {
        "latency": latency,
        "loop": {
            "queries": queries,
            "wall_s": wall_s,
            "warmup_iterations": timed.warmup_iterations,
            "warmup_s": timed.warmup_ns / 1e9,
            "stopped_by_max_duration": timed.stopped_by_max_duration,
            "min_iterations": settings.min_iterations,
            "min_duration_s": settings.min_duration_s,
        },
        "sufficient": sufficient,
        "samples_ms": [round(ns / 1e6, 4) for ns in timed.samples_ns],
        "_wall_s": wall_s,
        "_queries": queries,
    }


@scenarios.register("latency")
class Latency(Scenario):
    """Single stream: the next query starts when the last completes. Headline: p50/p90 latency."""

    def run(self, session, workload, settings, options) -> dict:
        m = _measure(session, workload, settings)
        mean_s = m["latency"]["mean_ms"] / 1e3
        m["throughput"] = {"samples_per_s": workload.batch_size / mean_s,
                           "tokens_per_s": workload.tokens_per_query / mean_s,
                           "basis": "batch / mean latency"}
        del m["_wall_s"], m["_queries"]
        return m


@scenarios.register("throughput")
class Offline(Scenario):
    """Offline: queries back to back; throughput is total volume over total wall time."""

    def run(self, session, workload, settings, options) -> dict:
        m = _measure(session, workload, settings)
        wall_s, queries = m.pop("_wall_s"), m.pop("_queries")
        m["throughput"] = {"samples_per_s": queries * workload.batch_size / wall_s,
                           "tokens_per_s": queries * workload.tokens_per_query / wall_s,
                           "basis": "total volume / wall time of the timed loop"}
        return m
