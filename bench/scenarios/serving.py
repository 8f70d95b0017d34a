"""What the serving scenarios share (`server`, `concurrency`, `sweep`): their options, the requests, the engine, one
run under a load pattern, and the result.

A serving point sends requests (bench/serving/requests.py) to a system an engine builds over the point's session
(bench/serving/engines: `single`, `static`, `continuous`), through the driver's load patterns (open loop, closed
loop, burst), and judges every run by the one validity rule with the SLO (bench/serving/validity.py). Requests are
the first n of one seeded sequence (bench/serving/workload.py, the model's tokenizer), built before any clock: every
variant, engine and machine sees the same ones. Each run gets a fresh system, so an overloaded run never leaves
work behind for the next. Only the point's main run is the timed window (energy, the volume served).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..measurement.timing import LoopSettings
from ..records.schema import Loop, ScenarioProvenance, ScenarioResult, Served, Throughput
from ..records.serving import (Capacity, LengthSummary, Padding, Probe, ServingMetrics, ServingWorkload,
                               SweepLevel, Verdict)
from ..serving.capacity import find_capacity
from ..serving.engines import EngineSettings, engines
from ..serving.loads import LoadResult
from ..serving.metrics import serving_metrics
from ..serving.requests import Request
from ..serving.slo import Slo
from ..serving.validity import judge
from ..serving.workload import OutputLength, PromptLength, build_requests, longest
from ..validity import min_queries, requests_to_span
from . import DriverOptions, Scenario, Workload, driver_for

ENCODER_OUTPUT = 0  # an encoder's request is an embedding: no output tokens
DECODER_OUTPUT = 32
CLOSED_LOOP_ROUNDS = 2  # a sized closed loop sends at least this many requests per user
SIZING_MARGIN = 1.25  # a closed loop sized from a measured rate asks this much more than the minimum duration needs
DEADLINE_FACTOR, DEADLINE_SLACK_S = 3.0, 10.0  # a run ends at 3x its expected length (plus slack): overloaded
BACKLOG_PER_SLOT, BACKLOG_MIN = 8, 64  # default open-loop over-saturation bound: 8 requests per batch slot, >= 64
SEQUENCE_PREFIX = 8  # the requests whose digest names the seeded sequence every run of a point sends a prefix of
RATE_SEARCH_LOW, RATE_SEARCH_HIGH = 8, 1.25  # rate search by default over [x / 8, x], x = 1.25 x the burst's rate


class ServingOptions(DriverOptions):
    """Options every serving scenario takes (README, "Serving")."""

    engine: str | None = Field(None, description="the batching inside the system: single, static or continuous "
                                                 "(default: the backend's, static for in-process engines)")
    max_wait_ms: float = Field(5.0, ge=0, description="static: longest wait for a fuller batch")
    prompt_tokens: PromptLength | None = Field(None, description="prompt lengths (default: the point's seq_len)")
    output_tokens: OutputLength | None = Field(None, description="output lengths (default: 32; encoders 0)")
    ignore_eos: bool = True
    requests: int | None = Field(None, ge=1, description="requests per run (default: what the validity rule needs "
                                                         "for the SLO's highest percentile and the minimum duration)")
    slo: Slo | None = Field(None, description="bounds per metric and percentile, or a preset's name")
    seed: int | None = Field(None, description="requests and arrivals (default: the suite seed)")
    capacity: bool = Field(False, description="also search the highest load meeting every SLO")
    capacity_range: tuple[float, float] | None = Field(None, description="the load range the search bisects "
                                                                         "(default: from the measured rates)")
    capacity_probes: int = Field(8, ge=2, description="most runs one capacity search makes")
    max_backlog: int | None = Field(None, ge=1, description="open loop: stop a run as over-saturated when more "
                                                            "requests are sent and not done (default: 8 per batch "
                                                            "slot, at least 64)")

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, name: str | None) -> str | None:
        if name is not None and name not in engines:
            raise ValueError(f"unknown engine {name!r}; known: {', '.join(engines.names())}")
        return name

    @model_validator(mode="after")
    def _ordered_range(self) -> "ServingOptions":
        if self.capacity_range is not None and not 0 < self.capacity_range[0] < self.capacity_range[1]:
            raise ValueError(f"capacity_range needs 0 < low < high, not {list(self.capacity_range)}")
        return self


class ArrivalOptions(ServingOptions):
    distribution: Literal["poisson", "gamma"] = "poisson"
    burstiness: float = Field(1.0, gt=0, description="gamma shape; 1 = Poisson, < 1 burstier")


def _slo_fix(metric: str, options: dict, bound) -> str:
    percentile = options.get("percentile", 0.99)
    return f"`slo: {{{metric}: {{p{percentile * 100:g}: {bound}}}}}`"


# the options the `server` scenario of earlier versions took, each with its one-line fix
RETIRED_OPTIONS = {
    "batching": lambda value, options: f"write `engine: {'static' if value == 'dynamic' else 'single'}` "
                                       "(the batching is the engine's)",
    "latency_bound_ms": lambda value, options: f"write {_slo_fix('e2e_ms', options, value)}",
    "percentile": lambda value, options: "the percentile is the SLO's key: e.g. "
                                         f"{_slo_fix('e2e_ms', options, options.get('latency_bound_ms', 130))}",
    "ttft_bound_ms": lambda value, options: f"write {_slo_fix('ttft_ms', options, value)}",
    "tpot_bound_ms": lambda value, options: f"write {_slo_fix('tpot_ms', options, value)}",
    "new_tokens": lambda value, options: f"write `output_tokens: {value}`",
    "find_peak": lambda value, options: "write `capacity: true` (or run with --find-peak)",
    "peak_low_qps": lambda value, options: "write `capacity_range: [LOW, HIGH]`",
    "peak_high_qps": lambda value, options: "write `capacity_range: [LOW, HIGH]`",
    "peak_iterations": lambda value, options: f"write `capacity_probes: {value}`",
}


class ServingScenario(Scenario):
    """Base of the serving scenarios: their result is a serving result (the report answers with a capacity)."""

    serving = True

    @classmethod
    def retired(cls, options: dict) -> dict[str, str]:
        return {key: fix(options[key], options) for key, fix in RETIRED_OPTIONS.items() if key in options}

    def work_phases(self, workload, options):
        """None: a request's latency here is queueing and batching, not the steady cost of a phase."""
        return []

    @classmethod
    def unsupported(cls, options: ServingOptions, task: str | None) -> str | None:
        if task == "encoder" and options.output_tokens is not None and longest(options.output_tokens) > 0:
            return "an encoder's request is an embedding: leave output_tokens out (or 0)"
        return None


