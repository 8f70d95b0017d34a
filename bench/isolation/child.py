"""What runs inside the isolated child: load, prepare (the transform pipeline), measure with trackers
around the scenario, check quality, and report back once.

This module must stay cheap to import: torch is imported only after the thread settings are in the
environment, so OpenMP reads them at start-up.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def set_thread_env(intra: int) -> None:
    """Thread counts for every runtime the child may start, set before any of them is imported."""
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


def execute(point_data: dict, cache_dir: str, spawned_at: float | None = None, log_path: str | None = None) -> dict:
    """Run one point in this process and return {"metrics", "provenance", "phases"}. Raises on failure.

    A backend that does not hold the model in this process (a server's) opens its session on what the source
    loaded, with no transform, quality check, memory or work accounting here; every session is closed at the
    end, also after a failure."""
    from ..hardware.machine import default_threads  # imports no numerical library

    # read from the raw data: validating it imports numpy and scipy, which must see the thread counts
    intra = (point_data.get("settings") or {}).get("intra_op_threads") or default_threads()
    set_thread_env(intra)
    from ..config import RunPoint

    point = RunPoint.model_validate(point_data)
    s = point.settings
    if point.extensions:  # the suite's own backends, scenarios...: registered before anything is looked up
        from ..registry import load_extensions

        load_extensions(point.extensions)

    import torch

    torch.set_num_threads(intra)
    torch.set_num_interop_threads(s.inter_op_threads)
    torch.manual_seed(s.seed)

    from ..backends import backends
    from ..devices import get_device
    from ..hardware.work import point_work
    from ..measurement.size import lookup_table_bytes
    from ..measurement.timing import LoopSettings
    from ..measurement.trackers import EnergyTracker, MemoryTracker
    from ..records.schema import Metrics
    from ..scenarios import Workload, scenarios
    from ..variants.pipeline import Prepared, prepare

    get_device(point.device).require()
    clock = time.time
    started = clock()
    phases: dict[str, float | None] = {"start_s": started - spawned_at if spawned_at else None}

    source, loaded, inputs, input_info = load_point(point, cache_dir)
    phases["load_s"], mark = clock() - started, clock()
    backend = backends.get(point.backend)()

    quality_in = reference = None
    if point.quality.enabled and backend.holds_model:  # the fp32 reference, on disk before a transform touches it
        from ..quality.evaluate import quality_inputs, torch_outputs
        from ..quality.reference import StoredReference

        quality_in = quality_inputs(loaded.tokenizer, loaded.task, loaded.config.vocab_size, point.quality)
        reference = StoredReference(point.model, s.seed, point.quality, loaded, Path(cache_dir))
        reference.ensure(lambda: torch_outputs(loaded.model, loaded.task, quality_in))
    phases["reference_s"], mark = clock() - mark, clock()

    scenario = scenarios.get(point.scenario.name)()
    options = scenario.Options.model_validate(point.scenario.options)
    workload = Workload(point.batch_size, point.seq_len, loaded.tokenizer, loaded.task)
    energy = EnergyTracker(point.device)  # the driver tells it the timed window's edges
    settings = LoopSettings(warmup_iterations=s.warmup_iterations, warmup_s=s.warmup_s,
                            min_iterations=s.min_iterations, min_duration_s=s.min_duration_s,
                            max_duration_s=s.max_duration_s, instability_cv=s.instability_cv, seed=s.seed,
                            window=energy)
    ctx = run_context(point, source, loaded, intra, cache_dir, log_path)
    if backend.holds_model:
        prepared = prepare(loaded, point.variant, backend, inputs, ctx)
    else:
        prepared = Prepared(session=backend.open(loaded.model, loaded, inputs, ctx), model=None, applied=[],
                            precision_info={"scheme": "as the server runs the model"})
    try:
        phases["transform_s"], mark = clock() - mark, clock()
        with MemoryTracker(point.device) as memory, energy:
            result = scenario.run(prepared.session, workload, settings, options)
        phases["scenario_s"], mark = clock() - mark, clock()
        prepared.session.traffic_done()
        if result.loop:
            phases["warmup_s"], phases["timed_s"] = result.loop.warmup_s, result.loop.wall_s

        quality = _quality(prepared.session, quality_in, reference, point, loaded.weights) if quality_in else None
        phases["quality_s"] = clock() - mark
    finally:
        prepared.session.close()

    description = prepared.session.describe()
    mem = work = None
    if prepared.model is not None:
        mem = memory.result(prepared.model)
        # the weights the backend actually streams: the exported graph for ORT, the torch model otherwise, less
        # the embedding tables a query only gathers a few rows from
        if description.file_bytes is not None:
            weights, lookup = description.file_bytes, description.lookup_table_bytes or 0
        else:
            weights, lookup = mem.weight_bytes, lookup_table_bytes(prepared.model)
        work = point_work(loaded.config, loaded.task, point.batch_size, point.seq_len, point.variant.precision,
                          scenario.work_phases(workload, options), weights - lookup,
                          prepared.compute_precision(point.variant.precision),
                          prepared.flop_scale("matmul"), prepared.flop_scale("attention"), lookup_bytes=lookup)
    metrics = Metrics(**dict(result), memory=mem, work=work, quality=quality,
                      energy=energy.result(result.loop))
    provenance = {"weights": loaded.weights, **loaded.provenance, "inputs": input_info,
                  "precision": prepared.precision_info,
                  "transforms": [t.provenance() for t in prepared.applied],
                  "backend": description.model_dump(mode="json"),
                  "threads": {"intra_op": intra, "inter_op": s.inter_op_threads},
                  **(result.provenance.model_dump(mode="json", exclude_none=True) if result.provenance else {})}
    return {"metrics": metrics.model_dump(mode="json"), "provenance": provenance, "phases": phases}


def load_point(point, cache_dir: str | Path | None = None) -> tuple[Any, Any, dict, dict]:
    """(the model source, the loaded model, the timed batch, what the batch is made of) of a point."""
    from ..models import model_sources
    from ..models.inputs import make_inputs

    source = model_sources.get(point.model.source)()
    loaded = source.load(point.model, seed=point.settings.seed, cache_dir=Path(cache_dir) if cache_dir else None)
    inputs, input_info = make_inputs(loaded.tokenizer, loaded.task, point.batch_size, point.seq_len,
                                     loaded.config.vocab_size)
    return source, loaded, inputs, input_info


def run_context(point, source, loaded, intra: int, cache_dir: str | Path, log_path: str | None = None) -> Any:
    """What the transform pipeline and the backend may know of the point (bench/context.py)."""
    from ..context import RunContext
    from ..hardware.machine import cpu_flags

    s = point.settings
    return RunContext(device=point.device, task=loaded.task, batch_size=point.batch_size, seq_len=point.seq_len,
                      seed=s.seed, intra_op_threads=intra, inter_op_threads=s.inter_op_threads,
                      cpu_flags=cpu_flags(), cache_dir=Path(cache_dir), log_path=Path(log_path) if log_path else None,
                      precision=point.variant.precision,
                      precision_mode=point.variant.precision_mode, backend_options=point.variant.backend_options,
                      tokenizer=loaded.tokenizer, model_config=loaded.config,
                      model_key={"model": point.model.model_dump(mode="json"), "seed": s.seed,
                                 "weights": loaded.provenance.get("weights_fingerprint"), "torch_transforms": []},
                      load_original=lambda: source.load(point.model, seed=s.seed, cache_dir=Path(cache_dir)).model)


def _quality(session, quality_in, reference, point, weights: str) -> Any:
    """Quality after the timed window (the reference is read back only now, so it never sits in memory
    during the measurement); a failure here is recorded without losing the timing."""
    from ..quality.evaluate import compare
    from ..records.schema import Quality

    try:
        test = [session.infer(batch) for batch in quality_in.batches]
        result = compare(reference.load(), test, quality_in, point.quality, weights)
        return result.model_copy(update={"reference_cache_hit": reference.cache_hit})
    except Exception as exc:  # noqa: BLE001 - the latency result stays valid
        return Quality(verdict="error", error=f"{type(exc).__name__}: {exc}", reference_cache_hit=reference.cache_hit)


def child_main(point_data: dict, cache_dir: str, log_path: str | None, conn: Any, spawned_at: float | None = None) -> None:
    """Entry point of the spawned process: always sends exactly one outcome message."""
    _redirect_output(log_path)
    try:
        from ..errors import Unsupported

        try:
            outcome = {"status": "ok", **execute(point_data, cache_dir, spawned_at, log_path)}
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
