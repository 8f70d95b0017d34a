"""MLPerf-style run validity: minimum duration, minimum query count, and a binomial early-stopping
bound on a latency percentile.

The statistics (latencies i.i.d. from a continuous distribution, q_p its true p-quantile):
each latency falls below q_p with probability p, so the number of samples below q_p is
Binomial(n, p). The k-th smallest sample x_(k) is below q_p only if at least k samples are, so

    P(x_(k) < q_p) = P(Binomial(n, p) >= k).

x_(k) upper-bounds q_p with confidence c when that is <= 1 - c, i.e. when
P(Binomial(n, p) <= k - 1) >= c. The smallest such k is k = binom.ppf(c, n, p) + 1 (1-based);
it exists only if k <= n. That is `early_stopping_rank`; the sample there is the early-stopping
estimate: a latency the true p-percentile is at most, with confidence c.

Minimum query counts. Allowing the run to contain `tolerated` samples above the claimed bound,
the smallest n with P(Binomial(n, p) >= n - tolerated) <= 1 - c is:

    p90, c=0.99: tolerated=0 -> 44   tolerated=1 -> 64
    p99, c=0.99: tolerated=0 -> 459  tolerated=1 -> 662

With tolerated=0 this is n >= ln(1 - c) / ln(p): the fewest queries for which the maximum itself
bounds q_p. MLPerf's published minimums, 64 (p90) and 662 (p99), are the tolerated=1 values:
LoadGen's early stopping (loadgen/early_stopping.cc + results.cc) uses confidence 0.99 and
tolerance d = 0.0 (its odds are evaluated at p - d = p, so the tolerance plays no part in these
numbers); it starts from t = 1 over-latency query and requires n >= h_min(t=1) + 1, where h_min is
the fewest under-latency queries making P(at most t over-latency in h + t) <= 1 - c. So MLPerf's
counts are what this formula gives when one query may exceed the bound, i.e. LoadGen's estimate is
one order statistic more conservative than the exact binomial rank. `min_queries_for_percentile`
defaults to tolerated=1 so its numbers match MLPerf; tolerated=0 gives the exact minimum.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _fraction(p: float) -> float:
    """Accept 0.9 or 90 for the 90th percentile."""
    if 0 < p < 1:
        return float(p)
    if 1 < p < 100:
        return float(p) / 100
    raise ValueError(f"percentile must be in (0, 1) or (1, 100), got {p}")


def _check_confidence(c: float) -> None:
    if not 0 < c < 1:
        raise ValueError(f"confidence must be in (0, 1), got {c}")


def min_queries_for_percentile(p: float, confidence: float = 0.99, tolerated: int = 1) -> int:
    """Fewest queries for a p-percentile claim at `confidence` with `tolerated` queries over the
    bound: smallest n with P(Binomial(n, p) >= n - tolerated) <= 1 - confidence.
    tolerated=1 (default) reproduces MLPerf's 64 (p90) / 662 (p99); tolerated=0 gives 44 / 459."""
    from scipy.stats import binom

    q = _fraction(p)
    _check_confidence(confidence)
    if tolerated < 0:
        raise ValueError(f"tolerated must be >= 0, got {tolerated}")
    alpha = 1 - confidence
    n = max(tolerated + 1, math.ceil(math.log(alpha) / math.log(q)))  # the tolerated=0 answer is a lower bound
    # P(Bin(n, q) >= n - t) = P(Bin(n, 1 - q) <= t) decreases in n; step up (gallop, then bisect).
    def ok(m: int) -> bool:
        return binom.cdf(tolerated, m, 1 - q) <= alpha

    lo, hi = n, n
    while not ok(hi):
        lo, hi = hi + 1, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def early_stopping_rank(n: int, p: float, confidence: float = 0.99) -> int | None:
    """1-based rank k of the order statistic x_(k) that upper-bounds the true p-quantile with
    `confidence` (smallest k with P(Binomial(n, p) <= k - 1) >= confidence), or None if k > n."""
    from scipy.stats import binom

    q = _fraction(p)
    _check_confidence(confidence)
    if n < 1:
        return None
    k = int(binom.ppf(confidence, n, q)) + 1
    # ppf is the smallest j with cdf(j) >= c; guard the floating-point edge.
    while k > 1 and binom.cdf(k - 2, n, q) >= confidence:
        k -= 1
    while k <= n and binom.cdf(k - 1, n, q) < confidence:
        k += 1
    return k if k <= n else None


