"""`generate`: greedy decoding of a fixed number of tokens per request, with TTFT, TPOT and ITL."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from ..hardware.work import WorkPhase
from ..measurement.generation import request_timings, summarize_generation
from ..measurement.timing import time_loop
from ..records.schema import Loop, ScenarioResult
from . import Scenario, scenarios


class GenerateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_tokens: int = Field(32, ge=1, description="exactly this many tokens per request (no early stop at EOS)")


@scenarios.register("generate")
class Generate(Scenario):
    """Single stream of generation requests: prompt = the point's seq_len tokens, batch = its batch size."""

    Options = GenerateOptions
    tasks = frozenset({"causal-lm"})

    def work_phases(self, workload, options) -> list[WorkPhase]:
        """The prompt pass, then one decode step per token at the mean context."""
        return [WorkPhase("prefill"), WorkPhase("decode", context=workload.seq_len + options.new_tokens // 2)]

    def run(self, session, workload, settings, options) -> ScenarioResult:
        requests: list[dict] = []
        clock = time.perf_counter_ns

        def one_request() -> None:
            stamps: list[int] = []
            start = clock()
            session.generate(options.new_tokens, lambda i: stamps.append(clock()))
            requests.append(request_timings(start, stamps, clock()))

        timed = time_loop(one_request, settings)
        measured = requests[timed.warmup_iterations:]
        generation = summarize_generation(measured, workload.batch_size, workload.seq_len, settings.instability_cv)
        wall_s = timed.wall_ns / 1e9
        return ScenarioResult(
            generation=generation,
            latency=generation.e2e,
            throughput=generation.throughput,
            loop=Loop(queries=timed.count, wall_s=wall_s, warmup_iterations=timed.warmup_iterations,
                      warmup_s=timed.warmup_ns / 1e9, stopped_by_max_duration=timed.stopped_by_max_duration,
                      min_iterations=settings.min_iterations, min_duration_s=settings.min_duration_s,
                      served=workload.served(timed.count * workload.batch_size, options.new_tokens)),
            sufficient=timed.count >= settings.min_iterations and wall_s >= settings.min_duration_s,
            samples_ms=[round(ns / 1e6, 4) for ns in timed.samples_ns],
            phase_seconds={"prefill": generation.ttft.p50_ms / 1e3,
                           **({"decode": generation.tpot.p50_ms / 1e3} if generation.tpot else {})},
        )
