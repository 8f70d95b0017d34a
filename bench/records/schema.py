"""The record of one run, as typed, immutable pydantic models (schema version 4).

A scenario returns a `ScenarioResult`; trackers add `Memory`, `Energy`; the work accounting adds `Work`;
the quality check adds `Quality`; the backend describes its session (`SessionDescription`); the runner wraps
them into a `Record` with the point's config, the machine, the harness version and the provenance. Records
are written once and never changed (pyperf's rule); results/README.md is generated from these models
(`python -m bench.records.docs`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ..config import RunPoint
from .base import Frozen, Open
from .serving import Capacity, Padding, ServingMetrics, ServingWorkload, SweepLevel, Verdict

SCHEMA_VERSION = 4
Status = Literal["ok", "failed", "timeout", "unsupported"]
__all__ = ["Frozen", "Open"]  # the record's base models, imported from here across the harness


# --- what a scenario measures -----------------------------------------------------------------------

class LatencySummary(Frozen):
    """Percentiles and spread of per-query latencies, with pyperf-style warnings."""

    count: int = Field(description="queries summarised")
    mean_ms: float | None = None
    stdev_ms: float | None = None
    cv: float | None = Field(None, description="stdev / mean")
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    median_ci95_ms: tuple[float, float] | None = Field(
        None, description="distribution-free 95% interval of the median (binomial order statistics)")
    percentile_supported: dict[str, bool] = Field(
        default_factory=dict, description="whether the count supports a p90 / p99 claim (bench/validity.py)")
    unstable: bool = Field(False, description="stdev at or above the suite's instability_cv of the mean")
    warnings: list[str] = Field(default_factory=list, description="unstable, outliers, few samples")


class Throughput(Frozen):
    samples_per_s: float
    tokens_per_s: float | None = None
    basis: str = Field(description="how the rate was computed")
    output_tokens_per_s: float | None = Field(None, description="generation: batch x new tokens / mean latency")
    total_tokens_per_s: float | None = Field(None, description="generation: prompt tokens counted too")
    requests_per_s: float | None = None
    decode_tokens_per_s: float | None = Field(None, description="generation: batch / mean TPOT")


class Served(Frozen):
    """What the timed window served, as the scenario counted it: the volume energy per inference and per token
    divide by."""

    samples: int = Field(description="samples completed (a batch of b is b samples; a server request is one)")
    tokens: int = Field(description="tokens, as `tokens_counted` says")
    tokens_counted: Literal["input tokens processed", "output tokens generated"]


class Loop(Frozen):
    """How the timed window ran."""

    driver: str = Field("bench", description="the traffic generator: `bench` (ours) or `loadgen` (MLPerf LoadGen)")
    queries: int = Field(description="timed queries (offline: batches the system ran)")
    samples: int | None = Field(None, description="samples issued (offline: all at once)")
    wall_s: float = Field(description="first query issued to last completed")
    warmup_iterations: int = 0
    warmup_s: float | None = None
    stopped_by_max_duration: bool = False
    min_iterations: int
    min_duration_s: float
    served: Served | None = Field(None, description="what the timed window served")


class Generation(Frozen):
    """Per-request generation timing (vLLM / GenAI-Perf definitions)."""

    ttft: LatencySummary
    e2e: LatencySummary
    tpot: LatencySummary | None = None
    itl: LatencySummary | None = None
    throughput: Throughput
    new_tokens: int
    prompt_tokens: int


class Batching(Frozen):
    policy: Literal["single", "dynamic", "offline"]
    max_batch_size: int
    max_wait_ms: float | None = None


class ScenarioProvenance(Frozen):
    """What a serving scenario tells the record's provenance: the engine that served and the requests."""

    engine: dict[str, Any] | None = Field(None, description="the serving system's describe()")
    workload: ServingWorkload | None = None


