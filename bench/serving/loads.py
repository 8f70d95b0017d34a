"""Load patterns: when requests go to the system under test. They know nothing of models.

One generator thread submits every request and reads every completion from a queue: the system's callbacks only
stamp the time (time.perf_counter_ns(), at call time) and put an event on that queue, so they stay cheap whatever
thread they run on, and nothing is ever submitted from a callback. The generator never spins: between arrivals it
blocks on the queue with a timeout (2 shared cores).

- `open_loop`: arrivals on a seeded schedule (Poisson or gamma), whatever the system is doing; latency counts from
  the scheduled arrival, so the generator's lateness and any queueing count. An over-saturated run (more than
  `max_backlog` requests sent and not done) stops early, and says so.
- `closed_loop`: `users` users each send their next request when their last one completes.
- `burst`: everything at once (max throughput).

A `deadline_s` ends an overloaded run; requests not served by then (sent and unanswered, or never sent) are failures
with the reason, never dropped. After such a run the system may still hold them: stop it before the next run.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal

from ..measurement.schedule import arrival_schedule
from ..records.serving import Load
from .requests import Completion, Request, ServingSystem


@dataclass(frozen=True)
class RequestTiming:
    """One request's life in perf_counter_ns. Unserved: `done_ns` is None and `error` says why."""

    index: int
    sent_ns: int | None                       # None: never sent (the run stopped first)
    done_ns: int | None
    token_ns: tuple[tuple[int, int], ...] = ()  # (time, tokens) per on_token call
    output_tokens: int = 0
    error: str | None = None
    scheduled_ns: int | None = None           # open loop: the arrival latency counts from
    info: dict = field(default_factory=dict)

    @property
    def served(self) -> bool:
        return self.done_ns is not None

    @property
    def ok(self) -> bool:
        return self.served and self.error is None

    @property
    def origin_ns(self) -> int | None:
        """Where latency counts from: the scheduled arrival (open loop), else the send."""
        return self.scheduled_ns if self.scheduled_ns is not None else self.sent_ns


@dataclass(frozen=True)
class LoadResult:
    load: Load
    timings: list[RequestTiming]    # one per request, in workload order: none dropped
    started_ns: int                 # the generator's time zero (open loop: the schedule's origin)
    stopped_ns: int | None = None   # when the generator gave up with requests unserved
    stop_reason: str | None = None  # why: the deadline, or over-saturation

    @property
    def unserved(self) -> int:
        return sum(not t.served for t in self.timings)


class _Tracker:
    """Sends requests and gathers their events; only the generator thread touches it."""

    def __init__(self, system: ServingSystem, requests: list[Request]):
        self.system, self.requests = system, requests
        self.events: queue.Queue = queue.Queue()
        self.sent: dict[int, int] = {}
        self.scheduled: dict[int, int] = {}
        self.tokens: dict[int, list[tuple[int, int]]] = {r.index: [] for r in requests}
        self.done: dict[int, tuple[int, Completion]] = {}
        self.started_ns = time.perf_counter_ns()

    def send(self, request: Request, scheduled_ns: int | None = None) -> None:
        events, index = self.events, request.index
        if scheduled_ns is not None:
            self.scheduled[index] = scheduled_ns
        self.sent[index] = time.perf_counter_ns()
        self.system.submit(request, lambda count: events.put((index, time.perf_counter_ns(), False, count)),
                           lambda completion: events.put((index, time.perf_counter_ns(), True, completion)))

    @property
    def outstanding(self) -> int:
        return len(self.sent) - len(self.done)

    def handle_events(self, until_ns: int | None) -> int | None:
        """Record events until one request completes (its index) or `until_ns` passes (None); `until_ns` None
        waits as long as it takes. Past `until_ns` it still records the events already queued, so a generator
        running late never counts a completed request as outstanding."""
        while True:
            timeout = None if until_ns is None else (until_ns - time.perf_counter_ns()) / 1e9
            try:
                if timeout is not None and timeout <= 0:
                    index, at_ns, is_done, payload = self.events.get_nowait()
                else:
                    index, at_ns, is_done, payload = self.events.get(timeout=timeout)
            except queue.Empty:
                return None
            if index in self.done:
                raise RuntimeError(f"the system called back for request {index} after completing it "
                                   "(on_done must be its last call, made exactly once)")
            if is_done:
                self.done[index] = (at_ns, payload)
                return index
            self.tokens[index].append((at_ns, payload))

    def result(self, load: Load, stop_reason: str | None) -> LoadResult:
        timings = []
        for request in self.requests:
            i = request.index
            at_ns, completion = self.done.get(i, (None, None))
            if completion is None:
                why = "sent but not completed" if i in self.sent else "never sent"
                timings.append(RequestTiming(index=i, sent_ns=self.sent.get(i), done_ns=None,
                                             token_ns=tuple(self.tokens[i]), scheduled_ns=self.scheduled.get(i),
                                             error=f"unserved: {why} ({stop_reason})"))
                continue
            timings.append(RequestTiming(index=i, sent_ns=self.sent[i], done_ns=at_ns, token_ns=tuple(self.tokens[i]),
                                         output_tokens=completion.output_tokens, error=completion.error,
                                         scheduled_ns=self.scheduled.get(i), info=dict(completion.info)))
        unserved = any(not t.served for t in timings)
        return LoadResult(load=load, timings=timings, started_ns=self.started_ns,
                          stopped_ns=time.perf_counter_ns() if unserved else None,
                          stop_reason=stop_reason if unserved else None)


