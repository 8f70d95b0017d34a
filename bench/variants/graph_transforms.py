"""Graph-stage transforms for ONNX Runtime: fusions, int8 (dynamic and static), int4 weights, fp16.

Each writes a new file next to its input, named by a hash of the input and the options, so a suite
transforms each exported model once; files are written whole (temp file, then rename).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import Unsupported
from . import NoOptions, Transform, transforms


def derived_dir(src: Path, name: str, options: BaseModel) -> Path:
    digest = hashlib.sha256(json.dumps([str(src), name, options.model_dump(mode="json")],
                                       sort_keys=True).encode()).hexdigest()[:12]
    return src.parent / f"{name}-{digest}"


def _cached(src: Path, name: str, options: BaseModel, make) -> tuple[Path, dict]:
    """Run `make(src, dst) -> info` unless done before; each result lives in its own folder (model and
    external data together, with the info that `make` returned)."""
    from ..backends.onnx_tools import build_once

    final = derived_dir(src, name, options)
    hit = build_once(final, lambda folder: (folder / "info.json").write_text(
        json.dumps(make(src, folder / "model.onnx"), default=str)))
    return final / "model.onnx", {**json.loads((final / "info.json").read_text()), "cache_hit": hit}


@transforms.register("ort-optimize")
class OrtOptimize(Transform):
    """ORT's transformer optimizer: attention, layer-norm and GELU fusions for BERT-, GPT-2-, Llama-class graphs."""

    stage = "onnx"

    class Options(NoOptions):
        opt_level: int = Field(1, ge=0, le=99, description="optimize_model opt_level (ORT graph level after fusion)")

    def apply(self, path, options, ctx):
        from ..backends import onnx_tools

        config = ctx.model_config
        model_type = getattr(config, "model_type", "bert")
        heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 0)
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)
        return _cached(path, "opt", options, lambda src, dst: onnx_tools.optimize_transformer(
            src, dst, model_type, heads, hidden, options.opt_level))


class _Int8Options(NoOptions):
    per_channel: bool | None = Field(None, description="null: chosen from the CPU's flags")
    reduce_range: bool | None = Field(None, description="null: chosen from the CPU's flags")


def _int8_settings(options: _Int8Options, ctx) -> dict:
    from ..backends import onnx_tools

    auto = onnx_tools.cpu_int8_settings(set(ctx.cpu_flags))
    return {"per_channel": auto["per_channel"] if options.per_channel is None else options.per_channel,
            "reduce_range": auto["reduce_range"] if options.reduce_range is None else options.reduce_range,
            "chosen_from_cpu_flags": auto}


@transforms.register("ort-int8-dynamic")
class OrtInt8Dynamic(Transform):
    stage = "onnx"
    Options = _Int8Options

    def apply(self, path, options, ctx):
        from ..backends import onnx_tools

        s = _int8_settings(options, ctx)
        key = options.model_copy(update={"per_channel": s["per_channel"], "reduce_range": s["reduce_range"]})
        path, info = _cached(path, "int8dyn", key, lambda src, dst: onnx_tools.quantize_dynamic_int8(
            src, dst, s["per_channel"], s["reduce_range"]))
        return path, {**info, "settings": s}


@transforms.register("ort-int8-static")
class OrtInt8Static(Transform):
    """Static int8 (QDQ) calibrated on real text windows distinct from the timed inputs."""

    stage = "onnx"

    class Options(_Int8Options):
        samples: int = Field(32, ge=1, description="calibration windows of real text")
        method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"

    def apply(self, path, options, ctx):
        from ..backends import onnx_tools

        s = _int8_settings(options, ctx)
        key = options.model_copy(update={"per_channel": s["per_channel"], "reduce_range": s["reduce_range"]})
        path, info = _cached(path, f"int8static-s{ctx.seq_len}-b{ctx.batch_size}", key,
                             lambda src, dst: onnx_tools.quantize_static_int8(
                                 src, dst, ctx.calibration_batches(options.samples), options.method,
                                 s["per_channel"], s["reduce_range"]))
        return path, {**info, "settings": s, "calibration": {"samples": options.samples, "method": options.method,
                                                              "seq_len": ctx.seq_len, "text": "pydoc_data.topics"}}


@transforms.register("ort-int4")
class OrtInt4(Transform):
    """4-bit weight-only MatMul (MatMulNBits), activations stay float."""

    stage = "onnx"

    class Options(NoOptions):
        block_size: int = Field(32, ge=16)
        symmetric: bool = True

    def apply(self, path, options, ctx):
        from ..backends import onnx_tools

        return _cached(path, "int4", options, lambda src, dst: onnx_tools.quantize_int4_weights(
            src, dst, options.block_size, options.symmetric))


@transforms.register("ort-fp16")
class OrtFp16(Transform):
    """fp16 graph for the CUDA provider (the CPU provider has few fp16 kernels)."""

    stage = "onnx"

    class Options(NoOptions):
        keep_io_types: bool = True

    def apply(self, path, options, ctx):
        if ctx.device != "cuda":
            raise Unsupported("ort-fp16 targets the CUDA execution provider; the CPU provider has few fp16 kernels")
        from ..backends import onnx_tools

        return _cached(path, "fp16", options, lambda src, dst: onnx_tools.convert_fp16(src, dst, options.keep_io_types))