class ScenarioResult(Frozen):
    """What a scenario returns: timing only, never memory, energy or quality."""

    latency: LatencySummary | None = None
    throughput: Throughput | None = None
    loop: Loop | None = None
    sufficient: bool = Field(False, description="minimum queries and duration reached (serving: the main run's "
                                                "verdict is valid)")
    samples_ms: list[float] = Field(default_factory=list, description="every per-query latency, for significance tests")
    generation: Generation | None = None
    batching: Batching | None = None
    phase_seconds: dict[str, float] = Field(
        default_factory=dict, description="seconds of one occurrence of each work phase the scenario declares (its "
                                          "median), for the efficiency tables: forward, prefill (TTFT), decode (TPOT)")
    serving: ServingMetrics | None = Field(None, description="a serving scenario's main run (its presence says the "
                                                             "result is a serving result: its answer is a capacity, "
                                                             "never a latency ratio)")
    verdict: Verdict | None = Field(None, description="the main run's validity by the one rule, SLO included")
    sweep: list[SweepLevel] | None = Field(None, description="a sweep's levels, in the order they ran")
    capacity: Capacity | None = Field(None, description="the highest load meeting every SLO: a capacity search's "
                                                        "probes, or a sweep's levels")
    padding: Padding | None = Field(None, description="padding the engine computed over the main run")
    provenance: ScenarioProvenance | None = Field(None, exclude=True, description="what the scenario adds to the "
                                                                                  "record's provenance")


# --- what the trackers and the accounting add --------------------------------------------------------

class Memory(Frozen):
    peak_rss_bytes: int | None = Field(None, description="the child's high-water mark during the scenario")
    peak_rss_method: str = ""
    parameter_bytes: int | None = Field(None, description="parameters and buffers in memory")
    weight_bytes: int | None = None
    weight_bytes_method: str | None = None
    device_peak_allocated_bytes: int | None = Field(
        None, description="the device allocator's high-water mark over the scenario (CUDA: max_memory_allocated)")
    device_peak_reserved_bytes: int | None = Field(
        None, description="memory the device allocator held at its peak (CUDA: max_memory_reserved)")


class Energy(Frozen):
    """Energy over one window: the meter is read when the timed traffic starts and when it ends (warm-up and
    peak probes outside), and every figure divides by that window's seconds or by what it served."""

    status: Literal["measured", "unavailable"]
    source: str = ""
    reason: str = ""
    covers: list[str] = Field(default_factory=list, description="what the figure includes: `package`, `dram`, "
                                                                "`psys` (the platform), `gpu`")
    joules: float | None = Field(None, description="energy over the window")
    window: str | None = Field(None, description="which window the meter read")
    window_s: float | None = Field(None, description="seconds between the meter's two readings")
    inferences: int | None = Field(None, description="samples served in the window (a server request is one)")
    tokens: int | None = Field(None, description="tokens in the window, as `tokens_counted` says")
    tokens_counted: str | None = None
    avg_watts: float | None = Field(None, description="joules / window_s")
    joules_per_inference: float | None = Field(None, description="joules / inferences")
    joules_per_token: float | None = Field(None, description="joules / tokens")
    samples_per_s_per_watt: float | None = Field(None, description="inferences / joules")


class PhaseWork(Frozen):
    """The work of one occurrence of a timed phase of a query, as its scenario declares its phases: `forward` (a
    plain forward: every position's logits), `prefill` (a generation's prompt pass: the last position's logits, KV
    cache written) or `decode` (one new token per row at `context`)."""

    name: Literal["forward", "prefill", "decode"]
    flops: float
    bytes: float
    intensity: float
    items: int = Field(description="rows it serves")
    tokens: int = Field(description="tokens it processes (decode: one per row)")
    context: int | None = Field(None, description="decode: the KV length each row attends over (the mean)")
    flops_breakdown: dict[str, Any] = Field(default_factory=dict)
    bytes_breakdown: dict[str, Any] = Field(default_factory=dict)


class Work(Frozen):
    """Analytic FLOPs and bytes of one query (hardware/work.py), for rooflines and projections."""

    flops: float = Field(description="a plain forward: the LM head over every position")
    bytes: float
    intensity: float
    flops_breakdown: dict[str, Any] = Field(default_factory=dict)
    bytes_breakdown: dict[str, Any] = Field(default_factory=dict)
    matmul_param_scale: float = 1.0
    attention_head_scale: float = 1.0
    precision: str = Field(description="the variant's float precision")
    compute_precision: str = Field(description="the GEMM ceiling the point is judged against, declared by its transforms")
    convention: str = ""
    phases: list[PhaseWork] = Field(default_factory=list, description="the timed phases its scenario declares; the "
                                    "efficiency tables set each against the seconds the scenario measured for it")


