"""MLPerf LoadGen as the traffic driver: the generator MLPerf audits issues the queries and takes the time.

How the three patterns map onto LoadGen (performance mode, the run's seed for all of LoadGen's seeds):
- single-stream: LoadGen's SingleStream. One LoadGen query (one sample) is one query of the point, i.e. one
  batch; it is served inside IssueQuery and completed there, so LoadGen issues the next at once.
- offline: LoadGen's Offline. One query carries every sample; the system serves them in batches of at most
  `batch_size` and completes each batch as it finishes.
- server: LoadGen's Server (seeded Poisson arrivals at `rate_qps`, exactly `count` queries). IssueQuery only
  enqueues; one worker thread serves the queue with the point's batching policy, blocking on the queue
  (never spinning: on a 2-core machine a spinning thread steals a core from the model). Streamed
  generation reports its first token with `FirstTokenComplete`, so LoadGen times TTFT as well; since
  LoadGen must be told before the test whether samples stream tokens, one untimed probe request goes first.

The timings are LoadGen's own, read from its logs (logs.py). The logs go to a temporary directory that is
removed afterwards.

LoadGen cannot know two things only the system under test sees: when a server batch started (the record's
`start_s`/`queue_s` are LoadGen's completion minus the batch's service time) and the batch sizes.

Where the server's batching lives: dynamic batching is written twice, here (`_ServerWorker._batch`, for LoadGen's
queue) and in measurement/server.py (`run_server`, for our own driver's schedule), to the same `BatchingPolicy`.
"""

from __future__ import annotations

import math
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ...errors import Unsupported
from ...measurement.timing import NO_WINDOW, OfflineTiming, TimedSamples, WindowHook, gc_paused, warm_up
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


def _run_test(lg, test_settings, issue_query: Callable, failure: _FirstFailure, window: WindowHook) -> LoadGenLog:
    """One LoadGen test with its logs in a temporary directory, never the working directory; what the system
    under test raised comes first. `window` is told when the test starts and ends (its logs are read after)."""
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as logdir:
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = logdir
        log_settings.enable_trace = True
        sut = lg.ConstructSUT(issue_query, lambda: None)
        qsl = lg.ConstructQSL(1, 1, _ignore_samples, _ignore_samples)
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


@dataclass
class _Request:
    sample: Any  # LoadGen's QuerySample
    arrival: int  # issue order, which is LoadGen's sample sequence order
    arrived_s: float  # perf_counter when issued: only for the batching policy's wait


class _ServerWorker:
    """The server's system under test: IssueQuery enqueues, one thread serves with the batching policy.

    `tokens_per_request` is what a probe request streamed: above 0 each batch reports its first token to
    LoadGen; above 1 LoadGen runs in token mode, which needs every sample's first token and token count
    before its completion (a sample completed without them corrupts its token bookkeeping).
    """

    def __init__(self, lg, serve, policy, count: int, deadline_s: float, tokens_per_request: int):
        self.lg, self.serve, self.policy, self.count, self.deadline_s = lg, serve, policy, count, deadline_s
        self.tokens_per_request = tokens_per_request
        self.token_mode = tokens_per_request > 1
        self.queue: queue.Queue[_Request | None] = queue.Queue()
        self.received = 0
        self.started_s = 0.0
        self.served: list[tuple[int, float] | None] = [None] * count  # per arrival: (batch size, service s)
        self.failure = _FirstFailure()
        self.thread = threading.Thread(target=self._serve_forever, name="loadgen-sut", daemon=True)

    def issue_query(self, samples) -> None:
        now = time.perf_counter()
        if self.received == 0:
            self.started_s = now
        for s in samples:
            self.queue.put(_Request(s, self.received, now))
            self.received += 1

    def _batch(self, first: _Request) -> list[_Request]:
        """Dynamic batching: wait until the batch is full or `max_wait_s` after the oldest arrived, then take
        what is waiting; no wait once every request has arrived."""
        batch = [first]
        if self.policy.kind != "dynamic":
            return batch
        wait_until = first.arrived_s + self.policy.max_wait_s
        while len(batch) < self.policy.max_batch_size:
            left = wait_until - time.perf_counter()
            try:
                if left > 0 and self.received < self.count:
                    batch.append(self.queue.get(timeout=left))
                else:
                    batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _first_token(self, samples) -> None:
        self.lg.FirstTokenComplete([self.lg.QuerySampleResponse(s.sample.id, 0, 0) for s in samples])

    def _serve_forever(self) -> None:
        while (first := self.queue.get()) is not None:
            batch = self._batch(first)
            tokens = 0

            def on_token(i: int) -> None:
                nonlocal tokens
                tokens += 1
                if i == 0 and self.tokens_per_request:
                    self._first_token(batch)

            # overloaded past the deadline: the rest go unserved (LoadGen still needs every sample completed)
            past_deadline = time.perf_counter() - self.started_s > self.deadline_s
            began = time.perf_counter()
            ok = not past_deadline and self.failure.serve(self.serve, len(batch), on_token)
            service_s = time.perf_counter() - began
            if not ok:  # unserved samples are dropped from the records; LoadGen's token bookkeeping stays whole
                if self.token_mode and not tokens:
                    self._first_token(batch)
                tokens = self.tokens_per_request
            ids = [r.sample.id for r in batch]
            if self.token_mode:
                self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(i, 0, 0, tokens) for i in ids])
            else:
                self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(i, 0, 0) for i in ids])
            if ok:
                for r in batch:
                    self.served[r.arrival] = (len(batch), service_s)


@drivers.register("loadgen")
class LoadGenDriver(Driver):
    install = 'pip install -e ".[loadgen]"'

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

    def server(self, serve, rate_qps, count, seed, distribution, burstiness, policy, deadline_s, window=NO_WINDOW):
        if distribution != "poisson":
            raise Unsupported(f"MLPerf LoadGen draws only Poisson arrivals, not {distribution}; "
                              "use driver: bench for bursty (gamma) traffic")
        import mlperf_loadgen as lg

        # LoadGen must be told before the test whether samples report tokens; one request finds out
        tokens: list[int] = []
        serve(1, tokens.append)
        test = _test_settings(lg, lg.TestScenario.Server, seed)
        test.server_target_qps = rate_qps
        test.min_query_count = count  # the scenario's count already covers the minimum duration
        test.min_duration_ms = 0
        worker = _ServerWorker(lg, serve, policy, count, deadline_s, len(tokens))
        test.use_token_latencies = worker.token_mode
        worker.thread.start()
        try:
            log = _run_test(lg, test, worker.issue_query, worker.failure, window)
        finally:
            worker.queue.put(None)
            worker.thread.join()
        if len(log.samples) != count or worker.received != count:
            raise RuntimeError(f"LoadGen issued {worker.received} and traced {len(log.samples)} of {count} queries")
        origin = log.samples[0].scheduled_ns
        records = []
        for s, served in zip(log.samples, worker.served):
            if served is None:  # past the deadline
                continue
            size, service_s = served
            scheduled, done = (s.scheduled_ns - origin) / 1e9, (s.done_ns - origin) / 1e9
            start = done - service_s
            records.append({"scheduled_s": scheduled, "start_s": start, "done_s": done,
                            "latency_s": s.latency_ns / 1e9, "queue_s": start - scheduled,
                            "ttft_s": None if s.first_token_ns is None else s.first_token_ns / 1e9,
                            "batch_size": size})
        return records
