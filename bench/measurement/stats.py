"""Summary statistics of latency samples, with the sample-size and stability warnings pyperf taught us."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from ..records.schema import LatencySummary
from ..validity import min_queries

CLAIMS = (90, 99)  # percentiles whose support a summary reports (the rule: bench/validity.py)


def median_ci(sorted_values: np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval for the median from binomial order statistics."""
    n = len(sorted_values)
    # Largest 1-based rank j with P(Binomial(n, 1/2) <= j - 1) < alpha/2; [x_(j), x_(n-j+1)] covers.
    j = int(sps.binom.ppf((1 - confidence) / 2, n, 0.5))
    if j < 1:
        return None
    return float(sorted_values[j - 1]), float(sorted_values[n - j])


def summarize(samples_ms: list[float] | np.ndarray, instability_cv: float = 0.10) -> LatencySummary:
    """Percentiles, spread, a median CI and warnings for a list of per-query latencies in ms."""
    x = np.sort(np.asarray(samples_ms, dtype=np.float64))
    n = len(x)
    if n == 0:
        return LatencySummary(count=0, warnings=["no samples"])
    mean = float(x.mean())
    stdev = float(x.std(ddof=1)) if n > 1 else 0.0
    pct = {f"p{p}_ms": float(np.percentile(x, p)) for p in (50, 90, 95, 99)}
    ci = median_ci(x)
    cv = stdev / mean if mean > 0 else math.nan
    warnings = []
    if cv >= instability_cv:
        warnings.append(f"unstable: stdev is {cv:.0%} of the mean (threshold {instability_cv:.0%})")
    if mean > 0 and (x[0] < 0.5 * mean or x[-1] > 1.5 * mean):
        warnings.append("outliers: min or max is 50% or more away from the mean")
    supported = {f"p{p}": n >= min_queries(p / 100) for p in CLAIMS}
    if not supported["p90"]:
        warnings.append(f"few samples: {n} < {min_queries(0.90)} needed to support a p90 claim")
    return LatencySummary(count=n, mean_ms=mean, stdev_ms=stdev, cv=None if math.isnan(cv) else cv,
                          min_ms=float(x[0]), max_ms=float(x[-1]), **pct, median_ci95_ms=ci,
                          percentile_supported=supported, unstable=bool(cv >= instability_cv), warnings=warnings)
