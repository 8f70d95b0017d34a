"""Graph-stage transforms for ONNX Runtime: fusions, int8 (dynamic and static), int4 weights, fp16.

Each writes a new file next to its input, named by a hash of the input, the options and every other input the
transform declares (`cache_inputs`: a calibration's sequence length and text), so a suite transforms each
exported model once; files are written whole (temp file, then rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ...cache import build_artifact, cache_key
from ...config import NoOptions
from ...errors import Unsupported
from ...models.inputs import HELD_OUT_TEXT
from ...variants import Transform, transforms
from .graph import fp16, optimize, quantize
from .session import PROVIDERS


def derived_dir(src: Path, name: str, options: BaseModel, inputs: dict | None = None) -> Path:
    digest = cache_key({"source": str(src), "transform": name, "options": options.model_dump(mode="json"),
                        "inputs": inputs or {}})
    return src.parent / f"{name}-{digest[:12]}"


def _cached(src: Path, name: str, options: BaseModel, make, inputs: dict | None = None) -> tuple[Path, dict]:
    """Run `make(src, dst) -> info` unless done before; each result lives in its own folder (model and
    external data together, with the info that `make` returned)."""
    return build_artifact(derived_dir(src, name, options, inputs), "model.onnx", lambda dst: make(src, dst))


@transforms.register("ort-optimize")
class OrtOptimize(Transform):
    """ORT's transformer optimizer: attention, layer-norm and GELU fusions for BERT-, GPT-2-, Llama-class graphs."""

    stage = "onnx"
    kind = "graph"

    class Options(NoOptions):
        opt_level: int = Field(1, ge=0, le=99, description="optimize_model opt_level (ORT graph level after fusion)")

    def apply(self, path, options, ctx):
        config = ctx.model_config
        model_type = getattr(config, "model_type", "bert")
        heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 0)
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)
        return _cached(path, "opt", options, lambda src, dst: optimize.optimize_transformer(
            src, dst, model_type, heads, hidden, options.opt_level))

    def describe(self, options):
        return "ORT transformer fusions"


class _Int8Options(NoOptions):
    per_channel: bool | None = Field(None, description="null: chosen from the CPU's flags")
    reduce_range: bool | None = Field(None, description="null: chosen from the CPU's flags")


def _int8_settings(options: _Int8Options, ctx) -> dict:
    auto = quantize.cpu_int8_settings(set(ctx.cpu_flags))
    return {"per_channel": auto["per_channel"] if options.per_channel is None else options.per_channel,
            "reduce_range": auto["reduce_range"] if options.reduce_range is None else options.reduce_range,
            "chosen_from_cpu_flags": auto}


@transforms.register("ort-int8-dynamic")
class OrtInt8Dynamic(Transform):
    stage = "onnx"
    Options = _Int8Options

    def apply(self, path, options, ctx):
        s = _int8_settings(options, ctx)
        key = options.model_copy(update={"per_channel": s["per_channel"], "reduce_range": s["reduce_range"]})
        path, info = _cached(path, "int8dyn", key, lambda src, dst: quantize.quantize_dynamic_int8(
            src, dst, s["per_channel"], s["reduce_range"]))
        return path, {**info, "settings": s}

    def compute_precision(self, options, precision):
        return "int8"

    def describe(self, options):
        return "ORT int8 dynamic"


@transforms.register("ort-int8-static")
class OrtInt8Static(Transform):
    """Static int8 (QDQ) calibrated on real text windows distinct from the timed inputs."""

    stage = "onnx"

    class Options(_Int8Options):
        samples: int = Field(32, ge=1, description="calibration windows of real text")
        method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"

    def cache_inputs(self, options, ctx):
        """Calibration windows of the run's sequence length from the held-out text (one row each: the batch size
        does not enter)."""
        return {"calibration": {"seq_len": ctx.seq_len, "text": HELD_OUT_TEXT}}

    def apply(self, path, options, ctx):
        s = _int8_settings(options, ctx)
        key = options.model_copy(update={"per_channel": s["per_channel"], "reduce_range": s["reduce_range"]})

        def calibrate(src: Path, dst: Path) -> dict:
            return quantize.quantize_static_int8(src, dst, ctx.calibration_batches(options.samples), options.method,
                                                 s["per_channel"], s["reduce_range"])

        path, info = _cached(path, "int8static", key, calibrate, self.cache_inputs(options, ctx))
        return path, {**info, "settings": s, "calibration": {"samples": options.samples, "method": options.method,
                                                              "seq_len": ctx.seq_len, "text": HELD_OUT_TEXT}}

    def compute_precision(self, options, precision):
        return "int8"

    def describe(self, options):
        return f"ORT int8 static ({options.method}, {options.samples} windows)"


@transforms.register("ort-int4")
class OrtInt4(Transform):
    """4-bit weight-only MatMul (MatMulNBits); `accuracy_level` says what the kernel computes in."""

    stage = "onnx"
    ACCURACY = {0: None, 1: "fp32", 2: "fp16", 3: "bf16", 4: "int8"}  # MatMulNBits accuracy_level

    class Options(NoOptions):
        block_size: int = Field(32, ge=16)
        symmetric: bool = True
        accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
            4, description="4: activations quantized to int8 per block, int8 dot products (fastest on VNNI/AMX)")

    def apply(self, path, options, ctx):
        return _cached(path, "int4", options, lambda src, dst: quantize.quantize_int4_weights(
            src, dst, options.block_size, options.symmetric, options.accuracy_level))

    def compute_precision(self, options, precision):
        return self.ACCURACY[options.accuracy_level]

    def describe(self, options):
        compute = self.ACCURACY[options.accuracy_level] or "float"
        return f"int4 weights (block {options.block_size}), {compute} compute"


@transforms.register("ort-fp16")
class OrtFp16(Transform):
    """fp16 graph for a provider with fp16 kernels (CUDA's; the CPU provider has few)."""

    stage = "onnx"
    kind = "precision"

    class Options(NoOptions):
        keep_io_types: bool = True

    def apply(self, path, options, ctx):
        provider = PROVIDERS.get(ctx.device)
        if provider is None or not provider.fp16_kernels:
            raise Unsupported("ort-fp16 targets an execution provider with fp16 kernels (CUDA's); ONNX Runtime on "
                              f"{ctx.device} has few")
        return _cached(path, "fp16", options, lambda src, dst: fp16.convert_fp16(src, dst, options.keep_io_types))

    def compute_precision(self, options, precision):
        return "fp16"

    def describe(self, options):
        return "ORT fp16 graph"
