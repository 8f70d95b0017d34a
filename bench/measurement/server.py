"""A real-time, open-loop load driver (MLPerf LoadGen "Server" style), and its summary.

The driver owns the clock and the schedule; the SUT is a callback that serves a list of request
indices and knows nothing of time. Latency is measured from each request's SCHEDULED arrival, so
time spent queued behind a busy server counts, as it does for a real user (no coordinated omission).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .generation import _dist_ms

KINDS = ("single", "dynamic")


@dataclass(frozen=True)
class BatchingPolicy:
    """How the single worker turns arrived requests into batches. See `run_server` for the rules."""

    kind: str = "single"
    max_batch_size: int = 1
    max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"batching kind must be one of {KINDS}, got {self.kind!r}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {self.max_wait_s}")
        if self.kind == "single" and self.max_batch_size != 1:
            raise ValueError("kind='single' serves one request at a time; use kind='dynamic' for batches")


def run_server(schedule: Sequence[float] | np.ndarray,
               serve_batch: Callable[..., object],
               policy: BatchingPolicy = BatchingPolicy(),
               *, generative: bool = False,
               deadline_s: float | None = None,
               clock: Callable[[], int] = time.perf_counter_ns) -> list[dict]:
    """Replay `schedule` (ascending arrival offsets in s, e.g. from `arrival_schedule`) in real time.

    Threads: the calling thread is the single worker, and it is also the issuer: it computes which
    requests have arrived by comparing the clock with the schedule, so there is no second thread
    competing for a core. Whenever it has nothing to do it blocks in `Event.wait(timeout)` until the
    next moment something can change (the next arrival or a batching deadline); it never polls.

    SUT interface: `serve_batch(indices)` serves requests `indices` (list of schedule positions)
    and returns when all are complete. With `generative=True` it is `serve_batch(indices, on_token)`
    and must call `on_token(i)` when token i of every sequence in the batch exists (pass it straight
    to `greedy_generate`); the driver stamps first-token and last-token times.

    Batching policy (requests are always served in arrival order, FIFO, one batch at a time):
      * "single": when the worker is free and at least one request has arrived, it serves the
        oldest arrived request alone. If none has arrived it sleeps until the next arrival.
      * "dynamic" (max_batch_size B, max_wait_s W): when the worker is free, let `a` be the oldest
        arrived-but-unserved request and `k` the number of arrived-but-unserved requests. It
        dispatches immediately the min(k, B) oldest when k >= B, or when now >= arrival(a) + W
        (the wait is measured from the oldest request's SCHEDULED arrival, so a request that already
        queued behind a busy worker for W or more is dispatched with whatever has arrived, without
        further waiting). Otherwise it sleeps until the earlier of arrival(a) + W and the next
        scheduled arrival, then re-decides. Requests arriving while a batch runs wait for the next
        batch (no joining a running batch: static batching, not continuous batching). With W = 0
        the worker never waits: it takes whatever has queued, up to B. Near the end of the
        schedule the worker still waits up to W (it does not know no more requests will come).

    `deadline_s`: stop dispatching new batches once this long has passed since the start; the
    requests not dispatched are returned with start/done/latency None (count them as failed).

    Returns one dict per scheduled request (in schedule order), times in seconds from the start:
    index, scheduled_s, start_s, done_s, latency_s (= done_s - scheduled_s), queue_s
    (= start_s - scheduled_s), service_s (= done_s - start_s), batch_size, batch_id; with
    generative=True also first_token_s, ttft_s (= first_token_s - scheduled_s), last_token_s,
    tokens and tpot_s (= (last_token_s - first_token_s) / (tokens - 1), None for a single token).
    """
    offsets = np.asarray(schedule, dtype=np.float64)
    n = len(offsets)
    if n and (np.any(np.diff(offsets) < 0) or offsets[0] < 0):
        raise ValueError("schedule must be non-negative, ascending offsets in seconds")
    records: list[dict] = [{"index": i, "scheduled_s": float(offsets[i]), "start_s": None, "done_s": None,
                            "latency_s": None, "queue_s": None, "service_s": None, "batch_size": 0,
                            "batch_id": None} for i in range(n)]
    if generative:
        for r in records:
            r.update(first_token_s=None, ttft_s=None, last_token_s=None, tokens=0, tpot_s=None)
    waiter = threading.Event()  # never set: wait(timeout) is an interruptible, non-spinning sleep
    t0 = clock()
    arrivals_ns = t0 + np.round(offsets * 1e9).astype(np.int64)
    deadline_ns = None if deadline_s is None else t0 + int(deadline_s * 1e9)
    max_b = policy.max_batch_size if policy.kind == "dynamic" else 1
    wait_ns = int(policy.max_wait_s * 1e9) if policy.kind == "dynamic" else 0

    def sleep_until(t_ns: int) -> None:
        remaining = (t_ns - clock()) / 1e9
        if remaining > 0:
            waiter.wait(remaining)

    def sec(t_ns: int) -> float:
        return (t_ns - t0) / 1e9

    nxt, batch_id = 0, 0
    while nxt < n:
        now = clock()
        if deadline_ns is not None and now >= deadline_ns:
            break
        arrived = int(np.searchsorted(arrivals_ns, now, side="right"))
        waiting = arrived - nxt
        if waiting <= 0:
            wake = int(arrivals_ns[nxt])
            sleep_until(wake if deadline_ns is None else min(wake, deadline_ns))
            continue
        if waiting >= max_b or now >= arrivals_ns[nxt] + wait_ns:
            size = min(waiting, max_b)
        else:
            wake = int(arrivals_ns[nxt]) + wait_ns
            if arrived < n:
                wake = min(wake, int(arrivals_ns[arrived]))
            if deadline_ns is not None:
                wake = min(wake, deadline_ns)
            sleep_until(wake)
            continue

        indices = list(range(nxt, nxt + size))
        token_ns: list[int] = []
        start = clock()
        if generative:
            serve_batch(indices, lambda i, _a=token_ns.append: _a(clock()))
        else:
            serve_batch(indices)
        done = clock()
        for i in indices:
            r = records[i]
            r.update(start_s=sec(start), done_s=sec(done), batch_size=size, batch_id=batch_id)
            r["latency_s"] = r["done_s"] - r["scheduled_s"]
            r["queue_s"] = r["start_s"] - r["scheduled_s"]
            r["service_s"] = r["done_s"] - r["start_s"]
            if generative and token_ns:
                r.update(first_token_s=sec(token_ns[0]), last_token_s=sec(token_ns[-1]), tokens=len(token_ns))
                r["ttft_s"] = r["first_token_s"] - r["scheduled_s"]
                if len(token_ns) > 1:
                    r["tpot_s"] = (token_ns[-1] - token_ns[0]) / 1e9 / (len(token_ns) - 1)
        nxt += size
        batch_id += 1
    return records


def summarize_server(records: list[dict], latency_bound_s: float | None = None,
                     ttft_bound_s: float | None = None, tpot_bound_s: float | None = None,
                     duration_s: float | None = None, target_qps: float | None = None,
                     percentile: float = 99.0) -> dict:
    """Latency distribution (ms), completed samples/s, goodput and whether the bounds hold.

    duration_s defaults to the last completion time (seconds from the start of the schedule).
    completed_per_s = completed requests / duration_s.
    goodput_per_s = requests that completed AND met every given bound (latency <= latency_bound_s,
    ttft <= ttft_bound_s, tpot <= tpot_bound_s; a None TPOT, single-token request, passes the TPOT
    bound) / duration_s.
    constraints_met: every request completed and, for each given bound, the `percentile`-th
    percentile of that metric (over completed requests) is within it (MLPerf Server's rule; use
    `validity.check_validity` for the early-stopping confidence on top of this).
    """
    n = len(records)
    done = [r for r in records if r.get("done_s") is not None]
    if duration_s is None:
        duration_s = max((r["done_s"] for r in done), default=0.0)
    per_s = (lambda k: k / duration_s) if duration_s and duration_s > 0 else (lambda k: None)

    def good(r: dict) -> bool:
        if latency_bound_s is not None and r["latency_s"] > latency_bound_s:
            return False
        if ttft_bound_s is not None and (r.get("ttft_s") is None or r["ttft_s"] > ttft_bound_s):
            return False
        if tpot_bound_s is not None and r.get("tpot_s") is not None and r["tpot_s"] > tpot_bound_s:
            return False
        return True

    n_good = sum(1 for r in done if good(r))
    checks: dict[str, dict] = {}
    for name, bound in (("latency", latency_bound_s), ("ttft", ttft_bound_s), ("tpot", tpot_bound_s)):
        if bound is None:
            continue
        vals = [r.get(f"{name}_s") for r in done]
        vals = [v for v in vals if v is not None]
        value = float(np.percentile(vals, percentile)) if vals else None
        checks[name] = {"bound_s": bound, f"p{percentile:g}_s": value,
                        "met": value is not None and value <= bound}
    sizes = [r["batch_size"] for r in done]
    scheduled = [r["scheduled_s"] for r in records]
    summary = {
        "scheduled": n,
        "completed": len(done),
        "duration_s": duration_s,
        "target_qps": target_qps,
        "offered_qps": (n - 1) / scheduled[-1] if n > 1 and scheduled[-1] > 0 else None,
        "completed_per_s": per_s(len(done)),
        "goodput_per_s": per_s(n_good),
        "good_fraction": n_good / n if n else None,
        "latency_ms": _dist_ms(r["latency_s"] for r in done),
        "queue_ms": _dist_ms(r["queue_s"] for r in done),
        "service_ms": _dist_ms(r["service_s"] for r in done),
        "batch_size_mean": float(np.mean(sizes)) if sizes else None,
        "batch_size_max": max(sizes) if sizes else None,
        "bounds": checks,
        "constraints_met": len(done) == n and all(c["met"] for c in checks.values()),
    }
    if any("ttft_s" in r for r in records):
        summary["ttft_ms"] = _dist_ms(r.get("ttft_s") for r in done)
        summary["tpot_ms"] = _dist_ms(r.get("tpot_s") for r in done)
        tokens = sum(r.get("tokens", 0) for r in done)
        summary["output_tokens_per_s"] = per_s(tokens)
    return summary


def find_peak_rate(run_at_rate: Callable[[float], dict], lo: float, hi: float, iterations: int,
                   meets: Callable[[dict], bool] = lambda s: bool(s.get("constraints_met"))
                   ) -> tuple[float | None, list[dict]]:
    """Bisection for the highest arrival rate whose run still `meets` the constraints.

    Runs `lo` first; if it fails, returns (None, history). `hi` is assumed to fail and is never
    run; each of `iterations` steps runs the midpoint and moves lo (pass) or hi (fail) to it.
    Returns the highest rate that passed, within (hi - lo) / 2**iterations of the boundary if
    meets() is monotone in rate (if every midpoint passes, the answer approaches hi: raise hi).
    history: one {"rate", "passed", "summary"} per run, in order.
    """
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    history: list[dict] = []

    def probe(rate: float) -> bool:
        summary = run_at_rate(rate)
        passed = bool(meets(summary))
        history.append({"rate": rate, "passed": passed, "summary": summary})
        return passed

    if not probe(lo):
        return None, history
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return lo, history