class QualityBound(Frozen):
    metric: str
    min: float | None = None
    max: float | None = None


class Quality(Frozen):
    """Against the fp32 PyTorch outputs of the same weights on the same real text."""

    verdict: Literal["within bound", "breaks bound", "not meaningful (random weights)", "error"]
    within_bound: bool | None = Field(None, description="null where the quality is not meaningful or failed")
    meaningful: bool = True
    note: str | None = None
    bound: QualityBound | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    cosine_mean: float | None = None
    cosine_min: float | None = None
    perplexity: float | None = None
    perplexity_fp32: float | None = None
    perplexity_ratio: float | None = None
    kl_divergence_mean: float | None = None
    top1_agreement: float | None = None
    reference_cache_hit: bool | None = Field(None, description="the fp32 reference came from the on-disk cache")
    error: str | None = None


class Metrics(ScenarioResult):
    memory: Memory | None = None
    energy: Energy | None = None
    work: Work | None = None
    quality: Quality | None = None


# --- the record -------------------------------------------------------------------------------------

class Harness(Frozen):
    """Which harness made the record: resume and comparisons trust only records of the same one."""

    version: str = Field(description="the bench package version")
    commit: str | None = Field(None, description="git commit of the source tree, when it is a git checkout")
    dirty: bool | None = Field(None, description="uncommitted changes in that checkout")
    source_digest: str = Field(description="sha256 of the package's Python sources: exact even when dirty")

    @property
    def label(self) -> str:
        commit = f"+{self.commit[:8]}" if self.commit else ""
        return f"{self.version}{commit}{'-dirty' if self.dirty else ''} ({self.source_digest[:8]})"

    def same_as(self, other: "Harness") -> bool:
        return self.version == other.version and self.source_digest == other.source_digest


class Machine(Open):
    """The machine description (hardware/machine.py); `machine_id` names its results folder."""

    machine_id: str


class CompileCounters(Frozen):
    """The compiler's counters at one moment (torch.compile: dynamo's)."""

    graphs: int = Field(description="distinct graphs compiled")
    frames_compiled: int = Field(description="Python frames compiled so far: a rise means a recompilation")
    graph_breaks: int
    graph_break_reasons: list[str] = Field(default_factory=list, description="the first ten")


class Compiled(Frozen):
    """What compiling the model did when the session opened, and whether it compiled again later."""

    compiler: str = Field(description="e.g. `inductor`")
    settings: dict[str, Any] = Field(default_factory=dict, description="the compiler's options (torch.compile: mode, "
                                                                       "dynamic, fullgraph, freezing)")
    compile_s: float = Field(description="compilation and the calls until one compiled nothing new, on the point's "
                                         "inputs; outside the scenario's warm-up and timed loop")
    calls_ms: list[float] = Field(default_factory=list, description="each of those calls")
    at_open: CompileCounters = Field(description="counters when compilation finished")
    after_traffic: CompileCounters | None = Field(None, description="counters when the timed traffic ended")
    at_end: CompileCounters | None = Field(None, description="counters when the record was written (the quality "
                                                             "check's other shapes compile before it)")
    recompiled_in_traffic: int | None = Field(None, description="frames compiled inside the warm-up and timed loop: "
                                                                "a static-shape point should compile none (flagged)")


class Threads(Frozen):
    intra_op: int
    inter_op: int


AS_SERVED = "as served"  # the precision of a session whose model runs in a server the harness does not configure


