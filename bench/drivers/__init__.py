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

from typing import Callable, ClassVar

from ..errors import Unsupported
from ..measurement.timing import NO_WINDOW, LoopSettings, OfflineTiming, TimedSamples, WindowHook
from ..registry import Registry
from ..serving.loads import LoadResult
from ..serving.requests import Request, ServingSystem

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
