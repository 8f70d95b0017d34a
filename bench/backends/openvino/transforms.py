"""Graph-stage transforms for OpenVINO: NNCF post-training int8 quantization of the IR.

The result is keyed on its input IR, the options, the NNCF version and the calibration it reads (the run's
sequence length and the held-out text: `cache_inputs`), built once in its own folder beside the input and read
back after; the time the quantization took is recorded with it, apart from the measurement.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from ...config import NoOptions
from ...models.inputs import HELD_OUT_TEXT
from ...variants import Transform, transforms
from . import require
from .convert import cached_ir


@transforms.register("nncf-int8")
class NncfInt8(Transform):
    """int8 weights and activations (FakeQuantize, run by OpenVINO's int8 kernels), calibrated by NNCF on real
    text windows distinct from the timed inputs and the quality check's."""

    stage = "openvino"

    class Options(NoOptions):
        samples: int = Field(32, ge=1, description="calibration windows of real text (NNCF's subset_size)")
        preset: Literal["performance", "mixed"] = Field(
            "performance", description="performance: symmetric activations; mixed: asymmetric activations")
        fast_bias_correction: bool = True

    def cache_inputs(self, options, ctx):
        """Calibration windows of the run's sequence length from the held-out text (one row each: the batch size
        does not enter), and the NNCF that computed the ranges."""
        return {"calibration": {"seq_len": ctx.seq_len, "text": HELD_OUT_TEXT}, "nncf": require("nncf").__version__}

    def apply(self, path, options, ctx):
        key = {"source": str(path), "transform": "nncf-int8", "options": options.model_dump(mode="json"),
               "inputs": self.cache_inputs(options, ctx)}

        def quantize(xml: Path) -> dict:
            nncf, ov = require("nncf"), require("openvino")
            batches = ctx.calibration_batches(options.samples)
            start = time.perf_counter()
            quantized = nncf.quantize(ov.Core().read_model(str(path)), nncf.Dataset(batches),
                                      model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
                                      preset=getattr(nncf.QuantizationPreset, options.preset.upper()),
                                      fast_bias_correction=options.fast_bias_correction)
            ov.save_model(quantized, str(xml), compress_to_fp16=False)
            ops = Counter(op.get_type_name() for op in quantized.get_ordered_ops())
            return {"quantize_s": round(time.perf_counter() - start, 3), "fake_quantize_ops": ops["FakeQuantize"],
                    "api": "nncf.quantize(model_type=TRANSFORMER)"}

        xml, info = cached_ir(key, Path(path).parent / "nncf-int8", quantize)
        return xml, {**info, "calibration": {"samples": options.samples, "seq_len": ctx.seq_len,
                                             "text": HELD_OUT_TEXT}}

    def compute_precision(self, options, precision):
        return "int8"

    def describe(self, options):
        return f"NNCF int8 ({options.preset}, {options.samples} windows)"
