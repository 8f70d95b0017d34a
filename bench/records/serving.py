"""What a serving run puts in the record: the load, the metrics (vLLM definitions), the validity verdict, the
capacity search, the sweep's levels, the workload's identity and the padding an engine computed.

These are the record's shapes; bench/serving computes them (loads.py, metrics.py, validity.py, capacity.py) and
the scenarios (bench/scenarios/serving.py) assemble them. They live here, with the rest of the record, so the
record never imports what measures it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..validity import CONFIDENCE, RULE
from .base import Frozen


class Load(Frozen):
    """What the load was: goes in the record beside the metrics."""

    pattern: Literal["open-loop", "closed-loop", "burst"]
    rate_per_s: float | None = Field(None, description="open loop: mean arrival rate")
    distribution: Literal["poisson", "gamma"] | None = Field(None, description="open loop: inter-arrival gaps")
    burstiness: float | None = Field(None, description="gamma shape: 1 is Poisson, below 1 burstier")
    seed: int | None = Field(None, description="open loop: the arrival schedule's seed")
    users: int | None = Field(None, description="closed loop: requests in flight, each sent when one completes")
    deadline_s: float | None = Field(None, description="the run ends here; requests not served by then fail")
    max_backlog: int | None = Field(None, description="open loop: stop early when more are sent and not done")


class Distribution(Frozen):
    """Mean and percentiles (numpy's linear interpolation) of one metric's samples; None without samples."""

    count: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class ServingMetrics(Frozen):
    """One serving run: the load, the engine, throughput and latency (vLLM definitions; see bench.serving.metrics)."""

    engine: str = Field(description="the system under test's engine: single, static, continuous, endpoint ...")
    load: Load
    requests: int = Field(description="requests in the run, failed and unserved included")
    failed_requests: int = Field(description="requests that failed or were not served: never dropped")
    unserved_requests: int = Field(description="of the failed: not completed when the run stopped")
    stop_reason: str | None = Field(None, description="why the run stopped with requests unserved: the deadline, "
                                                      "or over-saturation (the backlog outgrew `load.max_backlog`)")
    duration_s: float = Field(description="first arrival (or send) to last completion, or to the stop")
    output_tokens: int = Field(description="output tokens of the successful requests")
    requests_per_s: float = Field(description="successful requests / duration")
    output_tokens_per_s: float = Field(description="output tokens / duration")
    goodput_requests_per_s: float | None = Field(
        None, description="requests within every SLO bound / duration (None without an SLO)")
    good_requests: int | None = Field(None, description="requests within every SLO bound")
    tokens_per_s_per_user: float | None = Field(
        None, description="mean over requests of (output tokens - 1) / (E2E - TTFT): the decode rate a user sees")
    ttft_ms: Distribution
    tpot_ms: Distribution
    itl_ms: Distribution = Field(description="gaps between consecutive token events, pooled over requests")
    e2e_ms: Distribution

    @property
    def over_saturated(self) -> bool:
        return bool(self.stop_reason and self.stop_reason.startswith("over-saturated"))


class SloCheck(Frozen):
    metric: str
    percentile: str = Field(description="p99, p90 ...")
    bound_ms: float
    estimate_ms: float | None = Field(description="conservative estimate: None when the samples are too few")
    samples: int
    met: bool


class Verdict(Frozen):
    valid: bool
    checks: dict[str, bool] = Field(description="min_requests, min_duration, slo, served, no_failures")
    reasons: list[str] = Field(description="why each failed check failed")
    slo: list[SloCheck] = Field(default_factory=list)
    confidence: float = CONFIDENCE
    rule: str = RULE


class Probe(Frozen):
    load: float
    valid: bool
    reasons: list[str]
    metrics: ServingMetrics | None = Field(None, description="the probe's run (the scenario adds it)")


class Capacity(Frozen):
    parameter: Literal["rate_per_s", "users"]
    capacity: float | None = Field(description="the highest load found valid; None when even the lowest was not")
    lowest_invalid: float | None = Field(description="the lowest load found invalid; None when even the highest "
                                                     "was valid (the capacity is at least `capacity`)")
    probes: list[Probe] = Field(description="in the order they ran")
    note: str | None = Field(None, description="why the answer is only a bound, where it is")
    method: str = Field("bisection", description="`bisection` (a capacity search) or `sweep levels` (the highest "
                                                 "valid rate of a sweep)")


class SweepLevel(Frozen):
    """One run of a sweep (GuideLLM's profile): synchronous (one user), throughput (everything at once), or an
    open-loop rate between the two."""

    kind: Literal["synchronous", "throughput", "rate"]
    metrics: ServingMetrics
    verdict: Verdict = Field(description="judged with the SLO, but the throughput level without it (a burst "
                                         "queues by design)")


class LengthSummary(Frozen):
    spec: Any = Field(description="the option as given: a fixed count, {mean, stdev, min, max} or {min, max}")
    mean: float
    min: int
    max: int


class ServingWorkload(Frozen):
    """The requests of a serving point: the first `requests` of one seeded sequence, the same for every variant,
    engine and machine given the same tokenizer, lengths and seed (bench.serving.workload)."""

    requests: int = Field(description="requests of the point's main run")
    digest: str = Field(description="sha256 (16 hex) of those requests' prompt ids and output lengths, in order: "
                                    "equal digests, equal requests")
    sequence: str = Field(description="the digest of the sequence's first requests (up to 8): runs of any length "
                                      "with equal `sequence` sent prefixes of one sequence, so they are paired")
    seed: int
    prompt_tokens: LengthSummary
    output_tokens: LengthSummary
    ignore_eos: bool


class Padding(Frozen):
    """Tokens an engine computed for padding (rows of a batch padded to its longest prompt)."""

    tokens: int = Field(description="prompt tokens of the requests that reported padding")
    padding_tokens: int
    waste: float = Field(description="padding_tokens / (tokens + padding_tokens)")

