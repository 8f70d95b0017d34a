"""Why a point's sample does not suffice, in words: the one place the report's flags and the run's headline
take them from, so that both say the same thing of the same record."""

from __future__ import annotations

from .schema import Metrics

SERVING_CHECKS = {"min_requests": "too few requests", "min_duration": "run too short", "slo": "over the SLO",
                  "served": "unserved requests", "no_failures": "failed requests"}  # Verdict.checks


def sample_flags(metrics: Metrics) -> list[str]:
    """Why a point's sample does not suffice: for a serving run, each check of its verdict that failed (an SLO
    that could not be estimated for want of requests is too few requests, not a bound exceeded)."""
    if metrics.sufficient:
        return []
    if metrics.verdict is None:
        return ["insufficient sample"]
    verdict = metrics.verdict
    failed = {check for check, passed in verdict.checks.items() if not passed}
    if "min_requests" in failed and all(c.met or c.estimate_ms is None for c in verdict.slo):
        failed.discard("slo")
    named = [flag for check, flag in SERVING_CHECKS.items() if check in failed]
    return named + sorted(failed - SERVING_CHECKS.keys()) or ["invalid serving run"]
