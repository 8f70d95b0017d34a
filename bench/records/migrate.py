"""Read records of earlier schema versions as the current one, one version step at a time.

Version 1 (bench 0.1, plain dicts) differs from 2 in:
  * the harness version: v1 kept the git commit under `machine.project`; v2 has `harness`;
  * scenarios: v1's `latency` and `throughput` timed the same single-stream loop; v2 calls it
    `single-stream` (the point id is recomputed from the renamed config);
  * quality: v2 adds a `verdict`, and random-weight quality is never "within bound";
  * work: v2 records the compute precision its transforms declare; v1 records get the rule v1 used;
  * the private `_wall_s`/`_queries` keys some v1 scenarios leaked are dropped.

Version 2 differs from 3 in:
  * `provenance.backend`: v2 kept the session's free-form `info` dict; v3 has the typed `SessionDescription`.
    `model_file_bytes` becomes `file_bytes`, `model_file` `file`, the thread counts `threads`, torch.compile's
    `compile` `compiled` (its options under `settings`), the torch version (or, for ORT, the machine's
    onnxruntime version) `engine_version`; what is left (export, providers, graph level, TF32) goes to
    `properties`. `reference` is what v2 hard-wired: the `pytorch` backend. A failed point's `{}` becomes null;
  * memory: `cuda_peak_allocated_bytes` / `cuda_peak_reserved_bytes` become `device_peak_*`;
  * work: v3 keeps the phases its scenario declared (`work.phases`) and the seconds it measured for each
    (`metrics.phase_seconds`). v2 knew two scenarios' phases by name: single-stream and offline time a forward
    (their p50, and batch / samples/s), generate a decode step (its TPOT p50). A v2 generation gets no prefill:
    v2 charged its prompt pass the LM head over every prompt token.

Version 3 differs from 4 in serving: v3's `server` scenario recorded `metrics.server` (latency from the scheduled
arrival, one bound on one percentile, a validity dict) and `metrics.peak` (--find-peak's bisection); v4 records
every serving scenario as `metrics.serving` (vLLM's metrics of the main run), `metrics.verdict` (the one rule, the
bound as an SLO on E2E at that percentile) and `metrics.capacity` (the search's probes). What v3 did not measure
stays empty: its E2E keeps p50/p90/p99 without a mean, TTFT only where it was bounded, no TPOT or ITL; `single`
batching is the `single` engine and `dynamic` the `static` one.
"""

from __future__ import annotations

import copy

V1_SCENARIOS = {"latency": "single-stream", "throughput": "single-stream"}
V1_INT8_TRANSFORMS = ("int8-dynamic", "int8-static")
V2_ENGINES = {"pytorch": "torch", "torch-compile": "torch", "onnxruntime": "onnxruntime"}
V2_REFERENCE_BACKEND = "pytorch"
V2_COMPILE_SETTINGS = ("mode", "dynamic", "fullgraph", "freezing")
V2_FORWARD_SCENARIOS = ("single-stream", "offline")


def migrate(data: dict) -> dict:
    version = data.get("schema_version")
    if version not in STEPS:
        raise ValueError(f"unknown schema_version {version!r}")
    while version in STEPS:
        data = STEPS[version](data)
        version = data["schema_version"]
    return data


def _v1_to_v2(old: dict) -> dict:
    from ..config import RunPoint

    rec = copy.deepcopy(old)
    rec["schema_version"] = 2
    machine = rec.get("machine") or {}
    project = machine.pop("project", None) or {}
    rec["harness"] = {"version": "0.1.0", "commit": project.get("commit"), "dirty": project.get("dirty"),
                      "source_digest": "unknown (schema 1)"}
    config = rec["config"]
    scenario = config["scenario"]
    scenario["name"] = V1_SCENARIOS.get(scenario["name"], scenario["name"])
    rec["point_id"] = RunPoint.model_validate(config).point_id
    metrics = rec.get("metrics") or {}
    for private in [k for k in metrics if k.startswith("_")]:
        metrics.pop(private)
    quality = metrics.get("quality")
    if quality:
        if not quality.get("meaningful", True):
            quality.pop("within_bound", None)  # v1 said "within bound" for random weights (a defect)
        quality["verdict"] = _verdict(quality)
    work = metrics.get("work")
    if work:
        names = " ".join(t["name"] for t in config["variant"]["transforms"])
        work["compute_precision"] = "int8" if any(n in names for n in V1_INT8_TRANSFORMS) else work["precision"]
    if metrics.get("loop"):
        metrics["loop"].setdefault("driver", "bench")
    validity = (metrics.get("server") or {}).get("validity")
    if validity:
        validity.setdefault("tolerance", 0)
    rec["provenance"] = rec.get("provenance") or {"weights": config.get("weights")}
    return rec


