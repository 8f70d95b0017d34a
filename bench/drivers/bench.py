"""Our own traffic generator: the timed loop, the offline batcher and the real-time server scheduler."""

from __future__ import annotations

from ..measurement.schedule import arrival_schedule
from ..measurement.server import run_server
from ..measurement.timing import NO_WINDOW, offline_loop, time_loop
from ..serving import loads
from . import Driver, drivers


@drivers.register("bench")
class BenchDriver(Driver):
    def single_stream(self, issue, settings):
        return time_loop(issue, settings)

    def offline(self, issue_batch, batch_size, settings):
        return offline_loop(issue_batch, batch_size, settings)

    def server(self, serve, rate_qps, count, seed, distribution, burstiness, policy, deadline_s, window=NO_WINDOW):
        schedule = arrival_schedule(rate_qps, count, seed, distribution, burstiness)
        return run_server(schedule, serve, policy, deadline_s=deadline_s, window=window)

    def open_loop(self, system, requests, rate, seed, distribution, burstiness, deadline_s, max_backlog=None):
        return loads.open_loop(system, requests, rate, seed, distribution, burstiness, deadline_s, max_backlog)

    def closed_loop(self, system, requests, users, deadline_s):
        return loads.closed_loop(system, requests, users, deadline_s)

    def burst(self, system, requests, deadline_s):
        return loads.burst(system, requests, deadline_s)