def early_stopping_estimate(latencies: Sequence[float] | np.ndarray, p: float,
                            confidence: float = 0.99) -> float | None:
    """The latency that the true p-percentile is at most, with `confidence` (conservative order
    statistic, see module docstring), or None when there are too few latencies."""
    x = np.sort(np.asarray(latencies, dtype=np.float64))
    k = early_stopping_rank(len(x), p, confidence)
    return None if k is None else float(x[k - 1])


def check_validity(latencies: Sequence[float] | np.ndarray, duration_s: float,
                   min_duration_s: float = 0.0, min_queries: int | None = None,
                   percentile: float = 90, latency_bound_s: float | None = None,
                   confidence: float = 0.99) -> dict:
    """Each validity sub-check, an overall `valid` flag and human-readable reasons for failures.

    Checks: min_duration (duration_s >= min_duration_s); min_queries (count >= min_queries, default
    min_queries_for_percentile(percentile, confidence), i.e. MLPerf's 64 / 662); early_stopping (the
    early-stopping estimate exists and, when a bound is given, is <= latency_bound_s); and
    latency_constraint (the observed percentile, numpy linear interpolation, <= latency_bound_s; passes
    trivially without a bound). `latencies` and bounds are in seconds.
    """
    x = np.asarray(latencies, dtype=np.float64)
    n = int(x.size)
    q = _fraction(percentile)
    need = min_queries if min_queries is not None else min_queries_for_percentile(q, confidence)
    observed = float(np.percentile(x, q * 100)) if n else None
    estimate = early_stopping_estimate(x, q, confidence)
    label = f"p{q * 100:g}"
    reasons: list[str] = []

    duration_ok = duration_s >= min_duration_s
    if not duration_ok:
        reasons.append(f"duration {duration_s:.3g} s < minimum {min_duration_s:.3g} s")
    count_ok = n >= need
    if not count_ok:
        reasons.append(f"{n} queries < minimum {need} for a {label} claim")
    if estimate is None:
        es_ok = False
        reasons.append(f"too few queries ({n}) for an early-stopping {label} bound at "
                       f"{confidence:.0%} confidence (need {min_queries_for_percentile(q, confidence, 0)})")
    else:
        es_ok = latency_bound_s is None or estimate <= latency_bound_s
        if not es_ok:
            reasons.append(f"early-stopping {label} estimate {estimate:.4g} s > bound {latency_bound_s:.4g} s")
    if latency_bound_s is None or observed is None:
        lat_ok = observed is not None
        if observed is None:
            reasons.append("no latencies")
    else:
        lat_ok = observed <= latency_bound_s
        if not lat_ok:
            reasons.append(f"observed {label} {observed:.4g} s > bound {latency_bound_s:.4g} s")
    checks = {"min_duration": duration_ok, "min_queries": count_ok, "early_stopping": es_ok,
              "latency_constraint": lat_ok}
    return {
        "valid": all(checks.values()),
        "checks": checks,
        "reasons": reasons,
        "count": n,
        "duration_s": duration_s,
        "min_duration_s": min_duration_s,
        "min_queries": need,
        "percentile": q * 100,
        "confidence": confidence,
        "observed_percentile_s": observed,
        "early_stopping_estimate_s": estimate,
        "early_stopping_rank": early_stopping_rank(n, q, confidence),
        "latency_bound_s": latency_bound_s,
    }