def _verdict(quality: dict) -> str:
    if quality.get("error"):
        return "error"
    if not quality.get("meaningful", True):
        return "not meaningful (random weights)"
    return "within bound" if quality.get("within_bound") else "breaks bound"


def _v2_to_v3(old: dict) -> dict:
    rec = copy.deepcopy(old)
    rec["schema_version"] = 3
    memory = (rec.get("metrics") or {}).get("memory") or {}
    for kind in ("allocated", "reserved"):
        if f"cuda_peak_{kind}_bytes" in memory:
            memory[f"device_peak_{kind}_bytes"] = memory.pop(f"cuda_peak_{kind}_bytes")
    provenance = rec.get("provenance") or {}
    info = provenance.get("backend")
    provenance["backend"] = _session_description(info, rec["config"], rec.get("machine") or {}) if info else None
    if (rec.get("metrics") or {}).get("work"):
        _work_phases(rec["metrics"], rec["config"])
    return rec


def _work_phases(metrics: dict, config: dict) -> None:
    """v2's forward count and decode step as v3's declared phases, with the seconds v2's tables set them against."""
    work, batch, seq = metrics["work"], config["batch_size"], config["seq_len"]
    step = work.pop("decode_step", None)
    phases, seconds = [], {}
    scenario = config["scenario"]["name"]
    if scenario in V2_FORWARD_SCENARIOS:
        phases.append({"name": "forward", "flops": work["flops"], "bytes": work["bytes"],
                       "intensity": work["intensity"], "items": batch, "tokens": batch * seq,
                       "flops_breakdown": work.get("flops_breakdown", {}),
                       "bytes_breakdown": work.get("bytes_breakdown", {})})
        latency, throughput = metrics.get("latency") or {}, metrics.get("throughput") or {}
        if scenario == "single-stream" and latency.get("p50_ms"):
            seconds["forward"] = latency["p50_ms"] / 1e3
        elif scenario == "offline" and throughput.get("samples_per_s"):
            seconds["forward"] = batch / throughput["samples_per_s"]
    tpot = ((metrics.get("generation") or {}).get("tpot") or {}).get("p50_ms")
    if step:
        phases.append({"name": "decode", "flops": step["flops"], "bytes": step["bytes"],
                       "intensity": step["intensity"], "items": batch, "tokens": batch, "context": step["context"],
                       "bytes_breakdown": step.get("bytes_breakdown", {})})
        if tpot:
            seconds["decode"] = tpot / 1e3
    work["phases"] = phases
    metrics["phase_seconds"] = seconds


def _session_description(info: dict, config: dict, machine: dict) -> dict:
    """A v2 session `info` dict as a v3 SessionDescription."""
    info = dict(info)
    backend = config["backend"]
    engine = V2_ENGINES.get(backend, backend)
    libraries = machine.get("libraries") or {}
    version = info.pop("torch", None) or libraries.get(engine) or libraries.get(f"{engine}-gpu")
    compiled = info.pop("compile", None)
    intra, inter = info.pop("intra_op_threads", None), info.pop("inter_op_threads", None)
    info.pop("provider", None)  # the device, which the description carries
    return {"engine": engine, "engine_version": version, "device": config["device"],
            "precision": info.pop("precision", config["variant"]["precision"]),
            "precision_mode": info.pop("precision_mode", None), "file": info.pop("model_file", None),
            "file_bytes": info.pop("model_file_bytes", None),
            "lookup_table_bytes": info.pop("lookup_table_bytes", None),
            "compiled": _compiled(compiled) if compiled else None,
            "threads": {"intra_op": intra, "inter_op": inter} if intra is not None and inter is not None else None,
            "reference": backend == V2_REFERENCE_BACKEND, "properties": info}


