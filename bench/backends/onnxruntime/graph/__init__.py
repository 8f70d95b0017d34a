"""ONNX graph operations for ONNX Runtime's graph-stage transforms, one module per operation: `optimize`
(ORT's transformer fusions), `quantize` (dynamic and static int8, int4 weights), `fp16`, and `inspect` (op
counts, graph comparison, synthetic feeds). Each rewrite reads one model file and writes another."""

from .fp16 import convert_fp16
from .inspect import compare_graphs, op_counts, synthetic_feed
from .optimize import optimize_transformer, ort_model_type
from .quantize import (cpu_int8_settings, fragile_matmuls, gemm_to_matmul, quantize_dynamic_int8,
                       quantize_int4_weights, quantize_static_int8)

__all__ = ["compare_graphs", "convert_fp16", "cpu_int8_settings", "fragile_matmuls", "gemm_to_matmul", "op_counts",
           "optimize_transformer", "ort_model_type", "quantize_dynamic_int8", "quantize_int4_weights",
           "quantize_static_int8", "synthetic_feed"]
