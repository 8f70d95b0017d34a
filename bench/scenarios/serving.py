"""`server`: seeded Poisson (or gamma) arrivals at a target rate, latency from the scheduled arrival,
MLPerf-style validity, and an optional search for the peak rate that still meets the bound.

The suite's batch size is the largest batch the server may form (dynamic batching); each request is
one sample. Decoders with `new_tokens > 0` generate per request, and TTFT/TPOT bounds apply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..measurement.schedule import arrival_schedule
from ..measurement.server import BatchingPolicy, find_peak_rate, run_server, summarize_server
from ..measurement.stats import summarize
from ..measurement.validity import check_validity
from . import Scenario, scenarios


class ServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate_qps: float = Field(5.0, gt=0, description="target arrival rate (requests/s)")
    distribution: Literal["poisson", "gamma"] = "poisson"
    burstiness: float = Field(1.0, gt=0, description="gamma shape; 1 = Poisson, < 1 burstier")
    seed: int | None = Field(None, description="arrival seed (default: the suite seed)")
    batching: Literal["single", "dynamic"] = "single"
    max_wait_ms: float = Field(5.0, ge=0, description="dynamic batching: longest wait for a fuller batch")
    latency_bound_ms: float = Field(130.0, gt=0, description="bound on the percentile below (MLPerf BERT: 130 ms)")
    percentile: float = Field(0.99, gt=0, lt=1)
    new_tokens: int = Field(0, ge=0, description="decoders: tokens generated per request (0: one forward pass)")
    ttft_bound_ms: float | None = Field(2000.0, gt=0)
    tpot_bound_ms: float | None = Field(200.0, gt=0)
    find_peak: bool = False
    peak_low_qps: float = Field(0.5, gt=0)
    peak_high_qps: float = Field(200.0, gt=0)
    peak_iterations: int = Field(6, ge=1)


@scenarios.register("server")
class Server(Scenario):
    Options = ServerOptions

    def run(self, session, workload, settings, options) -> dict:
        policy = BatchingPolicy(options.batching, workload.batch_size if options.batching == "dynamic" else 1,
                                options.max_wait_ms / 1e3)
        if options.new_tokens:
            serve = lambda n, on_token: session.generate(options.new_tokens, on_token, rows=n)  # noqa: E731
        else:
            serve = lambda n, on_token: session.run_rows(n)  # noqa: E731
        for _ in range(max(1, settings.warmup_iterations)):
            serve(policy.max_batch_size, lambda i: None)
        seed = settings.seed if options.seed is None else options.seed

        def run_at(rate: float) -> dict:
            n = max(settings.min_iterations, int(rate * settings.min_duration_s) + 1)
            schedule = arrival_schedule(rate, n, seed, options.distribution, options.burstiness)
            # an overloaded probe stops at twice its schedule's span (plus one bound) instead of draining for minutes
            records = run_server(schedule, serve, policy, deadline_s=2 * schedule[-1] + options.latency_bound_ms / 1e3)
            summary = summarize_server(records, 1, options.latency_bound_ms / 1e3,
                                       options.ttft_bound_ms / 1e3 if options.new_tokens and options.ttft_bound_ms else None,
                                       options.tpot_bound_ms / 1e3 if options.new_tokens and options.tpot_bound_ms else None,
                                       options.new_tokens or None)
            latencies = [r["latency_s"] for r in records]
            summary["validity"] = check_validity(latencies, summary["duration_s"], settings.min_duration_s,
                                                 settings.min_iterations, options.percentile,
                                                 options.latency_bound_ms / 1e3)
            summary["scheduled_requests"] = n
            if len(records) < n:
                summary["validity"]["valid"] = False
                summary["validity"]["checks"]["all_served"] = False
                summary["validity"]["reasons"].append(f"overloaded: {n - len(records)} of {n} requests unserved "
                                                      "at the deadline")
            summary["target_qps"] = rate
            summary["_latencies_ms"] = [v * 1e3 for v in latencies]
            return summary

        result = run_at(options.rate_qps)
        metrics = {"latency": summarize(result.pop("_latencies_ms"), settings.instability_cv), "server": result,
                   "throughput": {"samples_per_s": result["completed_samples_per_s"],
                                  "tokens_per_s": result["completed_samples_per_s"] * workload.seq_len,
                                  "basis": "completed requests / (last completion - first scheduled arrival)"},
                   "batching": {"policy": policy.kind, "max_batch_size": policy.max_batch_size,
                                "max_wait_ms": options.max_wait_ms},
                   "sufficient": result["validity"]["valid"]}
        if options.find_peak:
            def strip(summary: dict) -> dict:
                summary.pop("_latencies_ms", None)
                return summary

            peak, history = find_peak_rate(lambda r: strip(run_at(r)), options.peak_low_qps, options.peak_high_qps,
                                           options.peak_iterations, lambda s: s["validity"]["valid"])
            metrics["peak"] = {"rate_qps": peak, "criterion": "highest rate whose run is valid, bound included",
                               "history": [{"rate_qps": h["rate_qps"], "meets_bound": h["meets_bound"],
                                            "p99_ms": h["result"]["latency_ms"]["p99"],
                                            "completed_samples_per_s": h["result"]["completed_samples_per_s"],
                                            "reasons": h["result"]["validity"]["reasons"]} for h in history]}
        return metrics
