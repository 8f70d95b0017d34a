"""MLPerf LoadGen as the traffic driver: the generator MLPerf audits issues the queries and takes the time.

How the patterns map onto LoadGen (performance mode, the run's seed for all of LoadGen's seeds):
- single-stream: LoadGen's SingleStream. One LoadGen query (one sample) is one query of the point, i.e. one
  batch; it is served inside IssueQuery and completed there, so LoadGen issues the next at once.
- offline: LoadGen's Offline. One query carries every sample; the system serves them in batches of at most
  `batch_size` and completes each batch as it finishes.
- requests to a serving system (bench/serving): the query sample library is the workload (sample i is request
  i, each issued once: `performance_issue_unique`); IssueQuery submits each sample's request to the system and
  returns, and the system's callbacks complete it to LoadGen from the system's own threads: `FirstTokenComplete`
  at its first token, `QuerySamplesComplete` (with its token count in token mode) when it is done. So LoadGen
  drives the same engines as our load generator (bench/serving/loads.py) and returns the same `LoadResult`.
  - open loop: LoadGen's Server (seeded Poisson arrivals at the rate; `max_duration_ms` is the deadline);
  - burst: LoadGen's Offline (every request in one query);
  - closed loop: LoadGen has none (its MultiStream sends fixed-size queries in lockstep, not N independent
    users): refused with the reason (`patterns`).
  Each request's E2E and TTFT are LoadGen's own (its trace: completion and first token from its scheduled
  arrival); the other token events are the system's callbacks, stamped on our clock, which LoadGen's times are
  placed on at each request's completion (the same call, so the two clocks meet there). LoadGen issues the
  samples in its own seeded order, not the workload's.
  The `server` scenario of the prepared batch runs through the static engine this way (Driver.server).

The timings are LoadGen's own, read from its logs (logs.py). The logs go to a temporary directory that is
removed afterwards.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import threading
import time
from typing import Callable

from ...measurement.timing import NO_WINDOW, OfflineTiming, TimedSamples, WindowHook, gc_paused, warm_up
from ...serving.loads import Load, LoadResult, RequestTiming
from ...serving.requests import Completion, Request
from .. import Driver, drivers
from .logs import LoadGenLog, check_trace_against_summary, read_detail, read_trace

# LoadGen's seeds are unsigned 64-bit
_SEED_MASK = 2**64 - 1
# LoadGen pre-generates SingleStream and Offline queries from an expected latency or rate and ends early when
# a faster system uses them up. The warm-up's estimate goes first; a run LoadGen finds too short is repeated
# with the latency or rate LoadGen itself measured, up to this many runs; the discarded ones count as warm-up.
_SIZING_RUNS = 3


class _FirstFailure:
    """The first exception the system under test raised. LoadGen calls the SUT from C++ and waits for every
    sample, so an exception cannot unwind through it: the driver completes the samples unserved, lets the
    test end, and raises this afterwards."""

    def __init__(self):
        self.error: BaseException | None = None

    def serve(self, fn: Callable, *args) -> bool:
        if self.error is not None:
            return False
        try:
            fn(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - re-raised after the test by raise_if_any
            self.error = exc
            return False

    def raise_if_any(self) -> None:
        if self.error is not None:
            raise self.error


class _FastestCall:
    """A warm-up function that keeps its fastest call: LoadGen's first SingleStream expectation (see
    _SIZING_RUNS), as an expectation too slow cuts the run short."""

    def __init__(self, fn: Callable[[], object]):
        self.fn, self.ns = fn, None

    def __call__(self) -> None:
        t0 = time.perf_counter_ns()
        self.fn()
        took = time.perf_counter_ns() - t0
        self.ns = took if self.ns is None else min(self.ns, took)


def _complete(lg, samples) -> None:
    lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])


def _ignore_samples(_samples) -> None:
    """The query sample library's load/unload: the system under test holds its inputs already."""


