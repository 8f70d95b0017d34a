"""The system `bench serve` serves: one point of a suite (or of a suite the flags make), its model loaded and
prepared exactly as a point's isolated child prepares it, under an engine of bench/serving/engines."""

from __future__ import annotations

from pathlib import Path

from ..config import RunPoint
from ..errors import ConfigError
from .app import Served


def flag_suite(model: str, variant: str, backend: str, device: str, max_batch: int, seq_len: int) -> dict:
    """A one-point suite from `--model SOURCE:ID` (or a model folder) and the other flags."""
    source, _, model_id = model.partition(":")
    if not model_id:
        raise ConfigError("--model", model, "expected SOURCE:ID", "e.g. --model random:gpt2, --model "
                          "packaged:smollm2-135m, --model local:./my-model, or --model-dir ./my-model")
    name = Path(model_id).name if source == "local" else model_id
    return {"name": "serve", "models": [{"name": name, "source": source, "id": model_id}], "backends": [backend],
            "devices": [device], "variants": [variant], "batch_sizes": [max_batch], "seq_lens": [seq_len],
            "scenarios": ["single-stream"]}


def pick_point(points: list[RunPoint], skipped: list[tuple[str, str]], wanted: str | None, where: str) -> RunPoint:
    """The point whose label or id is `wanted` (any, where the suite has one point)."""
    if wanted is None and len({(p.model.name, p.variant.name, p.backend, p.device, p.batch_size) for p in points}) == 1:
        return points[0]
    found = [p for p in points if wanted in (p.label, p.point_id)]
    if found:
        return found[0]
    for label, reason in skipped:
        if label == wanted:
            raise ConfigError(where, "--point", f"the point is skipped: {reason}", "serve another point")
    known = "; ".join(p.label for p in points[:5]) or "(no points)"
    problem = "the suite has several points: say which" if wanted is None else f"no point {wanted!r}"
    raise ConfigError(where, "--point", problem, f"give a label or id from `bench plan`, e.g. {known}")


def build_served(point: RunPoint, engine: str, max_wait_s: float, cache_dir: Path, name: str | None,
                 threads: int | None, max_model_len: int | None = None) -> Served:
    """Load, prepare and wrap `point` in `engine`; Unsupported where the engine cannot serve the session.
    `max_model_len` (at most the model's context length) bounds what is served and sizes the engine for it."""
    from ..hardware.machine import default_threads

    intra = threads or point.settings.intra_op_threads or default_threads()
    import torch

    torch.set_num_threads(intra)
    from ..backends import backends
    from ..isolation.child import load_point, run_context
    from ..models.families import context_length
    from ..serving.engines import EngineSettings, engines
    from ..variants.pipeline import prepare

    if engine not in engines:
        raise ConfigError("--engine", engine, f"unknown engine {engine!r}", f"use one of: {', '.join(engines.names())}")
    backend = backends.get(point.backend)()
    if not backend.holds_model:
        raise ConfigError("--point", point.label, "this model runs in a server already",
                          "serve a point of an in-process backend (pytorch, onnxruntime, ...)")
    if max_model_len is not None and max_model_len < 2:
        raise ConfigError("--max-model-len", str(max_model_len), "must hold a prompt token and an output token",
                          "give 2 or more")
    torch.manual_seed(point.settings.seed)
    source, loaded, inputs, _ = load_point(point, cache_dir)
    context = context_length(loaded.config)
    if max_model_len and context and max_model_len > context:
        raise ConfigError("--max-model-len", str(max_model_len), f"longer than the model's context ({context})",
                          f"give at most {context}")
    max_len = max_model_len or context
    prepared = prepare(loaded, point.variant, backend, inputs, run_context(point, source, loaded, intra, cache_dir))
    settings = EngineSettings(max_batch=point.batch_size, max_wait_s=max_wait_s, max_sequence_tokens=max_len)
    system = engines.get(engine)().build(prepared.session, settings)
    describe = {"point": point.label, "point_id": point.point_id, "weights": loaded.weights,
                "variant": point.variant.name, "backend": point.backend, "device": point.device,
                "engine": engine, "engine_settings": settings.model_dump(), "threads": intra}
    return Served(system=system, tokenizer=loaded.tokenizer, name=name or point.model.name, task=loaded.task,
                  max_model_len=max_len, describe=describe)

