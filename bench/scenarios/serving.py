"""`server`: seeded Poisson (or gamma) arrivals at a target rate, latency from the scheduled arrival,
MLPerf-style validity, and an optional search for the peak rate that still meets the bound.

The suite's batch size is the largest batch the server may form (dynamic batching); each request is
one sample. Decoders with `new_tokens > 0` generate per request, and TTFT/TPOT bounds apply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..measurement.server import BatchingPolicy, find_peak_rate, summarize_server
from ..measurement.stats import summarize
from ..measurement.timing import NO_WINDOW
from ..validity import check_validity, min_queries, requests_to_span
from ..records.schema import Batching, Loop, PeakProbe, PeakSearch, ScenarioResult, ServerResult, Throughput
from . import DriverOptions, Scenario, driver_for, scenarios


class ServerOptions(DriverOptions):
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

    def work_phases(self, workload, options):
        """None: a request's latency here is queueing and batching, not the steady cost of a phase."""
        return []

    def run(self, session, workload, settings, options) -> ScenarioResult:
        policy = BatchingPolicy(options.batching, workload.batch_size if options.batching == "dynamic" else 1,
                                options.max_wait_ms / 1e3)
        if options.new_tokens:
            serve = lambda n, on_token: session.generate(options.new_tokens, on_token, rows=n)  # noqa: E731
        else:
            serve = lambda n, on_token: session.run_rows(n)  # noqa: E731
        for _ in range(max(1, settings.warmup_iterations)):
            serve(policy.max_batch_size, lambda i: None)
        seed = settings.seed if options.seed is None else options.seed
        driver = driver_for(options)
        bound_s = options.latency_bound_ms / 1e3
        windows = iter([settings.window])  # the first run is the timed window (its energy); peak probes come after

        def run_at(rate: float) -> tuple[ServerResult, list[float]]:
            # enough for the validity rule to judge the run at any rate: its percentile's queries, arrivals that
            # span the minimum duration; so only the latency bound and keeping up decide (and --find-peak bisects)
            n = max(settings.min_iterations, min_queries(options.percentile),
                    requests_to_span(rate, settings.min_duration_s,
                                     options.burstiness if options.distribution == "gamma" else 1.0))
            span_s = n / rate
            # an overloaded probe stops at twice its schedule's span (plus one bound) instead of draining for minutes
            served = driver.server(serve, rate, n, seed, options.distribution, options.burstiness, policy,
                                   deadline_s=2 * span_s + bound_s, window=next(windows, NO_WINDOW))
            summary = summarize_server(served, 1, bound_s,
                                       options.ttft_bound_ms / 1e3 if options.new_tokens and options.ttft_bound_ms else None,
                                       options.tpot_bound_ms / 1e3 if options.new_tokens and options.tpot_bound_ms else None,
                                       options.new_tokens or None)
            latencies = [r["latency_s"] for r in served]
            validity = check_validity(latencies, summary["duration_s"], settings.min_duration_s,
                                      settings.min_iterations, options.percentile, bound_s)
            if len(served) < n:
                validity["valid"] = False
                validity["checks"]["all_served"] = False
                validity["reasons"].append(f"overloaded: {n - len(served)} of {n} requests unserved at the deadline")
            result = ServerResult(**summary, validity=validity, scheduled_requests=n, target_qps=rate)
            return result, [v * 1e3 for v in latencies]

        result, latencies_ms = run_at(options.rate_qps)
        peak = None
        if options.find_peak:
            best, history = find_peak_rate(lambda r: run_at(r)[0], options.peak_low_qps, options.peak_high_qps,
                                           options.peak_iterations, lambda s: s.validity.valid)
            peak = PeakSearch(rate_qps=best, criterion="highest rate whose run is valid, bound included",
                              history=[PeakProbe(rate_qps=h["rate_qps"], meets_bound=h["meets_bound"],
                                                 p99_ms=h["result"].latency_ms["p99"],
                                                 completed_samples_per_s=h["result"].completed_samples_per_s,
                                                 reasons=h["result"].validity.reasons) for h in history])
        return ScenarioResult(
            latency=summarize(latencies_ms, settings.instability_cv),
            server=result,
            throughput=Throughput(samples_per_s=result.completed_samples_per_s,
                                  tokens_per_s=result.completed_samples_per_s * workload.seq_len,
                                  basis="completed requests / (last completion - first scheduled arrival)"),
            batching=Batching(policy=policy.kind, max_batch_size=policy.max_batch_size,
                              max_wait_ms=options.max_wait_ms),
            loop=Loop(driver=options.driver, queries=result.requests, wall_s=result.duration_s,
                      warmup_iterations=max(1, settings.warmup_iterations), min_iterations=settings.min_iterations,
                      min_duration_s=settings.min_duration_s,
                      served=workload.served(result.requests, options.new_tokens)),
            sufficient=result.validity.valid,
            samples_ms=[round(v, 4) for v in latencies_ms],
            peak=peak,
        )
