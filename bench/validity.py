"""The one validity rule for every scenario: MLPerf LoadGen's early stopping.

A p-th percentile claim at confidence c (0.99) needs enough queries that, even with `tolerance` of them
over the claimed latency, the binomial bound still holds: the smallest n with
P(Binomial(n, 1 - p) <= tolerance) <= 1 - c. LoadGen tolerates one query (tolerance 1), which gives its
published 64 queries for p90 and 662 for p99; `min_queries` derives both, and nothing else in the harness
hard-codes them. The reported percentile is the conservative estimate: the order statistic X_(k) with k the
smallest rank such that P(Binomial(n, p) >= k) <= 1 - c, an upper bound on the true percentile at confidence c.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.99
TOLERANCE = 1  # queries over the bound LoadGen's early stopping tolerates
SPAN_CONFIDENCE = 0.9999  # a run that keeps up must not fall short of its minimum duration by its arrivals' luck
RULE = (f"MLPerf LoadGen early stopping: {CONFIDENCE:.0%} confidence, {TOLERANCE} query over the bound tolerated "
        "(p90 needs 64 queries, p99 needs 662)")


@lru_cache(maxsize=64)
def min_queries(percentile: float, confidence: float = CONFIDENCE, tolerance: int = TOLERANCE) -> int:
    """Queries needed to support a `percentile` (e.g. 0.90) claim under the early-stopping rule."""
    if not 0 < percentile < 1:
        raise ValueError(f"percentile must be in (0, 1), not {percentile}")
    n = tolerance + 1
    while sps.binom.cdf(tolerance, n, 1 - percentile) > 1 - confidence:
        n += 1
    return n


def requests_to_span(rate_qps: float, duration_s: float, burstiness: float = 1.0,
                     confidence: float = SPAN_CONFIDENCE) -> int:
    """Requests whose random arrivals at `rate_qps` span at least `duration_s` with probability `confidence`.

    rate x duration requests span the duration only on average, so about half of such runs would fall short.
    The n - 1 gaps after the first arrival, each gamma with shape `burstiness` (1: Poisson) and mean 1/rate,
    sum to Gamma((n - 1) x burstiness, scale 1 / (burstiness x rate)).
    """
    if duration_s <= 0:
        return 1
    n = math.ceil(rate_qps * duration_s) + 1
    while sps.gamma.cdf(duration_s, (n - 1) * burstiness, scale=1 / (burstiness * rate_qps)) > 1 - confidence:
        n += 1
    return n


def conservative_percentile(latencies: list[float] | np.ndarray, p: float, confidence: float = CONFIDENCE) -> float | None:
    """An upper bound on the true p-quantile that holds with `confidence`, or None if n is too small."""
    x = np.sort(np.asarray(latencies, dtype=float))
    n = len(x)
    if n == 0:
        return None
    k = int(sps.binom.ppf(confidence, n, p)) + 1  # 1-based rank
    return float(x[k - 1]) if k <= n else None


def check_validity(latencies_s: list[float], duration_s: float, min_duration_s: float, min_iterations: int,
                   percentile: float, latency_bound_s: float | None, confidence: float = CONFIDENCE) -> dict:
    """Each sub-check and an overall `valid` flag, with reasons for every failed check."""
    n = len(latencies_s)
    need = max(min_iterations, min_queries(percentile, confidence))
    bound_estimate = conservative_percentile(latencies_s, percentile, confidence)
    checks = {
        "min_duration": duration_s >= min_duration_s,
        "min_queries": n >= need,
        "latency_bound": bool(latency_bound_s is None or (bound_estimate is not None and bound_estimate <= latency_bound_s)),
    }
    reasons = []
    if not checks["min_duration"]:
        reasons.append(f"ran {duration_s:.2f} s < minimum {min_duration_s:g} s")
    if not checks["min_queries"]:
        reasons.append(f"{n} queries < {need} needed (suite minimum, and the early-stopping rule for "
                       f"p{percentile * 100:g})")
    elif not checks["latency_bound"]:
        reasons.append(f"p{percentile * 100:g} upper bound {bound_estimate * 1e3:.1f} ms > bound {latency_bound_s * 1e3:.1f} ms")
    return {"valid": all(checks.values()), "checks": checks, "reasons": reasons, "percentile": percentile,
            "confidence": confidence, "tolerance": TOLERANCE, "conservative_percentile_s": bound_estimate}