class SessionDescription(Frozen):
    """What ran the model, as the backend that opened the session describes it (every backend fills it)."""

    engine: str = Field(description="the library that runs the model (`torch`, `onnxruntime`)")
    engine_version: str | None = None
    device: str
    precision: str = Field(description="the float precision the session was opened at (transforms declare the "
                                       "precision they compute in)")
    precision_mode: str | None = Field(None, description="`cast` or `autocast`, where the engine takes the model's "
                                                         "precision from the precision stage; `engine` where the "
                                                         "engine runs it itself (its `precision_api`)")
    file: str | None = Field(None, description="the artifact on disk the engine loads; null for a model in memory")
    file_bytes: int | None = Field(None, description="bytes of that file and its external data: the weights the "
                                                     "engine streams (null: measured from the model in memory)")
    lookup_table_bytes: int | None = Field(None, description="bytes of the file's tables a query only gathers rows "
                                                             "from (embeddings)")
    compiled: Compiled | None = Field(None, description="set where the engine compiled the model")
    threads: Threads | None = Field(None, description="the engine's thread pools as it reports them")
    reference: bool = Field(False, description="the backend declares itself the reference implementation: its fp32 "
                                               "points without transforms are the baselines, and quality compares "
                                               "against its outputs")
    properties: dict[str, Any] = Field(default_factory=dict, description="engine-specific settings (ORT: provider, "
                                                                         "graph optimization level, export; PyTorch "
                                                                         "on CUDA: TF32 matmuls)")


class Provenance(Open):
    """Where every input came from: weights real or random, text, transforms applied, the backend's session."""

    weights: Literal["real", "random", "served"] = Field(description="`served`: a server's weights, which the harness "
                                                                      "cannot see (an endpoint it did not build)")
    inputs: dict[str, Any] | None = None
    transforms: list[dict[str, Any]] = Field(default_factory=list)
    backend: SessionDescription | None = Field(None, description="null where no session opened (a failed point)")
    threads: dict[str, int] | None = None
    server_machine: dict[str, Any] | None = Field(
        None, description="the machine that served the model where it is not the one that ran the point (an endpoint "
                          "the point did not launch), as the suite declares it (`machine_id` and what else it says); "
                          "the record's `machine` is then the client's")
    engine: dict[str, Any] | None = Field(None, description="serving: the engine's description (implementation, "
                                                            "version, settings) as its describe() gives it")
    workload: ServingWorkload | None = Field(None, description="serving: the requests, with their digest")


class Phases(Frozen):
    """Where a point's wall time went (seconds): everything but warm-up and the timed loop is overhead."""

    start_s: float | None = Field(None, description="process start and imports, until the child runs the point")
    load_s: float | None = Field(None, description="model loading or initialisation")
    reference_s: float | None = Field(None, description="fp32 quality reference (computed or read from cache)")
    transform_s: float | None = Field(None, description="transforms, precision, export and session creation")
    scenario_s: float | None = Field(None, description="the scenario's whole window: warm-up and timed traffic")
    warmup_s: float | None = None
    timed_s: float | None = None
    quality_s: float | None = Field(None, description="the variant's quality outputs, after the timed window")
    overhead_s: float | None = Field(None, description="wall time minus the scenario's window (warm-up and timed loop)")
    overhead_fraction: float | None = None


class Record(Frozen):
    """One isolated run of one point: written once, never changed."""

    schema_version: Literal[4] = Field(SCHEMA_VERSION, description="bumped when a field changes meaning")
    run_id: str = Field(description="unique id of this run")
    session_id: str = Field(description="shared by the records of one `bench run`")
    point_id: str = Field(description="sha256 (16 hex) of the resolved config minus the suite name")
    status: Status = Field(description="a crash, an OOM kill and a timeout each become a record")
    error: str | None = Field(None, description="why it was not ok")
    started_at: datetime = Field(description="UTC")
    wall_s: float = Field(description="wall time of the point, process start included")
    harness: Harness = Field(description="the harness that made the record")
    config: RunPoint = Field(description="the fully resolved point: model, backend, device, variant, scenario, shape, settings")
    machine: Machine = Field(description="the machine that ran it, as `bench env` prints it")
    node: str | None = Field(None, description="the cluster node (Ray node id or host) the point ran on")
    provenance: Provenance = Field(description="weights real or random, inputs, transforms applied, the session")
    metrics: Metrics = Field(default_factory=Metrics, description="empty unless the status is ok")
    phases: Phases | None = Field(None, description="where the wall time went")
    log: str | None = Field(None, description="the child's stdout/stderr (a path, relative to runs.jsonl)")

    @property
    def machine_id(self) -> str:
        return self.machine.machine_id

    @property
    def key(self) -> tuple[str, str]:
        """A point is identified within a machine: the same point on two machines is two rows."""
        return self.machine_id, self.point_id
