"""Serving metrics from per-request timings, with vLLM `bench serve`'s definitions.

Per request (latency counts from the scheduled arrival in an open loop, else from the send):
- TTFT: first non-empty token event - origin;
- TPOT: (E2E - TTFT) / (output tokens - 1), for replies of two tokens or more;
- ITL: the gaps between the request's consecutive token events (pooled over requests);
- E2E: completion - origin.
Per run, over `duration` = last completion (or the moment the run gave up) - first origin: requests/s and output
tokens/s of the successful requests, goodput (requests within every SLO bound per second: failed and unserved
requests are never good), and tokens/s per user (GenAI-Perf: each request's (output - 1) / (E2E - TTFT), averaged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records.serving import Distribution, ServingMetrics
from .loads import LoadResult
from .slo import Slo


@dataclass(frozen=True)
class RequestLatency:
    """One successful request's latencies in ms; None where a metric does not apply."""

    index: int
    ttft_ms: float | None       # None: no token event (an embedding, or a system that does not stream)
    tpot_ms: float | None       # None: fewer than two output tokens
    itl_ms: tuple[float, ...]
    e2e_ms: float
    output_tokens: int


def request_latencies(result: LoadResult) -> list[RequestLatency]:
    """The latencies of every successful request, in workload order."""
    latencies = []
    for timing in result.timings:
        if not timing.ok:
            continue
        origin = timing.origin_ns
        events = [at_ns for at_ns, count in timing.token_ns if count > 0]
        e2e = (timing.done_ns - origin) / 1e6
        ttft = (events[0] - origin) / 1e6 if events else None
        tpot = (e2e - ttft) / (timing.output_tokens - 1) if ttft is not None and timing.output_tokens > 1 else None
        latencies.append(RequestLatency(index=timing.index, ttft_ms=ttft, tpot_ms=tpot, e2e_ms=e2e,
                                        itl_ms=tuple((b - a) / 1e6 for a, b in zip(events, events[1:])),
                                        output_tokens=timing.output_tokens))
    return latencies


def samples_ms(latencies: list[RequestLatency]) -> dict[str, list[float]]:
    """Each metric's samples: one per request that has it, ITL pooled over requests."""
    return {"ttft_ms": [r.ttft_ms for r in latencies if r.ttft_ms is not None],
            "tpot_ms": [r.tpot_ms for r in latencies if r.tpot_ms is not None],
            "itl_ms": [gap for r in latencies for gap in r.itl_ms],
            "e2e_ms": [r.e2e_ms for r in latencies]}


def duration_s(result: LoadResult) -> float:
    """First origin (scheduled arrival or send) to the last completion, or to the moment the run gave up."""
    origins = [t.origin_ns for t in result.timings if t.origin_ns is not None]
    ends = [t.done_ns for t in result.timings if t.done_ns is not None]
    if result.stopped_ns is not None:
        ends.append(result.stopped_ns)
    if not origins or not ends:
        return 0.0
    return (max(ends) - min(origins)) / 1e9


def distribution(samples: list[float]) -> Distribution:
    if not samples:
        return Distribution(count=0)
    p50, p90, p99 = (float(v) for v in np.percentile(samples, [50, 90, 99]))
    return Distribution(count=len(samples), mean=float(np.mean(samples)), p50=p50, p90=p90, p99=p99)


def serving_metrics(result: LoadResult, engine: str, slo: Slo | None = None) -> ServingMetrics:
    """The run's metrics; goodput only where an SLO says what a good request is."""
    latencies = request_latencies(result)
    samples = samples_ms(latencies)
    duration = duration_s(result)
    per_s = (lambda n: n / duration) if duration > 0 else (lambda n: 0.0)
    output_tokens = sum(r.output_tokens for r in latencies)
    decode_rates = [1e3 / r.tpot_ms for r in latencies if r.tpot_ms]
    good = sum(slo.admits(r) for r in latencies) if slo is not None else None
    return ServingMetrics(
        engine=engine, load=result.load, requests=len(result.timings),
        failed_requests=sum(not t.ok for t in result.timings), unserved_requests=result.unserved,
        stop_reason=result.stop_reason,
        duration_s=duration, output_tokens=output_tokens, requests_per_s=per_s(len(latencies)),
        output_tokens_per_s=per_s(output_tokens), good_requests=good,
        goodput_requests_per_s=per_s(good) if good is not None else None,
        tokens_per_s_per_user=float(np.mean(decode_rates)) if decode_rates else None,
        **{metric: distribution(values) for metric, values in samples.items()})