def _run_test(lg, test_settings, issue_query: Callable, failure: _FirstFailure, window: WindowHook,
              samples: int = 1) -> LoadGenLog:
    """One LoadGen test with its logs in a temporary directory, never the working directory; what the system
    under test raised comes first. `window` is told when the test starts and ends (its logs are read after).
    `samples`: the query sample library's size (the requests; one for a prepared batch)."""
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as logdir:
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = logdir
        log_settings.enable_trace = True
        sut = lg.ConstructSUT(issue_query, lambda: None)
        qsl = lg.ConstructQSL(samples, samples, _ignore_samples, _ignore_samples)
        try:
            # an audit.config in the working directory would silently override the settings the record states
            window.opened()
            lg.StartTestWithLogSettings(sut, qsl, test_settings, log_settings, os.path.join(logdir, "audit.config"))
            window.closed()
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        failure.raise_if_any()
        samples = read_trace(os.path.join(logdir, "mlperf_log_trace.json"))
        results, errors = read_detail(os.path.join(logdir, "mlperf_log_detail.txt"))
    check_trace_against_summary(samples, results)
    return LoadGenLog(samples, results, errors)


def _test_settings(lg, scenario, seed: int):
    settings = lg.TestSettings()
    settings.scenario = scenario
    settings.mode = lg.TestMode.PerformanceOnly
    settings.qsl_rng_seed = settings.sample_index_rng_seed = settings.schedule_rng_seed = seed & _SEED_MASK
    return settings


def _duration(settings, loop) -> None:
    settings.min_query_count = loop.min_iterations
    settings.min_duration_ms = math.ceil(loop.min_duration_s * 1e3)
    settings.max_duration_ms = math.ceil(loop.max_duration_s * 1e3)


class _RequestsSut:
    """LoadGen's system under test over a ServingSystem (module docstring). Every sample is answered to LoadGen
    exactly once: by the system's on_done, or, once the run has stopped (deadline, over-saturation), at once and
    unserved; what the system says after that is ignored. All calls into LoadGen for a sample happen under one
    lock with that check, so none comes after its completion."""

    def __init__(self, lg, system, requests: list[Request], token_mode: bool, first_tokens: bool,
                 max_backlog: int | None):
        self.lg, self.system, self.requests = lg, system, requests
        self.token_mode, self.first_tokens, self.max_backlog = token_mode, first_tokens, max_backlog
        self.lock = threading.Lock()
        self.ids: dict[int, int] = {}  # position in the workload -> LoadGen's sample id
        self.sent: dict[int, int] = {}
        self.tokens: dict[int, list[tuple[int, int]]] = {}
        self.done: dict[int, tuple[int, Completion]] = {}
        self.answered: set[int] = set()
        self.stop_reason: str | None = None
        self.stopped_ns: int | None = None
        self.failure = _FirstFailure()

    @property
    def outstanding(self) -> int:
        return len(self.sent) - len(self.answered)

    def issue_query(self, samples) -> None:
        for sample in samples:
            position = sample.index
            with self.lock:
                self.ids[position] = sample.id
                self.sent[position] = time.perf_counter_ns()
                self.tokens[position] = []
                stopped = self.stop_reason is not None
                if stopped:
                    self._give_up(position)
            if not stopped and not self.failure.serve(self.system.submit, self.requests[position],
                                                      self._on_token(position), self._on_done(position)):
                self.stop("the system under test raised")
            if self.max_backlog is not None and self.outstanding > self.max_backlog:
                self.stop(f"over-saturated: {self.outstanding} requests sent and not done > {self.max_backlog} "
                          f"allowed, after {len(self.sent)} sent")

    def _on_token(self, position: int) -> Callable[[int], None]:
        def on_token(count: int) -> None:
            at_ns = time.perf_counter_ns()
            with self.lock:
                if position in self.answered:
                    return
                events = self.tokens[position]
                events.append((at_ns, count))
                if len(events) == 1 and self.first_tokens:
                    self.lg.FirstTokenComplete([self.lg.QuerySampleResponse(self.ids[position], 0, 0)])

        return on_token

    def _on_done(self, position: int) -> Callable[[Completion], None]:
        def on_done(completion: Completion) -> None:
            at_ns = time.perf_counter_ns()
            with self.lock:
                if position in self.answered:
                    return
                self.done[position] = (at_ns, completion)
                self._complete(position, max(1, completion.output_tokens))

        return on_done

    def _complete(self, position: int, tokens: int) -> None:
        """Answer the sample to LoadGen (under the lock), its first token first where LoadGen expects one (a sample
        completed without it corrupts LoadGen's token bookkeeping)."""
        if self.first_tokens and not self.tokens[position]:
            self.lg.FirstTokenComplete([self.lg.QuerySampleResponse(self.ids[position], 0, 0)])
        self.answered.add(position)
        response = (self.lg.QuerySampleResponse(self.ids[position], 0, 0, tokens) if self.token_mode
                    else self.lg.QuerySampleResponse(self.ids[position], 0, 0))
        self.lg.QuerySamplesComplete([response])

    def _give_up(self, position: int) -> None:
        """Answer an unserved sample at once (under the lock): LoadGen waits for every sample it issued."""
        self._complete(position, max(1, self.requests[position].output_tokens))

    def stop(self, reason: str) -> None:
        """Stop serving: every sample sent and not answered, and every one issued from now on, goes unserved."""
        with self.lock:
            if self.stop_reason is not None:
                return
            self.stop_reason, self.stopped_ns = reason, time.perf_counter_ns()
            for position in self.sent:
                if position not in self.answered:
                    self._give_up(position)

    def result(self, log: LoadGenLog, load: Load) -> LoadResult:
        """The run as bench/serving/loads.py reports it, with LoadGen's E2E and TTFT (module docstring)."""
        traced = {s.index: s for s in log.samples}
        timings, origins = [], []
        for position, request in enumerate(self.requests):
            if position not in self.done:
                why = "sent but not completed" if position in self.sent else "never sent"
                timings.append(RequestTiming(index=request.index, sent_ns=self.sent.get(position), done_ns=None,
                                             token_ns=tuple(self.tokens.get(position, ())),
                                             error=f"unserved: {why} ({self.stop_reason})"))
                continue
            done_ns, completion = self.done[position]
            sample = traced[position]
            scheduled_ns = done_ns - sample.latency_ns
            origins.append(scheduled_ns - sample.scheduled_ns)
            events = list(self.tokens[position])
            if events and sample.first_token_ns is not None:
                events[0] = (scheduled_ns + sample.first_token_ns, events[0][1])
            timings.append(RequestTiming(index=request.index, sent_ns=self.sent[position], done_ns=done_ns,
                                         token_ns=tuple(events), output_tokens=completion.output_tokens,
                                         error=completion.error, scheduled_ns=scheduled_ns,
                                         info=dict(completion.info)))
        unserved = any(not t.served for t in timings)
        started_ns = int(statistics.median(origins)) if origins else min(self.sent.values(), default=0)
        return LoadResult(load=load, timings=timings, started_ns=started_ns,
                          stopped_ns=(self.stopped_ns or time.perf_counter_ns()) if unserved else None,
                          stop_reason=self.stop_reason if unserved else None)


