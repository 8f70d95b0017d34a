"""Traffic generators. A driver issues queries and takes the time; it knows nothing of models, and the
system under test knows nothing of timing.

`bench` (ours, the default) and `loadgen` (MLPerf LoadGen, the generator MLPerf audits) implement the same
patterns; a scenario's `driver` option picks one.

- Queries on a prepared batch (the single-stream and offline scenarios): the system is plain callables.
- Requests (the serving scenarios): the system is a `ServingSystem` (bench/serving/requests.py), e.g. an engine
  (bench/serving/engines) over a session. `open_loop`, `closed_loop` and `burst` send it the workload's requests
  and return a `LoadResult` (bench/serving/loads.py) whatever the driver, so the same engines are driven by ours
  and by LoadGen. A driver declares the patterns it has (`patterns`) and the arrival distributions of its open
  loop (`distributions`); `pattern_refusal` says at plan time why one is missing.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from ..errors import Unsupported
from ..measurement.server import BatchingPolicy
from ..measurement.timing import NO_WINDOW, LoopSettings, OfflineTiming, TimedSamples, WindowHook
from ..registry import Registry
from ..serving.loads import LoadResult
from ..serving.requests import Request, ServingSystem

OnToken = Callable[[int], None]
PATTERNS = ("open-loop", "closed-loop", "burst")


class Driver:
    install: ClassVar[str | None] = None  # the command that makes an unavailable driver available
    patterns: ClassVar[frozenset[str]] = frozenset()  # of PATTERNS: the request load patterns it has
    distributions: ClassVar[frozenset[str]] = frozenset()  # the open loop's arrival distributions

    @classmethod
    def missing(cls) -> str | None:
        """Why this driver cannot run here (a package not installed), or None."""
        return None

    @classmethod
    def pattern_refusal(cls, pattern: str, distribution: str | None = None) -> str | None:
        """Why this driver cannot send requests in `pattern` (with open-loop arrivals from `distribution`), or None."""
        if pattern not in cls.patterns:
            return f"the {cls.__name__} has no {pattern} (it has {', '.join(sorted(cls.patterns)) or 'none'})"
        if pattern == "open-loop" and distribution is not None and distribution not in cls.distributions:
            return (f"the {cls.__name__} draws open-loop arrivals from {', '.join(sorted(cls.distributions))}, "
                    f"not {distribution}")
        return None

    def _refuse(self, pattern: str, distribution: str | None = None) -> None:
        reason = self.pattern_refusal(pattern, distribution)
        if reason:
            raise Unsupported(reason)

    # --- queries on a prepared batch -------------------------------------------------------------------

    def single_stream(self, issue: Callable[[], None], settings: LoopSettings) -> TimedSamples:
        """One query at a time, the next issued when the last completes. Every pattern tells `settings.window`
        (the others: `window`) when its timed traffic starts and ends."""
        raise NotImplementedError

    def offline(self, issue_batch: Callable[[int], None], batch_size: int, settings: LoopSettings) -> OfflineTiming:
        """Every sample issued at once; the system serves them in batches of at most `batch_size`."""
        raise NotImplementedError

    # --- requests to a serving system ------------------------------------------------------------------

    def open_loop(self, system: ServingSystem, requests: list[Request], rate: float, seed: int,
                  distribution: str = "poisson", burstiness: float = 1.0, deadline_s: float | None = None,
                  max_backlog: int | None = None, window: WindowHook = NO_WINDOW) -> LoadResult:
        """Requests arriving on a seeded schedule at mean `rate` per second, latency from the scheduled arrival;
        stops early past `max_backlog` requests sent and not done (over-saturated) or at `deadline_s`, the unserved
        counted as failures (bench/serving/loads.py)."""
        self._refuse("open-loop", distribution)
        raise NotImplementedError

    def closed_loop(self, system: ServingSystem, requests: list[Request], users: int,
                    deadline_s: float | None = None, window: WindowHook = NO_WINDOW) -> LoadResult:
        """`users` requests in flight, each completion sending the next."""
        self._refuse("closed-loop")
        raise NotImplementedError

    def burst(self, system: ServingSystem, requests: list[Request], deadline_s: float | None = None,
              window: WindowHook = NO_WINDOW) -> LoadResult:
        """Every request at once: the system's maximum throughput."""
        self._refuse("burst")
        raise NotImplementedError

    # --- the `server` scenario of batches of the prepared inputs ---------------------------------------

    def server(self, serve: Callable[[int, OnToken], None], rate_qps: float, count: int, seed: int,
               distribution: str, burstiness: float, policy: BatchingPolicy, deadline_s: float,
               window: WindowHook = NO_WINDOW) -> list[dict]:
        """Requests arriving at `rate_qps`, each one sample of the prepared batch, served by `serve(n, on_token)`
        through the single or static engine (the policy's); one dict per served request (measurement/server.py's
        fields). Whether a request streams tokens is found by one untimed probe call first (LoadGen must know it
        before its test). What `serve` raised is raised after the run. It goes with the scenario that calls it."""
        from ..serving.engines import EngineSettings, engines

        probe: list[int] = []
        serve(1, probe.append)
        session = _ServeCallable(serve)
        engine = "static" if policy.kind == "dynamic" else "single"
        system = engines.get(engine)().build(session, EngineSettings(max_batch=policy.max_batch_size,
                                                                     max_wait_s=policy.max_wait_s))
        requests = [Request(index=i, prompt_ids=(0,), output_tokens=len(probe)) for i in range(count)]
        system.start()
        try:
            result = self.open_loop(system, requests, rate_qps, seed, distribution, burstiness,
                                    deadline_s=deadline_s, window=window)
        finally:
            system.stop()
        if session.error is not None:
            raise session.error
        return _server_records(result)


