"""What the `server` scenario of the prepared batch needs besides its traffic: the batching policy it names,
the summary of its served requests and the peak-rate search. The traffic is a driver's (`Driver.server`: the
open loop of bench/serving/loads.py or LoadGen's, into the single or static engine of bench/serving/engines).

Batching policies (the engines):
- `single`: one request at a time, in arrival order.
- `dynamic`: the static engine: when the worker is free and at least one request has arrived, it waits until
  either `max_batch_size` requests have arrived or `max_wait_s` has passed since the oldest waiting request
  arrived, then serves up to `max_batch_size` of them together as one batch (a batch finishes together; no
  request joins a running batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np


@dataclass(frozen=True)
class BatchingPolicy:
    kind: Literal["single", "dynamic"] = "single"
    max_batch_size: int = 1
    max_wait_s: float = 0.0

    def __post_init__(self):
        if self.kind == "single" and self.max_batch_size != 1:
            object.__setattr__(self, "max_batch_size", 1)


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