def _token_modes(requests: list[Request]) -> tuple[bool, bool]:
    """(LoadGen's token mode, whether samples report their first token): every request generating, and every one
    generating more than one token (LoadGen divides by tokens - 1 for TPOT)."""
    generating = [r.output_tokens > 0 for r in requests]
    if any(generating) and not all(generating):
        raise ValueError("LoadGen runs a test in token mode or not: a workload mixes generation and embedding requests")
    return all(r.output_tokens > 1 for r in requests), all(generating)


def _serve_requests(lg, test, system, requests: list[Request], load: Load, deadline_s: float | None,
                    max_backlog: int | None, window: WindowHook) -> LoadResult:
    """One LoadGen test whose samples are `requests` sent to `system`; stops at `deadline_s` from its start."""
    token_mode, first_tokens = _token_modes(requests)
    test.use_token_latencies = token_mode
    test.performance_issue_unique = True  # sample i is request i, issued once
    sut = _RequestsSut(lg, system, requests, token_mode, first_tokens, max_backlog)
    watchdog = None
    if deadline_s is not None:
        test.max_duration_ms = math.ceil(deadline_s * 1e3)  # LoadGen issues nothing after it
        watchdog = threading.Timer(deadline_s, sut.stop, [f"the {deadline_s:g} s deadline passed"])
        watchdog.daemon = True
        watchdog.start()
    try:
        log = _run_test(lg, test, sut.issue_query, sut.failure, window, samples=len(requests))
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return sut.result(log, load)


