"""`sweep`: GuideLLM's profile. Synchronous (one user), then throughput (every request at once), then `rates`
open-loop rates evenly between the two measured rates. A rate the system cannot keep up with stops early (its
backlog outgrew `max_backlog`) and is recorded so. The capacity is the highest rate level within every SLO
(`capacity: true` bisects between it and the next level); the throughput level is the timed window."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..records.serving import SweepLevel
from . import scenarios
from .serving import ArrivalOptions, Serving, ServingScenario, levels_capacity


class SweepOptions(ArrivalOptions):
    rates: int = Field(4, ge=1, description="open-loop rates between the synchronous and the throughput rate")


@scenarios.register("sweep")
class Sweep(ServingScenario):
    Options = SweepOptions

    def run(self, session, workload, settings, options):
        serving = Serving(session, workload, settings, options)
        serving.warm_up()
        synchronous = serving.closed_loop(1)
        throughput = serving.burst(timed=True)
        levels = [SweepLevel(kind="synchronous", metrics=synchronous.metrics, verdict=synchronous.verdict),
                  SweepLevel(kind="throughput", metrics=throughput.metrics, verdict=throughput.verdict)]
        low, high = synchronous.metrics.requests_per_s, throughput.metrics.requests_per_s
        for rate in np.linspace(low, high, options.rates + 2)[1:-1] if 0 < low < high else []:
            run = serving.open_loop(float(rate))
            levels.append(SweepLevel(kind="rate", metrics=run.metrics, verdict=run.verdict))
        capacity = levels_capacity(levels)
        if options.capacity and capacity is not None and capacity.capacity is not None and capacity.lowest_invalid:
            capacity = serving.search("rate_per_s", serving.open_loop, capacity.capacity, capacity.lowest_invalid)
        return serving.result(throughput, sweep=levels, capacity=capacity)
