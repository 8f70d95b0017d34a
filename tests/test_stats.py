"""Statistics on known samples, and the timed loop's stopping rules."""

from __future__ import annotations

import numpy as np
import pytest

from bench.measurement.stats import median_ci, summarize
from bench.measurement.timing import LoopSettings, offline_loop, time_loop
from bench.validity import min_queries


def test_percentiles_on_known_samples():
    s = summarize(list(range(1, 101)))  # 1..100 ms
    assert s.count == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.stdev_ms == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert (s.min_ms, s.max_ms) == (1, 100)
    assert s.percentile_supported == {"p90": True, "p99": False}


def test_median_ci_uses_binomial_order_statistics():
    # n=100 at 95%: the classical distribution-free interval is [x(40), x(61)].
    assert median_ci(np.arange(1, 101)) == (40.0, 61.0)
    assert median_ci(np.arange(1, 65)) == (24.0, 41.0)
    assert median_ci(np.arange(5)) is None  # too few samples for any 95% interval


def test_median_ci_covers_true_median():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        lo, hi = median_ci(np.sort(rng.exponential(1.0, 64)))
        hits += lo <= np.log(2) <= hi
    assert hits / 400 >= 0.93


def test_instability_and_few_samples_are_flagged():
    stable = summarize([10.0, 10.1, 9.9, 10.0] * 20)
    assert not stable.unstable and not stable.warnings
    noisy = summarize([10.0, 14.0] * 40)
    assert noisy.unstable and any(w.startswith("unstable") for w in noisy.warnings)
    few = summarize([10.0] * 10)
    assert any("few samples" in w for w in few.warnings)
    spikes = summarize([10.0] * 50 + [30.0])
    assert any(w.startswith("outliers") for w in spikes.warnings)


def test_loop_meets_both_minimum_count_and_duration():
    calls = []
    timed = time_loop(lambda: calls.append(1), LoopSettings(warmup_iterations=3, warmup_s=0,
                                                            min_iterations=50, min_duration_s=0.05))
    assert timed.warmup_iterations == 3
    assert timed.count >= 50 and timed.wall_ns >= 0.05e9
    assert len(calls) == timed.count + 3
    assert not timed.stopped_by_max_duration


def test_loop_stops_at_max_duration_and_says_so():
    import time

    timed = time_loop(lambda: time.sleep(0.01), LoopSettings(warmup_iterations=0, warmup_s=0, min_iterations=10_000,
                                                             min_duration_s=0, max_duration_s=0.1))
    assert timed.stopped_by_max_duration and timed.count < 10_000


def test_one_early_stopping_rule_gives_mlperfs_counts():
    """The rule tolerates one query over the bound, as LoadGen does: 64 for p90 and 662 for p99, derived."""
    assert min_queries(0.90) == 64 and min_queries(0.99) == 662
    assert min_queries(0.90, tolerance=0) == 44 and min_queries(0.99, tolerance=0) == 459
    assert summarize([1.0] * 63).percentile_supported["p90"] is False
    assert summarize([1.0] * 64).percentile_supported["p90"] is True


def test_suite_default_minimum_comes_from_the_rule():
    from bench.config import Defaults

    assert Defaults().min_iterations == min_queries(0.90)


def test_offline_issues_everything_at_once_and_batches_it():
    sizes = []
    timed = offline_loop(sizes.append, 4, LoopSettings(warmup_iterations=2, warmup_s=0, min_iterations=5,
                                                       min_duration_s=0))
    assert sizes[:2] == [4, 4]  # warm-up batches
    assert timed.samples == 20 and timed.batch_sizes == [4] * 5 and timed.served == 20
    assert timed.completions_ns == sorted(timed.completions_ns)
    latencies = timed.sample_latencies_ns()
    assert len(latencies) == 20 and latencies[:4] == [timed.completions_ns[0]] * 4


def test_offline_sizes_its_sample_set_from_the_fastest_warm_up_batch():
    """A slow first call (lazy initialisation) must not shrink the set below the minimum duration."""
    import time

    calls = []

    def batch(n):
        calls.append(n)
        time.sleep(0.2 if len(calls) == 1 else 0.01)

    timed = offline_loop(batch, 2, LoopSettings(warmup_iterations=2, warmup_s=0, min_iterations=1,
                                                min_duration_s=0.1))
    # sized from the fastest warm-up (>= 10 ms): several batches; the mean (105 ms) would have sized one
    assert len(timed.batch_sizes) >= 4 and timed.samples == 2 * len(timed.batch_sizes)
