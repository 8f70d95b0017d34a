"""Arrival schedules generated up front from a seed, as MLPerf's server scenario does."""

from __future__ import annotations

import numpy as np


def arrival_schedule(rate_qps: float, n: int, seed: int, distribution: str = "poisson",
                     burstiness: float = 1.0) -> np.ndarray:
    """Offsets in seconds of `n` arrivals at mean rate `rate_qps`.

    Poisson: exponential gaps. Gamma: gaps with shape `burstiness` and the same mean (shape 1 is
    Poisson; below 1 is burstier, above 1 is more regular).
    """
    if rate_qps <= 0 or n <= 0:
        raise ValueError("rate and count must be positive")
    rng = np.random.default_rng(seed)
    mean_gap = 1.0 / rate_qps
    if distribution == "poisson":
        gaps = rng.exponential(mean_gap, n)
    elif distribution == "gamma":
        gaps = rng.gamma(burstiness, mean_gap / burstiness, n)
    else:
        raise ValueError(f"unknown arrival distribution {distribution!r}")
    return np.cumsum(gaps)