@dataclass
class Run:
    """One run under one load: its metrics and verdict, and what the record needs of the rest."""

    result: LoadResult
    metrics: ServingMetrics
    verdict: Verdict
    requests: list[Request]
    described: dict


class Serving:
    """A serving point's machinery: the requests, a fresh system per run, sizing, judging and the result."""

    def __init__(self, session: Any, workload: Workload, settings: LoopSettings, options: ServingOptions):
        self.session, self.workload, self.settings, self.options = session, workload, settings, options
        self.driver = driver_for(options)
        self.engine = engines.get(options.engine or "static")()  # the plan names the backend's own
        self.seed = settings.seed if options.seed is None else options.seed
        self.prompt_tokens = workload.seq_len if options.prompt_tokens is None else options.prompt_tokens
        self.output_tokens = options.output_tokens
        if self.output_tokens is None:
            self.output_tokens = ENCODER_OUTPUT if workload.task == "encoder" else DECODER_OUTPUT
        # the longest request sizes an engine's cache (continuous batching's KV blocks)
        self.engine_settings = EngineSettings(max_batch=workload.batch_size, max_wait_s=options.max_wait_ms / 1e3,
                                              max_sequence_tokens=longest(self.prompt_tokens) + longest(
                                                  self.output_tokens))
        self.slo = options.slo
        self.need = max(settings.min_iterations, min_queries(self.slo.highest_percentile()) if self.slo else 1)
        self.max_backlog = options.max_backlog or max(BACKLOG_MIN, BACKLOG_PER_SLOT * workload.batch_size)
        self.pool: list[Request] = []
        self.rate = 0.0  # the highest rate (requests/s) measured so far: what closed loops are sized from
        self.warmup = (0, 0.0)

    # --- requests -----------------------------------------------------------------------------------------

    def requests(self, count: int) -> list[Request]:
        """The first `count` requests of the point's seeded sequence (a longer sequence starts with a shorter one)."""
        if count > len(self.pool):
            self.pool = build_requests(self.workload.tokenizer, count, self.prompt_tokens, self.output_tokens,
                                       self.seed, self.options.ignore_eos)
        return self.pool[:count]

    def open_count(self, rate: float) -> int:
        """Enough for the validity rule at any rate: the percentile's requests, arrivals that span the minimum
        duration; so only the SLO and keeping up decide."""
        if self.options.requests:
            return self.options.requests
        burstiness = self.options.burstiness if self.options.distribution == "gamma" else 1.0
        return max(self.need, requests_to_span(rate, self.settings.min_duration_s, burstiness))

    def closed_count(self, users: int) -> int:
        """The percentile's requests, CLOSED_LOOP_ROUNDS per user (one each would be a burst: no completion ever
        paces an arrival), and enough to fill the minimum duration at the highest rate measured yet."""
        if self.options.requests:
            return self.options.requests
        return max(self.need, CLOSED_LOOP_ROUNDS * users,
                   math.ceil(self.rate * self.settings.min_duration_s * SIZING_MARGIN))

    # --- runs ---------------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Full batches through a fresh system before anything counts; its rate sizes the first closed loops."""
        users = self.workload.batch_size
        requests = self.requests(max(1, self.settings.warmup_iterations) * users)
        run = self._run(lambda system, reqs: self.driver.closed_loop(system, reqs, users, None), requests, None)
        self.warmup = (len(requests), run.metrics.duration_s)

    def open_loop(self, rate: float, timed: bool = False, slo: bool = True) -> Run:
        """Seeded arrivals at `rate` (ArrivalOptions' distribution), stopped early when over-saturated."""
        count = self.open_count(rate)
        deadline = DEADLINE_FACTOR * count / rate + DEADLINE_SLACK_S
        options = self.options
        return self._run(lambda system, reqs: self.driver.open_loop(
            system, reqs, rate, self.seed, options.distribution, options.burstiness, deadline,
            max_backlog=self.max_backlog), self.requests(count), self.slo if slo else None, timed)

    def closed_loop(self, users: int, timed: bool = False, slo: bool = True) -> Run:
        return self._sized(lambda count: self._closed(users, count, timed, slo), users)

    def burst(self, timed: bool = False, slo: bool = False) -> Run:
        """Everything at once: the maximum throughput (judged without the SLO by default: a burst queues)."""
        users = self.workload.batch_size
        return self._sized(lambda count: self._run(
            lambda system, reqs: self.driver.burst(system, reqs, self._deadline(count, users)),
            self.requests(count), self.slo if slo else None, timed), users)

    def _closed(self, users: int, count: int, timed: bool, slo: bool) -> Run:
        return self._run(lambda system, reqs: self.driver.closed_loop(system, reqs, users,
                                                                      self._deadline(count, users)),
                         self.requests(count), self.slo if slo else None, timed)

    def _deadline(self, count: int, users: int) -> float | None:
        """A closed loop's end: 3x the time it should take at the rate measured, scaled to its users."""
        if not self.rate:
            return None
        rate = self.rate * min(users, self.workload.batch_size) / self.workload.batch_size
        return DEADLINE_FACTOR * count / rate + DEADLINE_SLACK_S

    def _sized(self, run_with, users: int) -> Run:
        """A closed-loop run, once again with more requests where it fell short of the minimum duration (its count
        came from a rate measured at another load), as LoadGen repeats a run it finds too short."""
        run = run_with(self.closed_count(users))
        if not run.verdict.checks["min_duration"] and not self.options.requests and run.metrics.duration_s > 0:
            scale = self.settings.min_duration_s / run.metrics.duration_s * SIZING_MARGIN
            run = run_with(math.ceil(len(run.requests) * scale))
        return run

    def _run(self, pattern, requests: list[Request], slo: Slo | None, timed: bool = False) -> Run:
        system = self.engine.build(self.session, self.engine_settings)
        system.start()
        try:
            if timed:
                self.settings.window.opened()
            result = pattern(system, requests)
            if timed:
                self.settings.window.closed()
            described = system.describe()
        finally:
            system.stop()
        metrics = serving_metrics(result, system.engine, slo)
        verdict = judge(result, slo, self.settings.min_duration_s, self.settings.min_iterations)
        self.rate = max(self.rate, metrics.requests_per_s)
        return Run(result, metrics, verdict, requests, described)

    # --- capacity -----------------------------------------------------------------------------------------

    def search(self, parameter: Literal["rate_per_s", "users"], run_at, low: float, high: float) -> Capacity:
        """find_capacity over [low, high] (the suite's `capacity_range` where given), each probe with its run."""
        if self.options.capacity_range is not None:
            low, high = self.options.capacity_range
        runs: list[Run] = []

        def probe(load: float) -> Verdict:
            runs.append(run_at(load))
            return runs[-1].verdict

        resolution = 1.0 if parameter == "users" else (high - low) / 2 ** (self.options.capacity_probes - 2)
        found = find_capacity(probe, low, high, parameter, resolution=resolution,
                              max_probes=self.options.capacity_probes)
        return found.model_copy(update={"probes": [p.model_copy(update={"metrics": run.metrics})
                                                   for p, run in zip(found.probes, runs)]})

    def rate_range(self) -> tuple[float, float]:
        """Rates up to a little above the most the system serves (a burst's rate: no open loop keeps up beyond
        it, and a rate past it stops early, over-saturated), from an eighth of that."""
        if self.options.capacity_range is not None:
            return self.options.capacity_range
        high = self.burst().metrics.requests_per_s * RATE_SEARCH_HIGH
        return high / RATE_SEARCH_LOW, high

    # --- the result ---------------------------------------------------------------------------------------

    def result(self, main: Run, **extra) -> ScenarioResult:
        """The record's part of a serving point: the main run's metrics, verdict and volume (the timed window's),
        the engine's description and the workload's identity for provenance."""
        m, encoder = main.metrics, self.output_tokens == ENCODER_OUTPUT
        served_ok = [r for r, t in zip(main.requests, main.result.timings) if t.ok]
        prompt_tokens = sum(len(r.prompt_ids) for r in served_ok)
        tokens = prompt_tokens if encoder else m.output_tokens
        per_s = tokens / m.duration_s if m.duration_s else 0.0
        warm_requests, warm_s = self.warmup
        return ScenarioResult(
            throughput=Throughput(samples_per_s=m.requests_per_s, tokens_per_s=per_s,
                                  requests_per_s=m.requests_per_s, output_tokens_per_s=m.output_tokens_per_s,
                                  basis="successful requests (and their tokens) / (last completion - first arrival "
                                        "or send)"),
            loop=Loop(driver=self.options.driver, queries=m.requests, wall_s=m.duration_s,
                      warmup_iterations=warm_requests, warmup_s=warm_s, min_iterations=self.settings.min_iterations,
                      min_duration_s=self.settings.min_duration_s,
                      served=Served(samples=len(served_ok), tokens=tokens,
                                    tokens_counted="input tokens processed" if encoder else "output tokens generated")),
            sufficient=main.verdict.valid, serving=m, verdict=main.verdict, padding=padding(main),
            provenance=ScenarioProvenance(engine=main.described, workload=self.describe_workload(main.requests)),
            **extra)

    def describe_workload(self, requests: list[Request]) -> ServingWorkload:
        return ServingWorkload(requests=len(requests), digest=requests_digest(requests),
                               sequence=requests_digest(self.requests(SEQUENCE_PREFIX)), seed=self.seed,
                               prompt_tokens=_lengths(self.prompt_tokens, [len(r.prompt_ids) for r in requests]),
                               output_tokens=_lengths(self.output_tokens, [r.output_tokens for r in requests]),
                               ignore_eos=self.options.ignore_eos)


