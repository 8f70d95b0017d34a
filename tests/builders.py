"""Records built in tests: valid typed records with the numbers a test sets, nothing measured."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from bench.backends import backends
from bench.config import Defaults, ModelSpec, RunPoint, ScenarioSpec, TransformSpec, VariantSpec
from bench.measurement.stats import summarize
from bench.records.schema import Harness, Loop, Metrics, Record, Throughput

HARNESS = Harness(version="0.0.test", commit=None, dirty=None, source_digest="test")


def point(model: str = "m", backend: str = "pytorch", variant: str = "fp32", precision: str = "fp32",
          transforms=(), batch: int = 8, seq: int = 128, device: str = "cpu", scenario: str = "single-stream",
          teacher: str | None = None, weights: str = "real", task: str = "encoder", target: str | None = None,
          options: dict | None = None, suite: str = "test", settings: Defaults | None = None) -> RunPoint:
    return RunPoint(
        suite=suite, model=ModelSpec(name=model, source="random", id="bert-base-uncased", teacher=teacher),
        task=task, weights=weights, backend=backend, device=device,
        variant=VariantSpec(name=variant, precision=precision,
                            transforms=[t if isinstance(t, TransformSpec) else TransformSpec(**t) for t in transforms]),
        scenario=ScenarioSpec(name=scenario, options=options or {}), batch_size=batch, seq_len=seq,
        settings=settings or Defaults(), target=target)


def record(point_id: str | None = None, machine: str = "test-machine", status: str = "ok", p50: float = 100.0,
           tput: float | None = None, samples_ms=None, error: str | None = None, weights: str = "real",
           metrics: dict | None = None, harness: Harness = HARNESS, session: str = "s", **point_kwargs) -> Record:
    """A record of one point; `samples_ms` (or a tight spread around `p50`) gives its latency summary. An ok point
    carries the session description its backend's declarations give (a reference backend's fp32 is a baseline)."""
    cfg = point(weights=weights, **point_kwargs)
    fields: dict = {}
    provenance: dict = {"weights": weights}
    if status == "ok":
        samples = list(samples_ms) if samples_ms is not None else list(p50 * (1 + 0.001 * np.linspace(-1, 1, 64)))
        rate = tput if tput is not None else cfg.batch_size / (np.mean(samples) / 1e3)
        fields = {"latency": summarize(samples), "samples_ms": samples, "sufficient": True,
                  "throughput": Throughput(samples_per_s=rate, tokens_per_s=rate * cfg.seq_len, basis="test"),
                  "loop": Loop(queries=len(samples), wall_s=sum(samples) / 1e3, min_iterations=64, min_duration_s=0),
                  "memory": {"peak_rss_bytes": 2**20 * 100, "parameter_bytes": 2**20 * 10}}
        provenance["backend"] = {"engine": "test", "device": cfg.device, "precision": cfg.variant.precision,
                                 "reference": backends.get(cfg.backend).reference}
    fields.update(metrics or {})
    if status == "ok" and isinstance(fields.get("work"), dict) and "phases" not in fields["work"]:
        _as_single_stream_forward(fields, cfg)
    return Record(run_id=(point_id or cfg.point_id) + "-" + session, session_id=session,
                  point_id=point_id or cfg.point_id, status=status, error=error,
                  started_at=datetime(2026, 11, 23, tzinfo=timezone.utc), wall_s=1.0, harness=harness, config=cfg,
                  machine={"machine_id": machine}, provenance=provenance, metrics=Metrics.model_validate(fields))


def _as_single_stream_forward(fields: dict, cfg) -> None:
    """A `work` given without phases is what single-stream declares: one forward, timed at the p50."""
    work = fields["work"]
    fields["work"] = {**work, "phases": [{"name": "forward", "flops": work["flops"], "bytes": work["bytes"],
                                          "intensity": work["intensity"], "items": cfg.batch_size,
                                          "tokens": cfg.batch_size * cfg.seq_len}]}
    fields.setdefault("phase_seconds", {"forward": fields["latency"].p50_ms / 1e3})


def serving_metrics(rate: float | None = 10.0, done: float = 9.8, p99: float = 40.0, checks: dict | None = None,
                    estimate_ms: float | None = 40.0, users: int | None = None, engine: str = "static",
                    output_tokens_per_s: float = 0.0, capacity: dict | None = None, requests: int = 100) -> dict:
    """The metrics of a serving record: its main run at `rate` requests/s (an open loop; `users`: a closed loop)
    completing `done` requests/s with E2E p99 `p99` ms, judged against an E2E p99 SLO of 130 ms; `checks` fails
    verdict checks by name (min_requests, min_duration, slo, served, no_failures), and the run is valid
    (sufficient) when none fails. `estimate_ms`: the early-stopping upper bound on p99 (None: too few requests)."""
    checks = {"min_requests": True, "min_duration": True, "slo": True, "served": True, "no_failures": True,
              **(checks or {})}
    valid = all(checks.values())
    load = {"pattern": "closed-loop", "users": users} if users else {"pattern": "open-loop", "rate_per_s": rate,
                                                                       "distribution": "poisson", "seed": 0}
    e2e = {"count": requests, "mean": p99 / 2, "p50": p99 / 2, "p90": p99 * 0.9, "p99": p99}
    serving = {"engine": engine, "load": load, "requests": requests, "failed_requests": 0, "unserved_requests": 0,
               "duration_s": requests / done, "output_tokens": round(output_tokens_per_s * requests / done),
               "requests_per_s": done, "output_tokens_per_s": output_tokens_per_s, "goodput_requests_per_s": done,
               "good_requests": requests, "ttft_ms": {"count": 0}, "tpot_ms": {"count": 0}, "itl_ms": {"count": 0},
               "e2e_ms": e2e}
    verdict = {"valid": valid, "checks": checks, "reasons": [f"{k} failed" for k, ok in checks.items() if not ok],
               "slo": [{"metric": "e2e_ms", "percentile": "p99", "bound_ms": 130.0, "estimate_ms": estimate_ms,
                        "samples": requests, "met": checks["slo"]}]}
    return {"serving": serving, "verdict": verdict, "sufficient": valid, "latency": None, "samples_ms": [],
            "capacity": capacity,
            "throughput": {"samples_per_s": done, "tokens_per_s": output_tokens_per_s, "basis": "test"}}
