"""Why a point's sample does not suffice, in words: the one place the report's flags and the run's headline
take them from, so that both say the same thing of the same record."""

from __future__ import annotations

from .schema import Metrics

SERVER_CHECKS = {"min_queries": "too few queries", "min_duration": "run too short",
                 "latency_bound": "over the latency bound", "all_served": "unserved requests"}  # validity.checks


def sample_flags(metrics: Metrics) -> list[str]:
    """Why a point's sample does not suffice: for a server run, each validity check it failed (a run too short
    to estimate its percentile fails the latency check for want of an estimate: that is too few queries)."""
    if metrics.sufficient:
        return []
    if metrics.server is None:
        return ["insufficient sample"]
    validity = metrics.server.validity
    failed = {check for check, passed in validity.checks.items() if not passed}
    if validity.conservative_percentile_s is None and "min_queries" in failed:
        failed.discard("latency_bound")
    named = [flag for check, flag in SERVER_CHECKS.items() if check in failed]
    return named + sorted(failed - SERVER_CHECKS.keys()) or ["invalid server run"]
