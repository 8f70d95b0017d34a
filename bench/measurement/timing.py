"""The timed loop. It knows nothing of models: it calls a zero-argument function that returns when done."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class LoopSettings:
    warmup_iterations: int = 5
    warmup_s: float = 1.0
    min_iterations: int = 64
    min_duration_s: float = 5.0
    max_duration_s: float = 120.0
    instability_cv: float = 0.10
    seed: int = 0  # for scenarios that draw random schedules


@dataclass
class TimedSamples:
    samples_ns: list[int]
    wall_ns: int  # first start to last end: includes the loop's own overhead
    warmup_iterations: int
    warmup_ns: int
    stopped_by_max_duration: bool

    @property
    def count(self) -> int:
        return len(self.samples_ns)


def warm_up(fn: Callable[[], object], iterations: int, seconds: float) -> tuple[int, int]:
    """Run until both the iteration count and the time are reached; returns (count, ns)."""
    start = time.perf_counter_ns()
    count = 0
    while count < iterations or (time.perf_counter_ns() - start) < seconds * 1e9:
        fn()
        count += 1
    return count, time.perf_counter_ns() - start


def time_loop(fn: Callable[[], object], settings: LoopSettings) -> TimedSamples:
    """Warm up, then time each call until both the minimum count and duration are met.

    The garbage collector is paused inside the timed window (as `timeit` does) so a collection
    triggered by the harness's own bookkeeping is not charged to the model.
    """
    warm_count, warm_ns = warm_up(fn, settings.warmup_iterations, settings.warmup_s)
    samples: list[int] = []
    append = samples.append
    clock = time.perf_counter_ns
    min_ns, max_ns = settings.min_duration_s * 1e9, settings.max_duration_s * 1e9
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        first = clock()
        end = first
        while True:
            t0 = clock()
            fn()
            end = clock()
            append(end - t0)
            elapsed = end - first
            if len(samples) >= settings.min_iterations and elapsed >= min_ns:
                stopped = False
                break
            if elapsed >= max_ns:
                stopped = True
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return TimedSamples(samples, end - first, warm_count, warm_ns, stopped)