class _ServeCallable:
    """A session whose every batch is `serve(n, on_token)` on the first n rows of the prepared inputs (what the
    old server scenario serves); it keeps the first exception `serve` raised."""

    def __init__(self, serve: Callable[[int, OnToken], None]):
        self.serve, self.error = serve, None

    def _call(self, rows: int, on_token: OnToken) -> None:
        try:
            self.serve(rows, on_token)
        except Exception as exc:
            self.error = self.error or exc
            raise

    def generate_batch(self, prompts: Sequence, output_tokens: list[int], on_token: Callable[[int, int], None],
                       stop_at_eos: Any = None) -> None:
        self._call(len(prompts), lambda i: [on_token(row, 1) for row in range(len(prompts))])

    def embed_batch(self, prompts: Sequence) -> dict:
        self._call(len(prompts), lambda i: None)
        return {}


def _server_records(result: LoadResult) -> list[dict]:
    """The served requests as the server scenario's records, in seconds from the schedule's start, by arrival."""
    origin = result.started_ns
    records = []
    for t in sorted((t for t in result.timings if t.ok), key=lambda t: t.scheduled_ns):
        scheduled, done = (t.scheduled_ns - origin) / 1e9, (t.done_ns - origin) / 1e9
        start = (t.info["batch_started_ns"] - origin) / 1e9
        tokens = [at_ns for at_ns, count in t.token_ns if count > 0]
        records.append({"scheduled_s": scheduled, "start_s": start, "done_s": done, "latency_s": done - scheduled,
                        "queue_s": start - scheduled,
                        "ttft_s": (tokens[0] - t.scheduled_ns) / 1e9 if tokens else None,
                        "batch_size": t.info["batch_size"]})
    return records


def timed(window: WindowHook, run: Callable[[], LoadResult]) -> LoadResult:
    """`run()` inside the timed window."""
    window.opened()
    try:
        return run()
    finally:
        window.closed()

    # Serving patterns over a system that takes requests (bench/serving): each returns serving.loads.LoadResult.
    def open_loop(self, system, requests, rate: float, seed: int, distribution: str, burstiness: float,
                  deadline_s: float | None, max_backlog: int | None = None):
        """Requests sent at seeded arrival times whatever the system is doing; latency from the scheduled arrival."""
        raise NotImplementedError

    def closed_loop(self, system, requests, users: int, deadline_s: float | None):
        """`users` requests in flight, each sent when one completes."""
        raise NotImplementedError

    def burst(self, system, requests, deadline_s: float | None):
        """Every request at once."""
        raise NotImplementedError


drivers: Registry[type[Driver]] = Registry("driver", "bench.drivers")
