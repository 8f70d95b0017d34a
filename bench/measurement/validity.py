"""MLPerf-style validity: enough time, enough queries, and a percentile claim backed by early stopping.

The early-stopping estimate is the k-th smallest latency X_(k) with k the smallest rank such that
P(Binomial(n, p) >= k) <= 1 - c: the true p-quantile lies below X_(k) with confidence c. The smallest
n for which such a k exists is 44 for p90 and 459 for p99 at c = 0.99 (n >= ln(1-c)/ln(p)). MLPerf
LoadGen's 64 and 662 are the counts at which one query may exceed the bound (t = 1); its tolerance is 0.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def conservative_percentile(latencies: list[float] | np.ndarray, p: float, confidence: float = 0.99) -> float | None:
    """An upper bound on the true p-quantile that holds with `confidence`, or None if n is too small."""
    x = np.sort(np.asarray(latencies, dtype=float))
    n = len(x)
    if n == 0:
        return None
    k = int(sps.binom.ppf(confidence, n, p)) + 1  # 1-based rank
    return float(x[k - 1]) if k <= n else None


def min_queries_for_percentile(p: float, confidence: float = 0.99) -> int:
    n = 1
    while conservative_percentile(np.arange(n), p, confidence) is None:
        n += 1
    return n


def check_validity(latencies_s: list[float], duration_s: float, min_duration_s: float, min_queries: int,
                   percentile: float, latency_bound_s: float | None, confidence: float = 0.99) -> dict:
    """Each sub-check and an overall `valid` flag, with reasons for every failed check."""
    n = len(latencies_s)
    bound_estimate = conservative_percentile(latencies_s, percentile, confidence)
    checks = {
        "min_duration": duration_s >= min_duration_s,
        "min_queries": n >= min_queries,
        "early_stopping": bound_estimate is not None,
        "latency_bound": bool(latency_bound_s is None or (bound_estimate is not None and bound_estimate <= latency_bound_s)),
    }
    reasons = []
    if not checks["min_duration"]:
        reasons.append(f"ran {duration_s:.2f} s < minimum {min_duration_s:g} s")
    if not checks["min_queries"]:
        reasons.append(f"{n} queries < minimum {min_queries}")
    if not checks["early_stopping"]:
        reasons.append(f"{n} queries cannot bound p{percentile * 100:g} at {confidence:.0%} confidence "
                       f"(needs {min_queries_for_percentile(percentile, confidence)})")
    elif not checks["latency_bound"]:
        reasons.append(f"p{percentile * 100:g} upper bound {bound_estimate * 1e3:.1f} ms > bound {latency_bound_s * 1e3:.1f} ms")
    return {"valid": all(checks.values()), "checks": checks, "reasons": reasons,
            "percentile": percentile, "confidence": confidence,
            "conservative_percentile_s": bound_estimate}
