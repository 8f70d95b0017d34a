"""Our own traffic generator: the timed loop, the offline batcher, and the request load patterns of
bench/serving/loads.py."""

from __future__ import annotations

from ..measurement.timing import NO_WINDOW, offline_loop, time_loop
from ..serving import loads
from . import PATTERNS, Driver, drivers, timed


@drivers.register("bench")
class BenchDriver(Driver):
    patterns = frozenset(PATTERNS)
    distributions = frozenset({"poisson", "gamma"})

    def single_stream(self, issue, settings):
        return time_loop(issue, settings)

    def offline(self, issue_batch, batch_size, settings):
        return offline_loop(issue_batch, batch_size, settings)

    def open_loop(self, system, requests, rate, seed, distribution="poisson", burstiness=1.0, deadline_s=None,
                  max_backlog=None, window=NO_WINDOW):
        return timed(window, lambda: loads.open_loop(system, requests, rate, seed, distribution, burstiness,
                                                     deadline_s=deadline_s, max_backlog=max_backlog))

    def closed_loop(self, system, requests, users, deadline_s=None, window=NO_WINDOW):
        return timed(window, lambda: loads.closed_loop(system, requests, users, deadline_s=deadline_s))

    def burst(self, system, requests, deadline_s=None, window=NO_WINDOW):
        return timed(window, lambda: loads.burst(system, requests, deadline_s=deadline_s))
