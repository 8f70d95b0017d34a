"""Capacity search: exact on a run function with a known threshold, and end to end on a fake system."""

from __future__ import annotations

import pytest
from serving_fakes import PoolSystem, requests

from bench.serving.capacity import find_capacity
from bench.serving.loads import closed_loop
from bench.serving.slo import Slo
from bench.serving.validity import Verdict, judge


def threshold(limit: float, tried: list | None = None):
    """A run that is valid up to `limit` and not above."""
    def run_at(load):
        if tried is not None:
            tried.append(load)
        return Verdict(valid=load <= limit, checks={"slo": load <= limit},
                       reasons=[] if load <= limit else [f"{load} is over {limit}"])
    return run_at


def test_users_capacity_is_exact():
    tried = []
    capacity = find_capacity(threshold(37, tried), 1, 100, "users")
    assert capacity.capacity == 37 and capacity.lowest_invalid == 38 and capacity.note is None
    assert tried[:2] == [1, 100] and all(isinstance(load, int) for load in tried)
    assert len(tried) <= 2 + 7  # bisection: log2(99) probes after the two ends
    assert [p.load for p in capacity.probes] == tried and capacity.probes[1].reasons == ["100 is over 37"]


def test_rate_capacity_lands_on_the_threshold_when_a_probe_does():
    capacity = find_capacity(threshold(40.0), 8, 72, "rate_per_s", resolution=0.5)  # 40 is the first midpoint
    assert capacity.capacity == 40.0 and 40.0 < capacity.lowest_invalid <= 40.5


def test_rate_capacity_is_within_the_resolution_below_the_threshold():
    capacity = find_capacity(threshold(33.3), 1, 100, "rate_per_s", resolution=0.25)
    assert capacity.capacity <= 33.3 < capacity.lowest_invalid
    assert capacity.lowest_invalid - capacity.capacity <= 0.25


def test_capacity_below_the_range_is_none_and_says_why():
    capacity = find_capacity(threshold(0.5), 1, 10, "rate_per_s")
    assert capacity.capacity is None and capacity.lowest_invalid == 1 and len(capacity.probes) == 1
    assert "even the lowest load tried (1) was not valid" in capacity.note


def test_capacity_above_the_range_is_a_lower_bound_and_says_so():
    capacity = find_capacity(threshold(50), 1, 10, "users")
    assert capacity.capacity == 10 and capacity.lowest_invalid is None
    assert "at least" in capacity.note


def test_capacity_search_stops_after_its_probe_budget_with_the_bracket():
    capacity = find_capacity(threshold(33.3), 1, 100, "rate_per_s", resolution=0.001, max_probes=5)
    assert len(capacity.probes) == 5
    assert capacity.capacity <= 33.3 < capacity.lowest_invalid and "stopped after 5 runs" in capacity.note


def test_closed_loop_capacity_of_a_two_slot_system_is_two_users():
    """Two slots of 80 ms (2 tokens x 40 ms): up to two users every request takes 80 ms; a third user makes about
    a third of them wait a whole service, which the conservative p50 of 12 requests sees (bound 120 ms)."""
    slo = Slo(e2e_ms={"p50": 120})

    def run_at(users):
        system = PoolSystem(capacity=2, per_token_s=0.04)
        system.start()
        try:
            result = closed_loop(system, requests(12), users=int(users), deadline_s=10)
        finally:
            system.stop()
        return judge(result, slo, min_duration_s=0, min_requests=12)

    capacity = find_capacity(run_at, 1, 6, "users")
    assert capacity.capacity == 2 and capacity.lowest_invalid == 3
    assert [p.valid for p in capacity.probes if p.load == 2] == [True]


@pytest.mark.parametrize("low, high", [(0, 5), (5, 5), (6, 5)])
def test_capacity_range_must_be_positive_and_ordered(low, high):
    with pytest.raises(ValueError):
        find_capacity(threshold(1), low, high, "users")
