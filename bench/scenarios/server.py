"""`server`: requests arriving on a seeded schedule (Poisson or gamma) at `rate_qps`, whatever the system is doing;
latency counts from each scheduled arrival, so queueing counts. `capacity: true` also searches the highest rate
meeting every SLO. Encoders serve embedding requests (no output tokens)."""

from __future__ import annotations

from pydantic import Field

from . import scenarios
from .serving import ArrivalOptions, Serving, ServingScenario


class ServerOptions(ArrivalOptions):
    rate_qps: float = Field(5.0, gt=0, description="mean arrival rate (requests/s)")


@scenarios.register("server")
class Server(ServingScenario):
    Options = ServerOptions

    def run(self, session, workload, settings, options):
        serving = Serving(session, workload, settings, options)
        serving.warm_up()
        main = serving.open_loop(options.rate_qps, timed=True)
        capacity = None
        if options.capacity:
            capacity = serving.search("rate_per_s", serving.open_loop, *serving.rate_range())
        return serving.result(main, capacity=capacity)
