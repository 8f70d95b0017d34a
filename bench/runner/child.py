"""What runs inside the isolated child: load, transform, prepare, measure, and report back once.

This module must stay cheap to import: torch is imported only after the thread settings are in
the environment, so OpenMP reads them at start-up.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any


def _set_thread_env(intra: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(intra)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _redirect_output(log_path: str | None) -> None:
    if not log_path:
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def execute(point_data: dict, cache_dir: str) -> dict:
    """Run one point in this process and return {"metrics", "provenance"}. Raises on failure."""
    from ..hardware.machine import cpu_flags, default_threads
    from ..plan import RunPoint

    point = RunPoint.model_validate(point_data)
    s = point.settings
    intra = s.intra_op_threads or default_threads()
    _set_thread_env(intra)

    import torch

    torch.set_num_threads(intra)
    torch.set_num_interop_threads(s.inter_op_threads)
    torch.manual_seed(s.seed)

    from ..backends import backends
    from ..context import RunContext
    from ..errors import Unsupported
    from ..measurement.memory import PeakRSS
    from ..measurement.timing import LoopSettings
    from ..models import sources
    from ..models.inputs import make_inputs
    from ..scenarios import Workload, scenarios
    from ..variants import transforms

    if point.device == "cuda" and not torch.cuda.is_available():
        raise Unsupported("CUDA is not available on this machine")

    loaded = sources.get(point.model.source)().load(point.model, seed=s.seed)
    vocab = loaded.config.vocab_size
    inputs, input_info = make_inputs(loaded.tokenizer, loaded.task, point.batch_size, point.seq_len, vocab)
    ctx = RunContext(device=point.device, task=loaded.task, batch_size=point.batch_size, seq_len=point.seq_len,
                     seed=s.seed, intra_op_threads=intra, inter_op_threads=s.inter_op_threads,
                     cpu_flags=cpu_flags(), cache_dir=Path(cache_dir), tokenizer=loaded.tokenizer,
                     model_config=loaded.config,
                     model_key={"model": point.model.model_dump(mode="json"), "seed": s.seed, "torch_transforms": []})

    quality_in = reference = None
    if point.quality.enabled:  # the fp32 reference, before any transform touches the model
        from ..quality.evaluate import quality_inputs, torch_outputs

        quality_in = quality_inputs(loaded.tokenizer, loaded.task, vocab, point.quality)
        reference = torch_outputs(loaded.model, loaded.task, quality_in)

    applied: list[dict] = []
    for spec in point.variant.transforms:
        cls = transforms.get(spec.name)
        if cls.stage != "torch":
            continue  # graph-stage transforms are applied by the backend after export
        loaded.model, info = cls().apply(loaded.model, cls.Options.model_validate(spec.options), ctx)
        applied.append({"name": spec.name, **info})
        ctx.model_key["torch_transforms"].append(spec.model_dump(mode="json"))

    session = backends.get(point.backend)().prepare(loaded, point.variant, point.device, inputs, ctx)
    scenario_cls = scenarios.get(point.scenario.name)
    options = scenario_cls.Options.model_validate(point.scenario.options)
    settings = LoopSettings(warmup_iterations=s.warmup_iterations, warmup_s=s.warmup_s,
                            min_iterations=s.min_iterations, min_duration_s=s.min_duration_s,
                            max_duration_s=s.max_duration_s, instability_cv=s.instability_cv, seed=s.seed)
    workload = Workload(point.batch_size, point.seq_len)

    from ..hardware.energy import select_meter

    meter = select_meter(point.device)
    if point.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        meter.start()
        metrics = scenario_cls().run(session, workload, settings, options)
        joules = meter.stop()
    from ..variants.torch_quant import weight_bytes

    memory: dict[str, Any] = {"peak_rss_bytes": rss.peak_bytes, "peak_rss_method": rss.method,
                              "parameter_bytes": _parameter_bytes(loaded.model),
                              "weight_bytes": weight_bytes(loaded.model),
                              "weight_bytes_method": "serialized state_dict of the transformed torch model"}
    if point.device == "cuda":
        memory["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        memory["cuda_peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    metrics["memory"] = memory
    metrics["energy"] = _energy(meter, joules, metrics, workload)
    # the weights the backend actually streams: the exported graph for ORT, the torch model otherwise
    metrics["work"] = _work(loaded, point, session.info.get("model_file_bytes") or memory["weight_bytes"], applied)
    if quality_in is not None:
        metrics["quality"] = _quality(session, quality_in, reference, point, loaded.weights)

    provenance = {"weights": loaded.weights, **loaded.provenance, "inputs": input_info,
                  "transforms": applied, "backend": session.info,
                  "threads": {"intra_op": intra, "inter_op": s.inter_op_threads}}
    return {"metrics": metrics, "provenance": provenance}


def _quality(session, quality_in, reference, point, weights: str) -> dict:
    """Quality after the timed window; a failure here is recorded without losing the timing."""
    from ..quality.evaluate import compare

    try:
        test = [session.infer(batch) for batch in quality_in.batches]
        return compare(reference, test, quality_in, point.quality, weights)
    except Exception as exc:  # noqa: BLE001 - the latency result stays valid
        return {"error": f"{type(exc).__name__}: {exc}"}


def _energy(meter, joules, metrics: dict, workload) -> dict:
    """Energy over the scenario (warm-up included), or `unavailable` with the reason; never estimated."""
    from ..hardware.energy import derived

    out = meter.describe()
    loop = metrics.get("loop") or {}
    if joules is not None and loop.get("queries"):
        inferences = loop["queries"] * workload.batch_size
        out.update(derived(joules, inferences, inferences * workload.seq_len, loop["wall_s"]))
        out["window"] = "whole scenario including warm-up; per-inference figures divide by timed queries"
    return out


DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def _work(loaded, point, weight_bytes: int, applied: list[dict]) -> dict:
    """FLOPs and bytes of one query, for roofline efficiency and projections."""
    from ..hardware import flops

    config = loaded.config
    scale = heads = 1.0
    for t in applied:  # structured pruning shrinks the matmuls and heads the config still describes
        scale *= t.get("matmul_param_ratio", 1.0)
        heads *= t.get("attention_head_ratio", 1.0)
    act_bytes = DTYPE_BYTES[point.variant.precision]
    fwd = flops.forward_flops(config, loaded.task, point.batch_size, point.seq_len)
    fwd_total = fwd["linear"] * scale + fwd["attention"] * heads + fwd["lm_head"]
    moved = flops.bytes_moved(config, point.batch_size, point.seq_len, weight_bytes, act_bytes)
    work = {"flops": fwd_total, "flops_breakdown": fwd, "bytes": moved["total"], "bytes_breakdown": moved,
            "intensity": flops.arithmetic_intensity(fwd_total, moved["total"]), "matmul_param_scale": scale,
            "attention_head_scale": heads,
            "precision": point.variant.precision, "convention": fwd["convention"] + "; " + moved["convention"]}
    new_tokens = point.scenario.options.get("new_tokens", 32) if point.scenario.name == "generate" else 0
    if new_tokens:
        context = point.seq_len + new_tokens // 2
        step = flops.decode_step_flops(config, point.batch_size, context)
        step_bytes = flops.bytes_moved(config, point.batch_size, 1, weight_bytes, act_bytes, decode_context=context)
        work["decode_step"] = {"flops": step["linear"] * scale + step["attention"] * heads + step["lm_head"],
                               "bytes": step_bytes["total"], "context": context, "bytes_breakdown": step_bytes}
        work["decode_step"]["intensity"] = flops.arithmetic_intensity(work["decode_step"]["flops"],
                                                                      step_bytes["total"])
    return work


def _parameter_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def child_main(point_data: dict, cache_dir: str, log_path: str | None, conn: Any) -> None:
    """Entry point of the spawned process: always sends exactly one outcome message."""
    _redirect_output(log_path)
    try:
        from ..errors import Unsupported

        try:
            outcome = {"status": "ok", **execute(point_data, cache_dir)}
        except Unsupported as exc:
            outcome = {"status": "unsupported", "error": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - every failure must become a record
        traceback.print_exc()
        last = traceback.extract_tb(exc.__traceback__)[-1:] or [None]
        where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last[0] else ""
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}{where}".strip()}
    try:
        conn.send(outcome)
    finally:
        conn.close()