@drivers.register("loadgen")
class LoadGenDriver(Driver):
    install = 'pip install -e ".[loadgen]"'
    patterns = frozenset({"open-loop", "burst"})  # no closed loop: see the module docstring
    distributions = frozenset({"poisson"})

    @classmethod
    def pattern_refusal(cls, pattern, distribution=None):
        if pattern == "closed-loop":
            return ("MLPerf LoadGen has no closed loop of N users (its MultiStream sends fixed-size queries in "
                    "lockstep); use driver: bench")
        if pattern == "open-loop" and distribution not in (None, "poisson"):
            return f"MLPerf LoadGen draws only Poisson arrivals, not {distribution}; use driver: bench"
        return super().pattern_refusal(pattern, distribution)

    @classmethod
    def missing(cls) -> str | None:
        try:
            import mlperf_loadgen  # noqa: F401
        except ImportError as exc:
            return f"the loadgen driver needs MLPerf LoadGen (mlperf_loadgen): {exc}"
        return None

    def single_stream(self, issue, settings):
        import mlperf_loadgen as lg

        fastest = _FastestCall(issue)
        warm_count, warm_ns = warm_up(fastest, max(1, settings.warmup_iterations), settings.warmup_s)
        test = _test_settings(lg, lg.TestScenario.SingleStream, settings.seed)
        _duration(test, settings)
        test.single_stream_expected_latency_ns = fastest.ns
        failure = _FirstFailure()

        def issue_query(samples) -> None:
            failure.serve(issue)
            _complete(lg, samples)

        for run in range(_SIZING_RUNS):
            with gc_paused():
                log = _run_test(lg, test, issue_query, failure, settings.window)
            if not log.too_short or run == _SIZING_RUNS - 1:
                break
            warm_count, warm_ns = warm_count + len(log.samples), warm_ns + log.wall_ns
            test.single_stream_expected_latency_ns = log.results["result_min_latency_ns"]
        return TimedSamples([s.latency_ns for s in log.samples], log.wall_ns, warm_count, warm_ns,
                            stopped_by_max_duration=log.ended_early("Max test duration reached"))

    def offline(self, issue_batch, batch_size, settings):
        import mlperf_loadgen as lg

        warm_count, warm_ns = warm_up(lambda: issue_batch(batch_size), max(1, settings.warmup_iterations),
                                      settings.warmup_s)
        test = _test_settings(lg, lg.TestScenario.Offline, settings.seed)
        _duration(test, settings)
        test.min_query_count = settings.min_iterations * batch_size  # Offline counts samples, not queries
        test.offline_expected_qps = batch_size * warm_count * 1e9 / warm_ns
        sizes: list[int] = []
        failure = _FirstFailure()

        def issue_query(samples) -> None:
            began = time.perf_counter()
            done = 0
            # like offline_loop: past max_duration_s the rest are not served (LoadGen still needs them completed)
            while done < len(samples) and time.perf_counter() - began < settings.max_duration_s:
                batch = samples[done:done + batch_size]
                if not failure.serve(issue_batch, len(batch)):
                    break
                _complete(lg, batch)
                sizes.append(len(batch))
                done += len(batch)
            if done < len(samples):
                _complete(lg, samples[done:])

        for run in range(_SIZING_RUNS):
            sizes.clear()
            with gc_paused():
                log = _run_test(lg, test, issue_query, failure, settings.window)
            if not log.too_short or run == _SIZING_RUNS - 1:
                break
            warm_count, warm_ns = warm_count + len(sizes), warm_ns + log.wall_ns
            test.offline_expected_qps = log.results["result_samples_per_second"]
        # every sample of the one query is scheduled at once, so completion order is latency order
        latencies = sorted(s.latency_ns for s in log.samples)
        completions, end = [], 0
        for n in sizes:
            end += n
            completions.append(latencies[end - 1])
        return OfflineTiming(len(log.samples), sizes, completions, warm_count, warm_ns,
                             stopped_by_max_duration=sum(sizes) < len(log.samples))

    def open_loop(self, system, requests, rate, seed, distribution="poisson", burstiness=1.0, deadline_s=None,
                  max_backlog=None, window=NO_WINDOW):
        self._refuse("open-loop", distribution)
        import mlperf_loadgen as lg

        test = _test_settings(lg, lg.TestScenario.Server, seed)
        test.server_target_qps = rate
        test.min_query_count = test.max_query_count = len(requests)
        test.min_duration_ms = 0
        load = Load(pattern="open-loop", rate_per_s=rate, distribution="poisson", seed=seed, deadline_s=deadline_s,
                    max_backlog=max_backlog)
        return _serve_requests(lg, test, system, requests, load, deadline_s, max_backlog, window)

    def burst(self, system, requests, deadline_s=None, window=NO_WINDOW):
        import mlperf_loadgen as lg

        test = _test_settings(lg, lg.TestScenario.Offline, 0)
        test.min_query_count = len(requests)
        test.min_duration_ms = 0
        load = Load(pattern="burst", users=len(requests), deadline_s=deadline_s)
        return _serve_requests(lg, test, system, requests, load, deadline_s, None, window)