def _deadline_ns(tracker: _Tracker, deadline_s: float | None) -> int | None:
    return None if deadline_s is None else tracker.started_ns + int(deadline_s * 1e9)


def _past(deadline_ns: int | None) -> bool:
    return deadline_ns is not None and time.perf_counter_ns() >= deadline_ns


def _deadline_passed(deadline_s: float) -> str:
    return f"the {deadline_s:g} s deadline passed"


def _wait_for_all(tracker: _Tracker, deadline_ns: int | None, deadline_s: float | None) -> str | None:
    """Record completions until every sent request is done; the reason if the deadline came first."""
    while tracker.outstanding:
        if tracker.handle_events(deadline_ns) is None:
            return _deadline_passed(deadline_s)
    return None


def open_loop(system: ServingSystem, requests: list[Request], rate: float, seed: int,
              distribution: Literal["poisson", "gamma"] = "poisson", burstiness: float = 1.0,
              deadline_s: float | None = None, max_backlog: int | None = None) -> LoadResult:
    """Send each request at its seeded arrival time, whatever the system is doing.

    Over-saturation: a stable system keeps the backlog (sent and not done) within what it serves at once plus a
    queue that ebbs; past capacity the backlog grows with every arrival. When it exceeds `max_backlog` the run stops
    there: the run cannot meet a latency bound, and finishing it would only take longer.
    """
    offsets_s = arrival_schedule(rate, len(requests), seed, distribution, burstiness)
    load = Load(pattern="open-loop", rate_per_s=rate, distribution=distribution,
                burstiness=burstiness if distribution == "gamma" else None, seed=seed, deadline_s=deadline_s,
                max_backlog=max_backlog)
    tracker = _Tracker(system, requests)
    deadline_ns = _deadline_ns(tracker, deadline_s)
    for request, offset_s in zip(requests, offsets_s):
        scheduled_ns = tracker.started_ns + int(round(offset_s * 1e9))
        until_ns = scheduled_ns if deadline_ns is None else min(scheduled_ns, deadline_ns)
        while tracker.handle_events(until_ns) is not None:
            pass
        if _past(deadline_ns):
            return tracker.result(load, _deadline_passed(deadline_s))
        tracker.send(request, scheduled_ns)
        if max_backlog is not None and tracker.outstanding > max_backlog:
            return tracker.result(load, f"over-saturated: {tracker.outstanding} requests sent and not done "
                                        f"> {max_backlog} allowed, after {len(tracker.sent)} sent")
    return tracker.result(load, _wait_for_all(tracker, deadline_ns, deadline_s))


def _closed(system: ServingSystem, requests: list[Request], users: int, load: Load) -> LoadResult:
    tracker = _Tracker(system, requests)
    deadline_ns = _deadline_ns(tracker, load.deadline_s)
    waiting = iter(requests)
    for request in islice(waiting, users):
        tracker.send(request)
    for request in waiting:
        if tracker.handle_events(deadline_ns) is None or _past(deadline_ns):  # nothing goes out after the deadline
            return tracker.result(load, _deadline_passed(load.deadline_s))
        tracker.send(request)
    return tracker.result(load, _wait_for_all(tracker, deadline_ns, load.deadline_s))


def closed_loop(system: ServingSystem, requests: list[Request], users: int,
                deadline_s: float | None = None) -> LoadResult:
    """`users` requests in flight: each completion lets the next request go (from this thread, not the callback)."""
    if users < 1:
        raise ValueError(f"users must be positive, not {users}")
    return _closed(system, requests, users, Load(pattern="closed-loop", users=users, deadline_s=deadline_s))


def burst(system: ServingSystem, requests: list[Request], deadline_s: float | None = None) -> LoadResult:
    """Every request at once: the system's maximum throughput, latency aside."""
    return _closed(system, requests, len(requests), Load(pattern="burst", users=len(requests), deadline_s=deadline_s))
