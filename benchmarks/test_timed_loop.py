"""The timed loop's own cost per query: bench's `time_loop` against a bare `for` loop, both calling a no-op, in
one pytest-benchmark group so `pytest-benchmark compare` sets them side by side.

    python -m pytest benchmarks/test_timed_loop.py --benchmark-only

Each round is ITERATIONS calls; per-iteration figures divide a round's time by ITERATIONS. The difference
between the two is what the harness adds to every query it times (two clock reads and an append).
"""

from __future__ import annotations

import statistics

import pytest

from bench.measurement.timing import LoopSettings, time_loop

ITERATIONS = 10_000
ROUNDS = 30
BARE = pytest.StashKey[float]()


def noop() -> None:
    """The cheapest query there is, so the loop's own cost is all that is measured."""


def bare_loop() -> None:
    for _ in range(ITERATIONS):
        noop()


@pytest.mark.benchmark(group="timed-loop")
def test_bare_loop_on_a_noop(benchmark, request):
    benchmark.pedantic(bare_loop, rounds=ROUNDS, warmup_rounds=2)
    request.config.stash[BARE] = benchmark.stats.stats.median / ITERATIONS
    benchmark.extra_info["ns_per_iteration"] = request.config.stash[BARE] * 1e9


@pytest.mark.benchmark(group="timed-loop")
def test_timed_loop_on_a_noop(benchmark, request, verdict):
    settings = LoopSettings(warmup_iterations=0, warmup_s=0.0, min_iterations=ITERATIONS, min_duration_s=0.0)
    timed = benchmark.pedantic(time_loop, args=(noop, settings), rounds=ROUNDS, warmup_rounds=2)
    assert timed.count == ITERATIONS and not timed.stopped_by_max_duration  # each round timed ITERATIONS queries
    per_iteration = benchmark.stats.stats.median / ITERATIONS
    noop_reads = statistics.median(timed.samples_ns)
    benchmark.extra_info.update(ns_per_iteration=per_iteration * 1e9, noop_sample_median_ns=noop_reads)
    bare = request.config.stash.get(BARE, None)
    added = f", {(per_iteration - bare) * 1e9:.0f} ns more than a bare loop" if bare is not None else ""
    verdict(f"timed loop: {per_iteration * 1e9:.0f} ns per iteration{added}; a no-op query reads {noop_reads:.0f} ns")