def _compiled(info: dict) -> dict:
    """v2's torch.compile `compile` dict as a v3 `Compiled` (its version and note are the description's)."""
    return {"compiler": info.get("backend", "inductor"),
            "settings": {k: info[k] for k in V2_COMPILE_SETTINGS if k in info},
            "compile_s": info["compile_s"], "calls_ms": info.get("calls_ms", []), "at_open": info["at_open"],
            "after_traffic": info.get("after_traffic"), "at_end": info.get("at_end"),
            "recompiled_in_traffic": info.get("recompiled_in_traffic")}


V3_ENGINES = {"single": "single", "dynamic": "static"}
V3_CHECKS = {"min_queries": "min_requests", "min_duration": "min_duration", "latency_bound": "slo",
             "all_served": "served"}


def _v3_to_v4(old: dict) -> dict:
    rec = copy.deepcopy(old)
    rec["schema_version"] = 4
    metrics = rec.get("metrics") or {}
    server, peak = metrics.pop("server", None), metrics.pop("peak", None)
    if server:
        options = rec["config"]["scenario"].get("options") or {}
        engine = V3_ENGINES[(metrics.get("batching") or {}).get("policy", "single")]
        metrics["serving"] = _serving(server, options, engine)
        metrics["verdict"] = _verdict_of(server)
    if peak:
        metrics["capacity"] = _capacity(peak)
    return rec


def _serving(server: dict, options: dict, engine: str) -> dict:
    """v3's ServerResult as v4's ServingMetrics: what it measured, nothing invented."""
    done, scheduled = server["requests"], server["scheduled_requests"]
    tokens = done * options.get("new_tokens", 0)
    latency, ttft = server["latency_ms"], server.get("ttft_ms")
    return {"engine": engine,
            "load": {"pattern": "open-loop", "rate_per_s": server["target_qps"],
                     "distribution": options.get("distribution", "poisson"),
                     "burstiness": options.get("burstiness") if options.get("distribution") == "gamma" else None},
            "requests": scheduled, "failed_requests": scheduled - done, "unserved_requests": scheduled - done,
            "stop_reason": "the deadline passed" if done < scheduled else None,
            "duration_s": server["duration_s"], "output_tokens": tokens,
            "requests_per_s": server["completed_samples_per_s"],
            "output_tokens_per_s": tokens / server["duration_s"] if server["duration_s"] else 0.0,
            "goodput_requests_per_s": server["goodput_requests_per_s"],
            "good_requests": round(server["good_fraction"] * done),
            "ttft_ms": {"count": done, **ttft} if ttft else {"count": 0}, "tpot_ms": {"count": 0},
            "itl_ms": {"count": 0}, "e2e_ms": {"count": done, **latency}}


def _verdict_of(server: dict) -> dict:
    validity = server["validity"]
    checks = {V3_CHECKS.get(k, k): v for k, v in validity["checks"].items()}
    checks.setdefault("served", server["requests"] == server["scheduled_requests"])
    checks.setdefault("no_failures", True)
    estimate = validity.get("conservative_percentile_s")
    slo = [{"metric": "e2e_ms", "percentile": f"p{validity['percentile'] * 100:g}",
            "bound_ms": server["bounds_ms"]["latency"], "estimate_ms": None if estimate is None else estimate * 1e3,
            "samples": server["requests"], "met": checks["slo"]}]
    return {"valid": validity["valid"], "checks": checks, "reasons": validity["reasons"], "slo": slo,
            "confidence": validity["confidence"]}


def _capacity(peak: dict) -> dict:
    probes = [{"load": p["rate_qps"], "valid": p["meets_bound"], "reasons": p["reasons"]} for p in peak["history"]]
    best = peak["rate_qps"]
    invalid = [p["load"] for p in probes if not p["valid"] and (best is None or p["load"] > best)]
    return {"parameter": "rate_per_s", "capacity": best, "lowest_invalid": min(invalid, default=None),
            "probes": probes, "note": "schema 3's --find-peak: a bisection from its lowest rate, assumed valid"}


STEPS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
