"""Whether a serving run counts, by the harness's one rule (bench.validity: MLPerf early stopping).

A run is valid when it has enough requests for its highest SLO percentile (and the suite's minimum), ran at least
the minimum duration, every SLO bound holds for the conservative estimate of its percentile (an upper bound at 99%
confidence), every request was served and none failed. Each failed check comes with its reason.
"""

from __future__ import annotations

from ..records.serving import SloCheck, Verdict
from ..validity import conservative_percentile, min_queries
from .loads import LoadResult
from .metrics import duration_s, request_latencies, samples_ms
from .slo import Slo, percentile_of


def judge(result: LoadResult, slo: Slo | None, min_duration_s: float, min_requests: int) -> Verdict:
    """Every check of the serving validity rule, with the reason for each that fails."""
    requests = len(result.timings)
    need = max(min_requests, min_queries(slo.highest_percentile())) if slo is not None else min_requests
    duration = duration_s(result)
    failed = [t for t in result.timings if t.served and t.error is not None]
    samples = samples_ms(request_latencies(result))
    slo_checks = []
    for metric, key, bound in (slo.bounds() if slo is not None else ()):
        estimate = conservative_percentile(samples[metric], percentile_of(key))
        slo_checks.append(SloCheck(metric=metric, percentile=key, bound_ms=bound, estimate_ms=estimate,
                                   samples=len(samples[metric]), met=estimate is not None and estimate <= bound))
    checks = {"min_requests": requests >= need, "min_duration": duration >= min_duration_s,
              "slo": all(c.met for c in slo_checks), "served": result.unserved == 0, "no_failures": not failed}
    reasons = []
    if not checks["min_requests"]:
        reasons.append(f"{requests} requests < {need} needed (suite minimum, and the early-stopping rule for the "
                       "highest SLO percentile)")
    if not checks["min_duration"]:
        reasons.append(f"ran {duration:.2f} s < minimum {min_duration_s:g} s")
    for check in slo_checks:
        if check.estimate_ms is None:
            reasons.append(f"{check.metric} {check.percentile}: {check.samples} samples are too few to estimate it")
        elif not check.met:
            reasons.append(f"{check.metric} {check.percentile} upper bound {check.estimate_ms:.1f} ms "
                           f"> SLO {check.bound_ms:g} ms")
    if not checks["served"]:
        reasons.append(f"{result.unserved} of {requests} requests not served: {result.stop_reason}")
    if failed:
        reasons.append(f"{len(failed)} of {requests} requests failed (first: request {failed[0].index}: "
                       f"{failed[0].error})")
    return Verdict(valid=all(checks.values()), checks=checks, reasons=reasons, slo=slo_checks)
