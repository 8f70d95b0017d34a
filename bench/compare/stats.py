"""One rule for every ratio we publish: an estimate, a 95% confidence interval and a verdict.

The unit of replication is the process, not the query
-----------------------------------------------------
A point's queries in one process share that process's state (memory layout, thread placement, clocks, the
neighbours on the machine). On a shared 2-core machine one point run in six processes gave medians from
155 to 171 ms: a test on the queries of one process per side calls that spread significant. So a side is a
list of processes (one record each; `bench run --repeat N` makes N), and the rule depends on how many:

* Both sides have 2 or more processes: the test is BETWEEN PROCESSES. p comes from Welch's t-test on the
  logs of the per-process statistics (a log, because the effect is a ratio); the interval from a
  hierarchical bootstrap that resamples the processes, then each drawn process's queries.
* Otherwise: the test is WITHIN A PROCESS. p comes from a Mann-Whitney U test on the queries, the interval
  from the same bootstrap (which then resamples queries only). Tables say "1 v 1 processes": such a verdict
  speaks for query-to-query noise only, and a difference of a few % may be process-to-process noise.

A row is `faster` or `slower` only when all three hold: p < 0.05, the interval excludes 1, and the ratio is
at least the minimum effect away from 1 (default 2%, as pyperf's --min-speed and asv's --factor discard
changes too small to matter). Otherwise it is `n.s.`.

Why these choices. Mann-Whitney U is distribution-free and what asv applies to raw samples, but on a few
per-process values it cannot speak: with 3 processes a side its smallest two-sided p is 2 / C(6, 3) = 0.1,
so at `--repeat 3` it could never find a difference (asv itself uses it only where it can reach its
threshold). Welch's t works from 2 processes a side. The percentile bootstrap over few processes is too
narrow (3 processes give 10 distinct resampled sets), so it is never the only judge; requiring both the
test and the interval guards each against the other's weakness.

The statistics: `median` (latency; a process contributes its median, a side the mean of its processes'
medians) and `rate` (throughput; a process contributes the items/s it recorded). A process's bootstrap
draws of its median come from the exact bootstrap distribution of a sample median,
P(median* <= x_(j)) = P(Binomial(n, j/n) >= ceil(n/2)), which equals resampling the queries at O(n) instead
of O(draws x n); draws of its rate scale the rate by mean / mean*, with mean* from the central limit
theorem (closed-loop scenarios: a rate is batch / mean service time). Every bootstrap is seeded: the same
inputs give the same interval, whatever else the report computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
MIN_EFFECT = 0.02
DRAWS = 4000
SEED = 0
Statistic = Literal["median", "rate"]
Verdict = Literal["faster", "slower", "n.s."]


@dataclass(frozen=True)
class Run:
    """One process's measurement of a point: its per-query latencies (sorted) and the rate it recorded."""

    samples_ms: np.ndarray
    rate: float | None = None

    @classmethod
    def of(cls, samples_ms: Sequence[float], rate: float | None = None) -> Run:
        return cls(np.sort(np.asarray(samples_ms, dtype=np.float64)), rate)

    def centre(self, statistic: Statistic) -> float:
        return float(np.median(self.samples_ms)) if statistic == "median" else float(self.rate)

    def draws(self, statistic: Statistic, size: int, rng: np.random.Generator) -> np.ndarray:
        """`size` draws from the bootstrap distribution of this process's statistic."""
        x = self.samples_ms
        n = len(x)
        if statistic == "median":
            cdf = sps.binom.sf(math.ceil(n / 2) - 1, n, np.arange(1, n + 1) / n)
            return x[np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)]
        mean, sd = float(x.mean()), float(x.std(ddof=1)) if n > 1 else 0.0
        means = mean + sd / math.sqrt(n) * rng.standard_normal(size)
        return self.rate * mean / np.maximum(means, mean * 1e-3)


@dataclass(frozen=True)
class Comparison:
    """NEW against BASE for one statistic: ratio = NEW / BASE of the side centres, with its interval."""

    statistic: Statistic
    base: float
    new: float
    ratio: float
    low: float
    high: float
    p: float
    between_processes: bool
    base_processes: int
    new_processes: int
    verdict: Verdict

    @property
    def test(self) -> str:
        return "between processes" if self.between_processes else "within process only"

    @property
    def processes(self) -> str:
        return f"{self.new_processes} v {self.base_processes}"

    def speedup(self) -> tuple[float, float, float]:
        """(value, low, high) oriented so that above 1 means NEW is better: inverted for latencies."""
        if self.statistic == "median":
            return 1 / self.ratio, 1 / self.high, 1 / self.low
        return self.ratio, self.low, self.high


def _side(runs: Sequence[Run], statistic: Statistic, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The side's centre (mean over processes) and its hierarchical bootstrap replicates."""
    k = len(runs)
    draws = np.stack([r.draws(statistic, DRAWS * k, rng) for r in runs])  # (process, draw)
    picks = rng.integers(0, k, size=(DRAWS, k))  # processes resampled with replacement
    slots = np.arange(DRAWS * k).reshape(DRAWS, k)  # a fresh within-process draw for every pick
    return float(np.mean([r.centre(statistic) for r in runs])), draws[picks, slots].mean(axis=1)


def _p_value(base: Sequence[Run], new: Sequence[Run], statistic: Statistic) -> tuple[float, bool]:
    if len(base) >= 2 and len(new) >= 2:
        a = np.log([r.centre(statistic) for r in base])
        b = np.log([r.centre(statistic) for r in new])
        if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all: the test is undefined, the answer is not
            return (1.0 if a[0] == b[0] else 0.0), True
        return float(sps.ttest_ind(a, b, equal_var=False).pvalue), True
    pooled_a = np.concatenate([r.samples_ms for r in base])
    pooled_b = np.concatenate([r.samples_ms for r in new])
    return float(sps.mannwhitneyu(pooled_a, pooled_b, alternative="two-sided").pvalue), False


def compare(base: Sequence[Run], new: Sequence[Run], statistic: Statistic = "median",
            min_effect: float = MIN_EFFECT, seed: int = SEED) -> Comparison | None:
    """NEW against BASE; None when a side has no process with samples (nothing to test)."""
    base = [r for r in base if len(r.samples_ms) and (statistic == "median" or r.rate)]
    new = [r for r in new if len(r.samples_ms) and (statistic == "median" or r.rate)]
    if not base or not new:
        return None
    rng = np.random.default_rng(seed)
    base_centre, base_reps = _side(base, statistic, rng)
    new_centre, new_reps = _side(new, statistic, rng)
    ratio = new_centre / base_centre
    low, high = (float(v) for v in np.percentile(new_reps / base_reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)]))
    p, between = _p_value(base, new, statistic)
    significant = p < ALPHA and not low <= 1 <= high and max(ratio, 1 / ratio) - 1 >= min_effect
    better = ratio > 1 if statistic == "rate" else ratio < 1
    verdict: Verdict = ("faster" if better else "slower") if significant else "n.s."
    return Comparison(statistic, base_centre, new_centre, ratio, low, high, p, between, len(base), len(new), verdict)
