"""Arrival schedules for open-loop (server) load, generated up front from a seeded numpy Generator.

Generating every arrival before the run keeps the schedule independent of how fast the SUT is
(open loop, as MLPerf LoadGen's Server scenario does) and makes a run reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("poisson", "gamma")


def _intervals(rng: np.random.Generator, count: int, rate_qps: float, distribution: str,
               burstiness: float) -> np.ndarray:
    mean = 1.0 / rate_qps
    if distribution == "poisson":
        return rng.exponential(mean, count)
    # Gamma(shape=k, scale=mean/k): mean interval 1/rate, coefficient of variation 1/sqrt(k).
    return rng.gamma(burstiness, mean / burstiness, count)


def arrival_schedule(rate_qps: float, n: int | None = None, duration_s: float | None = None,
                     seed: int = 0, distribution: str = "poisson", burstiness: float = 1.0) -> np.ndarray:
    """Arrival offsets in seconds from the start of the run, ascending, first arrival at 0.0.

    Give exactly one of `n` (that many arrivals) or `duration_s` (every arrival with offset
    < duration_s). Inter-arrival intervals are i.i.d. with mean 1/rate_qps:
    "poisson" -> exponential (a Poisson process; `burstiness` must be 1.0);
    "gamma"   -> Gamma(shape=burstiness, scale=1/(rate*burstiness)); shape 1 is the exponential,
                 shape < 1 is burstier (interval CV = 1/sqrt(burstiness) > 1), shape > 1 smoother
                 (vLLM's `--burstiness` convention).
    The same (rate, n or duration, seed, distribution, burstiness) always gives the same array.
    The empirical rate is (len - 1) / offsets[-1] for an n-arrival schedule.
    """
    if not rate_qps > 0:
        raise ValueError(f"rate_qps must be > 0, got {rate_qps}")
    if (n is None) == (duration_s is None):
        raise ValueError("give exactly one of n or duration_s")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if distribution == "poisson" and burstiness != 1.0:
        raise ValueError("burstiness applies to distribution='gamma' (poisson is gamma with shape 1)")
    rng = np.random.default_rng(seed)
    if n is not None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return np.zeros(0)
        gaps = _intervals(rng, n - 1, rate_qps, distribution, burstiness)
        return np.concatenate([[0.0], np.cumsum(gaps)])
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    # Draw in chunks until the cumulative time passes the duration (chunk size depends only on the
    # arguments, so the result is deterministic for a given seed).
    offsets = [np.zeros(1)]
    last = 0.0
    chunk = max(16, int(rate_qps * duration_s * 1.2) + 16)
    while last < duration_s:
        cum = last + np.cumsum(_intervals(rng, chunk, rate_qps, distribution, burstiness))
        offsets.append(cum)
        last = float(cum[-1])
    out = np.concatenate(offsets)
    return out[out < duration_s]