def requests_digest(requests: list[Request]) -> str:
    """sha256 (16 hex) of the requests' prompt ids and output lengths, in order."""
    blob = json.dumps([[list(r.prompt_ids), r.output_tokens] for r in requests], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _lengths(spec, values: list[int]) -> LengthSummary:
    return LengthSummary(spec=spec if isinstance(spec, int) else spec.model_dump(), mean=sum(values) / len(values),
                         min=min(values), max=max(values))


def padding(run: Run) -> Padding | None:
    """The padding the engine reported for the run's successful requests (Completion.info `padding_tokens`)."""
    reported = [(request, timing.info["padding_tokens"]) for request, timing in zip(run.requests, run.result.timings)
                if timing.ok and "padding_tokens" in timing.info]
    if not reported:
        return None
    tokens = sum(len(request.prompt_ids) for request, _ in reported)
    pad = sum(count for _, count in reported)
    return Padding(tokens=tokens, padding_tokens=pad, waste=pad / (tokens + pad) if tokens + pad else 0.0)


def levels_capacity(levels: list[SweepLevel]) -> Capacity | None:
    """A sweep's capacity: the highest rate level valid below the lowest invalid one (the levels as probes)."""
    rates = sorted((level for level in levels if level.kind == "rate"), key=lambda level: level.metrics.load.rate_per_s)
    if not rates:
        return None
    probes = [Probe(load=level.metrics.load.rate_per_s, valid=level.verdict.valid, reasons=level.verdict.reasons,
                    metrics=level.metrics) for level in rates]
    lowest_invalid = next((p.load for p in probes if not p.valid), None)
    valid = [p.load for p in probes if p.valid and (lowest_invalid is None or p.load < lowest_invalid)]
    note = None
    if not valid:
        note = f"even the lowest rate of the sweep ({probes[0].load:.3g}/s) was not valid"
    elif lowest_invalid is None:
        note = f"the highest rate of the sweep ({probes[-1].load:.3g}/s) was valid: the capacity is at least that"
    return Capacity(parameter="rate_per_s", capacity=max(valid) if valid else None, lowest_invalid=lowest_invalid,
                    probes=probes, note=note, method="sweep levels")
