"""The timed loop. It knows nothing of models: it calls a zero-argument function that returns when done."""

from __future__ import annotations

import gc
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


class WindowHook:
    """Told when the timed traffic starts and when it ends, so a meter can read its counters over exactly that
    window (warm-up, sizing runs and peak probes left outside); MLPerf's power runs work alike, LoadGen marking
    only where its run begins and ends. Traffic never depends on who listens: this default does nothing. A
    window opened again replaces the one before (LoadGen's driver repeats a run it finds too short)."""

    def opened(self) -> None:
        """The timed traffic starts now."""

    def closed(self) -> None:
        """The timed traffic has ended."""


NO_WINDOW = WindowHook()


@dataclass
class LoopSettings:
    warmup_iterations: int = 5
    warmup_s: float = 1.0
    min_iterations: int = 64
    min_duration_s: float = 5.0
    max_duration_s: float = 120.0
    instability_cv: float = 0.10
    seed: int = 0  # for scenarios that draw random schedules
    window: WindowHook = NO_WINDOW  # told the timed window's edges (the runner's energy meter)


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


@contextmanager
def gc_paused() -> Iterator[None]:
    """The garbage collector off for a timed window, so a collection of the harness's garbage is not charged
    to the model (as `timeit` does); restored to what it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    with gc_paused():
        settings.window.opened()
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
        settings.window.closed()
    return TimedSamples(samples, end - first, warm_count, warm_ns, stopped)


@dataclass
class OfflineTiming:
    """All samples issued at time zero; `completions_ns[i]` is when the i-th batch finished, from the issue."""

    samples: int
    batch_sizes: list[int]
    completions_ns: list[int]
    warmup_iterations: int
    warmup_ns: int
    stopped_by_max_duration: bool

    @property
    def wall_ns(self) -> int:
        return self.completions_ns[-1] if self.completions_ns else 0

    @property
    def served(self) -> int:
        return sum(self.batch_sizes)

    def sample_latencies_ns(self) -> list[int]:
        """Each sample's latency: the completion of its batch, counted from the one issue of everything."""
        return [done for done, size in zip(self.completions_ns, self.batch_sizes) for _ in range(size)]


def offline_loop(issue_batch: Callable[[int], object], batch_size: int, settings: LoopSettings) -> OfflineTiming:
    """MLPerf's offline pattern: size the sample set from the warm-up so it fills the minimum duration (and
    the minimum count of batches), issue it all at once, and let the system serve it in full batches.

    The size comes from the fastest warm-up batch, not the mean: a slow first call (lazy initialisation)
    would otherwise make the set too small to fill the minimum duration.
    """
    clock = time.perf_counter_ns
    warm_times: list[int] = []
    warm_start = clock()
    while len(warm_times) < settings.warmup_iterations or clock() - warm_start < settings.warmup_s * 1e9:
        t0 = clock()
        issue_batch(batch_size)
        warm_times.append(clock() - t0)
    warm_ns = clock() - warm_start
    batches = settings.min_iterations
    if warm_times and min(warm_times) > 0:
        batches = max(batches, math.ceil(settings.min_duration_s * 1e9 / min(warm_times)))
    samples = batches * batch_size
    sizes: list[int] = []
    completions: list[int] = []
    max_ns = settings.max_duration_s * 1e9
    stopped = False
    with gc_paused():
        settings.window.opened()
        start = clock()
        remaining = samples
        while remaining > 0:
            n = min(batch_size, remaining)
            issue_batch(n)
            completions.append(clock() - start)
            sizes.append(n)
            remaining -= n
            if remaining and completions[-1] >= max_ns:
                stopped = True
                break
        settings.window.closed()
    return OfflineTiming(samples, sizes, completions, len(warm_times), warm_ns, stopped)
