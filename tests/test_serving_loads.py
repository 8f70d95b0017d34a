"""Load patterns against fake systems: counts, order and semantics, never tight timing."""

from __future__ import annotations

import time

import pytest
from serving_fakes import DoubleDoneSystem, InlineSystem, PoolSystem, requests, running

from bench.measurement.schedule import arrival_schedule
from bench.serving.loads import burst, closed_loop, open_loop


@pytest.mark.parametrize("distribution, burstiness", [("poisson", 1.0), ("gamma", 0.5)])
def test_open_loop_sends_each_request_at_its_seeded_arrival_never_before(distribution, burstiness):
    with running(PoolSystem(capacity=4, per_token_s=0.001)) as system:
        result = open_loop(system, requests(20), rate=400, seed=3, distribution=distribution, burstiness=burstiness)
    offsets = arrival_schedule(400, 20, 3, distribution, burstiness)
    assert [t.scheduled_ns - result.started_ns for t in result.timings] == [round(o * 1e9) for o in offsets]
    assert all(t.sent_ns >= t.scheduled_ns for t in result.timings)
    assert system.submitted == list(range(20))
    assert [t.sent_ns for t in result.timings] == sorted(t.sent_ns for t in result.timings)
    assert all(t.ok and t.output_tokens == 2 and [n for _, n in t.token_ns] == [1, 1] for t in result.timings)
    assert all(t.done_ns - t.sent_ns >= 2_000_000 for t in result.timings)  # two tokens of 1 ms each
    assert result.stop_reason is None and result.stopped_ns is None
    assert result.load.pattern == "open-loop" and result.load.rate_per_s == 400 and result.load.seed == 3


def test_open_loop_seed_changes_the_schedule():
    with running(PoolSystem()) as system:
        first = open_loop(system, requests(5), rate=1000, seed=1)
        second = open_loop(system, requests(5), rate=1000, seed=2)
    assert ([t.scheduled_ns - first.started_ns for t in first.timings]
            != [t.scheduled_ns - second.started_ns for t in second.timings])


def test_closed_loop_never_holds_more_than_its_users_in_flight():
    users = 3
    with running(PoolSystem(capacity=8, per_token_s=0.001)) as system:
        result = closed_loop(system, requests(24), users=users)
    assert system.most_held <= users
    assert system.submitted == list(range(24))
    assert all(t.ok for t in result.timings) and result.timings[0].scheduled_ns is None
    done = sorted(t.done_ns for t in result.timings)
    for j, timing in enumerate(result.timings[users:], start=users):  # request j waits for j - users + 1 completions
        assert sum(d <= timing.sent_ns for d in done) >= j - users + 1
    assert result.load.pattern == "closed-loop" and result.load.users == users


def test_burst_sends_every_request_before_any_completes():
    with running(PoolSystem(capacity=20, release_at=20)) as system:  # serves nothing until all 20 are in
        result = burst(system, requests(20), deadline_s=10)
    assert all(t.ok for t in result.timings)
    assert max(t.sent_ns for t in result.timings) < min(t.done_ns for t in result.timings)
    assert result.load.pattern == "burst" and result.load.users == 20


def test_deadline_fails_requests_a_closed_loop_never_got_served_instead_of_dropping_them():
    with running(PoolSystem(capacity=20, release_at=20)) as system:  # five users never reach the release
        result = closed_loop(system, requests(20), users=5, deadline_s=0.2)
    assert len(result.timings) == 20 and result.unserved == 20
    assert [t.sent_ns is not None for t in result.timings] == [True] * 5 + [False] * 15
    assert all(t.error.startswith("unserved: sent but not completed") for t in result.timings[:5])
    assert all(t.error.startswith("unserved: never sent") for t in result.timings[5:])
    assert result.stop_reason == "the 0.2 s deadline passed" and result.stopped_ns is not None


def test_deadline_fails_unanswered_requests_and_those_never_sent_behind_them():
    with running(PoolSystem(capacity=4, silent={3, 7})) as system:
        result = closed_loop(system, requests(10), users=2, deadline_s=0.5)
    # Each completion sends the next request: 3 and 7 never complete, so their users stop there and 8, 9 never go.
    assert [t.index for t in result.timings if t.ok] == [0, 1, 2, 4, 5, 6]
    assert [t.index for t in result.timings if t.sent_ns is not None and not t.served] == [3, 7]
    assert [t.index for t in result.timings if t.sent_ns is None] == [8, 9]


def test_open_loop_deadline_fails_requests_the_system_never_answers():
    schedule = arrival_schedule(500, 10, 0)
    assert schedule[-1] < 0.1  # every request is due well before the deadline
    with running(PoolSystem(capacity=4, silent={3, 7})) as system:
        result = open_loop(system, requests(10), rate=500, seed=0, deadline_s=1.0)
    assert [t.index for t in result.timings if not t.served] == [3, 7]
    assert all(t.sent_ns is not None for t in result.timings)
    assert result.stop_reason == "the 1 s deadline passed"


def test_closed_loop_sends_nothing_after_the_deadline():
    """Request 0 completes (inside a submit that overruns the deadline); the completion must not send request 1."""
    result = closed_loop(InlineSystem(submit_s=0.1), requests(5), users=1, deadline_s=0.05)
    assert [t.ok for t in result.timings] == [True, False, False, False, False]
    assert all(t.sent_ns is None for t in result.timings[1:]) and result.stop_reason == "the 0.05 s deadline passed"


def test_failed_requests_are_counted_not_dropped():
    with running(PoolSystem(fail={2, 5})) as system:
        result = closed_loop(system, requests(10), users=2)
    assert len(result.timings) == 10 and result.unserved == 0
    assert [t.index for t in result.timings if not t.ok] == [2, 5]
    assert all(t.served and t.error == "boom" for t in result.timings if t.index in (2, 5))


def test_over_saturated_open_loop_stops_early_and_says_why():
    with running(PoolSystem(capacity=1, per_token_s=0.02)) as system:  # 25 requests/s at most; 1000/s offered
        result = open_loop(system, requests(200), rate=1000, seed=0, max_backlog=5)
    sent = [t for t in result.timings if t.sent_ns is not None]
    assert 6 <= len(sent) < 200
    assert len(sent) - sum(t.served for t in result.timings) == 6  # stopped at the first backlog over 5
    assert result.stop_reason.startswith("over-saturated: 6 requests sent and not done > 5 allowed")
    assert result.unserved == 200 - sum(t.served for t in result.timings)
    assert all(t.error.startswith("unserved") for t in result.timings if not t.served)


def test_a_generator_running_late_still_sees_completed_requests_as_done():
    """At a million requests/s the generator is behind schedule at every arrival; completions already queued must
    still count, or a system that keeps up would look over-saturated."""
    result = open_loop(InlineSystem(), requests(50), rate=1e6, seed=0, max_backlog=1)
    assert result.stop_reason is None and all(t.ok for t in result.timings)


def test_a_system_completing_a_request_twice_is_refused():
    with pytest.raises(RuntimeError, match="after completing it"):
        burst(DoubleDoneSystem(), requests(3))



def test_the_generator_sleeps_between_arrivals_instead_of_spinning():
    """On 2 cores a spinning generator steals a core from the system it measures."""
    start = time.process_time()
    open_loop(InlineSystem(), requests(3), 2.0, seed=0)
    assert time.process_time() - start < 0.15  # the arrivals span about a second: a spin loop would burn most of it
