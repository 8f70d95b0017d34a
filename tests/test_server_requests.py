"""How many requests the serving scenarios send: enough for the validity rule to judge every run at every load, so
only the SLO and keeping up decide. No clock: a fake driver serves each request in 10 ms of made-up time."""

from __future__ import annotations

import pytest
from serving_fakes import StandInEngine

from bench.cli._common import packaged_suites
from bench.config import load_suite
from bench.drivers import Driver, drivers
from bench.measurement.schedule import arrival_schedule
from bench.measurement.timing import LoopSettings
from bench.models.sources import stand_in_tokenizer
from bench.plan import build_plan
from bench.scenarios import Workload, scenarios
from bench.serving.engines import engines
from bench.serving.loads import Load, LoadResult, RequestTiming
from bench.validity import min_queries

SERVICE_NS = 10_000_000
asked: list[tuple[str, float, int]] = []  # (pattern, rate or users, requests) of every run the scenarios asked for


def _timings(requests, starts_ns, scheduled: bool) -> list[RequestTiming]:
    return [RequestTiming(index=r.index, sent_ns=start, done_ns=start + SERVICE_NS, scheduled_ns=start if scheduled
                          else None, token_ns=tuple((start + SERVICE_NS * (k + 1) // (r.output_tokens + 1), 1)
                                                    for k in range(r.output_tokens)), output_tokens=r.output_tokens)
            for r, start in zip(requests, starts_ns)]


class MadeUpTime(Driver):
    """Every request served in 10 ms, `users` (or the batch) at a time, in made-up nanoseconds."""

    def open_loop(self, system, requests, rate, seed, distribution, burstiness, deadline_s, max_backlog=None):
        asked.append(("open-loop", rate, len(requests)))
        starts = [round(t * 1e9) for t in arrival_schedule(rate, len(requests), seed, distribution, burstiness)]
        return LoadResult(Load(pattern="open-loop", rate_per_s=rate), _timings(requests, starts, True), 0)

    def closed_loop(self, system, requests, users, deadline_s):
        asked.append(("closed-loop", users, len(requests)))
        starts = [(i // users) * SERVICE_NS for i in range(len(requests))]
        return LoadResult(Load(pattern="closed-loop", users=users), _timings(requests, starts, False), 0)

    def burst(self, system, requests, deadline_s):
        asked.append(("burst", len(requests), len(requests)))
        return LoadResult(Load(pattern="burst", users=len(requests)), _timings(requests, [0] * len(requests), False), 0)


@pytest.fixture(autouse=True)
def stand_ins(monkeypatch):
    asked.clear()
    drivers.names()
    monkeypatch.setitem(drivers._items, "made-up-time", MadeUpTime)
    engines.names()
    monkeypatch.setitem(engines._items, "fake-instant", StandInEngine)


def run(name: str, settings: LoopSettings, task: str = "causal-lm", **options):
    """A serving scenario sized as the point would be, its requests served at once by a stand-in engine and driver:
    what is judged is how many requests it sends, not an engine."""
    cls = scenarios.get(name)
    options = cls.Options(**{"output_tokens": 2, **options, "engine": "fake-instant", "driver": "made-up-time"})
    return cls().run(object(), Workload(4, 16, stand_in_tokenizer()[0], task), settings, options)


def test_the_shipped_serving_suite_gives_valid_points_where_the_system_keeps_up():
    """Defect (of the server scenario before): the suite's minimum was taken for "enough to bound p99" and every
    point read "insufficient sample"; now each point sends what its SLO's percentile and the duration need."""
    path = packaged_suites()["serving"]
    plan = build_plan(load_suite(path), path)
    assert plan.points
    for point in plan.points:
        s = point.settings
        settings = LoopSettings(warmup_iterations=s.warmup_iterations, warmup_s=s.warmup_s,
                                min_iterations=s.min_iterations, min_duration_s=s.min_duration_s, seed=s.seed)
        options = {**point.scenario.options, "capacity": False}
        result = run(point.scenario.name, settings, task=point.task, **options)
        assert result.verdict.valid, (point.label, result.verdict.reasons)
        assert result.sufficient


@pytest.mark.parametrize("name, options", [("server", {"rate_qps": 20, "capacity_range": [10, 400]}),
                                           ("concurrency", {"users": 1, "capacity_range": [1, 16]})])
def test_every_capacity_probe_sends_enough_requests_to_be_judged(name, options):
    """Defect (of --find-peak before): a probe sent max(min_iterations, rate x min_duration + 1) requests, so at p99
    every probe below 132 qps was "insufficient" whatever its latency: the bisection read the count, not the SLO."""
    result = run(name, LoopSettings(warmup_iterations=1, min_duration_s=1.0), capacity=True,
                 slo={"e2e_ms": {"p99": 50}}, **options)
    judged = [count for pattern, _, count in asked[1:] if pattern != "burst"]  # the warm-up is not judged
    assert judged and all(count >= min_queries(0.99) for count in judged)
    assert all(probe.valid and not probe.reasons for probe in result.capacity.probes)
    assert result.capacity.capacity == options["capacity_range"][1]  # every probe kept up: the search climbed


@pytest.mark.parametrize("distribution, burstiness", [("poisson", 1.0), ("gamma", 0.5)])
def test_a_run_that_keeps_up_is_not_too_short_by_the_luck_of_its_arrivals(distribution, burstiness):
    """Defect: at high rates the count was rate x min_duration + 1, whose random arrivals span less than the
    minimum duration about half the time, so a run that kept up read "ran 9.9 s < minimum 10 s"."""
    for seed in range(20):
        result = run("server", LoopSettings(warmup_iterations=1, min_duration_s=10.0, seed=seed), rate_qps=200,
                     distribution=distribution, burstiness=burstiness)
        assert result.verdict.valid, (seed, result.verdict.reasons)


def test_a_closed_loop_sized_from_a_slower_warm_up_runs_again_long_enough():
    """A closed loop's count comes from the rate measured so far; where the run turns out faster and too short,
    it runs again with the count its own rate needs, rather than reading "run too short"."""
    result = run("concurrency", LoopSettings(warmup_iterations=1, min_duration_s=2.0), users=8)  # warm-up: 4 users
    closed = [count for pattern, users, count in asked if pattern == "closed-loop" and users == 8]
    assert len(closed) == 2 and closed[0] < closed[1]  # a run too short for 8 users' rate, then the run again
    assert result.verdict.valid and result.serving.duration_s >= 2.0


def test_a_closed_loop_lets_every_user_send_twice():
    """Defect: 32 users at p50 over a short minimum duration sent 32 requests, one per user: a burst, where no
    completion ever paces an arrival, published as a closed loop (TTFT p50 = p99 = the whole first wave)."""
    run("concurrency", LoopSettings(warmup_iterations=1, min_iterations=11, min_duration_s=0.01), users=32,
        slo={"ttft_ms": {"p50": 500}})
    closed = [count for pattern, users, count in asked if pattern == "closed-loop" and users == 32]
    assert closed and all(count >= 64 for count in closed)
