"""A real-time load driver for the server scenario. It knows nothing of models.

Requests arrive on a schedule generated up front. One worker serves them; between batches it sleeps
until the next scheduled arrival (or the batching deadline), never spinning, so it does not steal a
core from the system under test. Latency is counted from the *scheduled* arrival, so queueing counts.

Batching policies:
- `single`: one request at a time, in arrival order.
- `dynamic`: when the worker is free and at least one request has arrived, it waits until either
  `max_batch_size` requests have arrived or `max_wait_s` has passed since the oldest waiting request
  arrived, then serves up to `max_batch_size` of them together as one batch (static batching: a batch
  finishes together; no request joins a running batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from .timing import NO_WINDOW, WindowHook


@dataclass(frozen=True)
class BatchingPolicy:
    kind: Literal["single", "dynamic"] = "single"
    max_batch_size: int = 1
    max_wait_s: float = 0.0

    def __post_init__(self):
        if self.kind == "single" and self.max_batch_size != 1:
            object.__setattr__(self, "max_batch_size", 1)


def _sleep_until(clock_start: float, offset_s: float) -> None:
    remaining = clock_start + offset_s - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def run_server(schedule_s: np.ndarray, serve: Callable[[int, Callable[[int], None]], None],
               policy: BatchingPolicy, deadline_s: float | None = None, window: WindowHook = NO_WINDOW) -> list[dict]:
    """Serve scheduled requests; `serve(n, on_token)` runs a batch of n and calls on_token(i) per token.

    Returns one record per served request with times in seconds relative to the schedule's start. When
    `deadline_s` passes (an overloaded run), the remaining requests are not served: callers see fewer
    records than scheduled and must count the run as failing. `window` is told when the schedule starts and
    when the last request is done.
    """
    n = len(schedule_s)
    records: list[dict] = []
    window.opened()
    start = time.perf_counter()
    now = lambda: time.perf_counter() - start  # noqa: E731
    i = 0
    while i < n:
        if deadline_s is not None and now() > deadline_s:
            break
        _sleep_until(start, schedule_s[i])  # idle until the next request exists
        if policy.kind == "dynamic":
            deadline = schedule_s[i] + policy.max_wait_s
            while True:
                arrived = int(np.searchsorted(schedule_s, now(), side="right")) - i
                if arrived >= policy.max_batch_size or now() >= deadline or i + arrived >= n:
                    break
                _sleep_until(start, min(deadline, schedule_s[i + arrived]))
        arrived = max(1, int(np.searchsorted(schedule_s, now(), side="right")) - i)
        size = min(arrived, policy.max_batch_size)
        first_token: list[float] = []
        begun = now()
        serve(size, lambda k: first_token.append(now()) if k == 0 else None)
        done = now()
        for j in range(i, i + size):
            records.append({"scheduled_s": float(schedule_s[j]), "start_s": begun, "done_s": done,
                            "latency_s": done - float(schedule_s[j]), "queue_s": begun - float(schedule_s[j]),
                            "ttft_s": first_token[0] - float(schedule_s[j]) if first_token else None,
                            "batch_size": size})
        i += size
    window.closed()
    return records


def summarize_server(records: list[dict], samples_per_request: int, latency_bound_s: float,
                     ttft_bound_s: float | None = None, tpot_bound_s: float | None = None,
                     new_tokens: int | None = None) -> dict:
    """Latency percentiles, completed samples/s and goodput (requests meeting every bound per second)."""
    lat = np.array([r["latency_s"] for r in records])
    duration = max(r["done_s"] for r in records) - min(r["scheduled_s"] for r in records)

    def meets(r: dict) -> bool:
        if r["latency_s"] > latency_bound_s:
            return False
        if ttft_bound_s is not None and r["ttft_s"] is not None and r["ttft_s"] > ttft_bound_s:
            return False
        if tpot_bound_s is not None and new_tokens and new_tokens > 1 and r["ttft_s"] is not None:
            if (r["latency_s"] - r["ttft_s"]) / (new_tokens - 1) > tpot_bound_s:
                return False
        return True

    good = sum(meets(r) for r in records)
    out = {
        "requests": len(records),
        "duration_s": duration,
        "latency_ms": {f"p{p}": float(np.percentile(lat, p) * 1e3) for p in (50, 90, 99)},
        "queue_ms_p99": float(np.percentile([r["queue_s"] for r in records], 99) * 1e3),
        "mean_batch_size": float(np.mean([r["batch_size"] for r in records])),
        "completed_samples_per_s": len(records) * samples_per_request / duration,
        "goodput_requests_per_s": good / duration,
        "good_fraction": good / len(records),
        "bounds_ms": {"latency": latency_bound_s * 1e3, "ttft": ttft_bound_s and ttft_bound_s * 1e3,
                      "tpot": tpot_bound_s and tpot_bound_s * 1e3},
    }
    ttft = [r["ttft_s"] for r in records if r["ttft_s"] is not None]
    if ttft:
        out["ttft_ms"] = {f"p{p}": float(np.percentile(ttft, p) * 1e3) for p in (50, 90, 99)}
    return out


def find_peak_rate(run_at_rate: Callable[[float], dict], lo: float, hi: float, iterations: int,
                   meets: Callable[[dict], bool]) -> tuple[float | None, list[dict]]:
    """Bisection on the arrival rate for the highest rate whose run still meets the bound (`lo` is
    assumed to meet it; if no probe does, the answer is None)."""
    history, best = [], None
    for _ in range(iterations):
        rate = (lo + hi) / 2
        result = run_at_rate(rate)
        ok = meets(result)
        history.append({"rate_qps": rate, "meets_bound": ok, "result": result})
        if ok:
            best, lo = rate, rate
        else:
            hi = rate
    return best, history
