"""ONNX graph operations for ONNX Runtime's graph-stage transforms, one module per operation: `optimize`
(ORT's transformer fusions), `quantize` (dynamic and static int8, int4 weights), `fp16`, and `inspect` (op
counts, graph comparison, synthetic feeds). Each function reads one model file and writes another."""

from .quantize import (convert_fp16, cpu_int8_settings, fragile_matmuls, gemm_to_matmul, optimize_transformer,
                       ort_model_type, quantize_dynamic_int8, quantize_int4_weights, quantize_static_int8, synthetic_feed)

__all__ = ["convert_fp16", "cpu_int8_settings", "fragile_matmuls", "gemm_to_matmul", "optimize_transformer", "ort_model_type",
           "quantize_dynamic_int8", "quantize_int4_weights", "quantize_static_int8", "synthetic_feed"]
