"""Traffic generators. A driver issues queries and takes the time; it knows nothing of models, and the
system under test (a Session, wrapped in plain callables by the scenario) knows nothing of timing.

`bench` (ours, the default) and `loadgen` (MLPerf LoadGen, the generator MLPerf audits) implement the
same three traffic patterns; a scenario's `driver` option picks one.
"""

from __future__ import annotations

from typing import Callable, ClassVar

from ..measurement.server import BatchingPolicy
from ..measurement.timing import NO_WINDOW, LoopSettings, OfflineTiming, TimedSamples, WindowHook
from ..registry import Registry

OnToken = Callable[[int], None]


class Driver:
    install: ClassVar[str | None] = None  # the command that makes an unavailable driver available

    @classmethod
    def missing(cls) -> str | None:
        """Why this driver cannot run here (a package not installed), or None."""
        return None

    def single_stream(self, issue: Callable[[], None], settings: LoopSettings) -> TimedSamples:
        """One query at a time, the next issued when the last completes. Every pattern tells `settings.window`
        (the server: `window`) when its timed traffic starts and ends."""
        raise NotImplementedError

    def offline(self, issue_batch: Callable[[int], None], batch_size: int, settings: LoopSettings) -> OfflineTiming:
        """Every sample issued at once; the system serves them in batches of at most `batch_size`."""
        raise NotImplementedError

    def server(self, serve: Callable[[int, OnToken], None], rate_qps: float, count: int, seed: int,
               distribution: str, burstiness: float, policy: BatchingPolicy, deadline_s: float,
               window: WindowHook = NO_WINDOW) -> list[dict]:
        """Requests arriving at `rate_qps`; one dict per served request (measurement/server.py's fields)."""
        raise NotImplementedError

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
