"""Quantizing ONNX graphs: int8 (dynamic and static) and int4 weights (MatMulNBits).

Quantization formats. ORT has no dynamic-int8 QDQ form: QDQ needs activation scales fixed offline, which is
static quantization. `quantize_dynamic` writes QOperator integer ops (DynamicQuantizeLinear + MatMulInteger,
QAttention on fused graphs); at session load ORT fuses them into com.microsoft DynamicQuantizeMatMul /
MatMulIntegerToFloat, its fastest dynamic-int8 CPU path (u8 activations x s8 weights, VNNI/AMX kernels).
Static int8 uses QDQ (the format ORT recommends for static quantization). Gemm is not in the dynamic
quantizer's op list and MatMulNBits only takes MatMul, so GPT-2's Conv1D projections (exported as Gemm)
are rewritten to MatMul + Add before quantizing.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..decoder import extra_inputs
from .inspect import cpu_session, op_counts


def cpu_int8_settings(cpu_flags: set[str]) -> dict:
    """per_channel / reduce_range for int8 on this CPU.

    ORT's x86 int8 GEMMs multiply u8 activations by s8 weights; without VNNI (AVX2/AVX-512 without vnni) the
    u8 x s8 pair sums can saturate int16 (vpmaddubsw), so ORT's docs advise reduce_range (7-bit weights) there.
    With avx512_vnni / avx_vnni / AMX (or on ARM) full-range int8 is exact. Per-channel weight scales cost
    nothing at run time and help accuracy, so they are always on.
    """
    flags = {f.lower() for f in cpu_flags}
    vnni = sorted({"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni", "amx_int8"} & flags)
    x86 = bool({"avx2", "avx", "sse4_2", "sse2", "avx512f"} & flags)
    reduce_range = x86 and not vnni
    if vnni:
        reason = f"{', '.join(vnni)} present: full-range u8s8 int8 does not saturate"
    elif x86:
        reason = "x86 without VNNI/AMX: u8s8 products can saturate int16, reduce_range uses 7-bit weights"
    else:
        reason = "non-x86 CPU: full-range int8"
    return {"per_channel": True, "reduce_range": reduce_range, "reason": reason}


def gemm_to_matmul(model: Any) -> int:
    """Rewrite Gemm nodes with a constant B (GPT-2's Conv1D projections) as MatMul (+ Add); returns the count.

    The dynamic int8 quantizer ignores Gemm and MatMulNBits takes only MatMul, so without this GPT-2's
    projections would stay fp32.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes, count = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            new_nodes.append(node)
            continue
        b = node.input[1]
        if attrs.get("transB", 0):
            weight = numpy_helper.to_array(inits[b]).T.copy()
            b = f"{b}_transposed_{count}"
            graph.initializer.append(numpy_helper.from_array(weight, b))
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        new_nodes.append(helper.make_node("MatMul", [node.input[0], b], [mm_out], name=f"{node.name}_MatMul"))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                              name=f"{node.name}_Add"))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
        used = {i for n in graph.node for i in n.input}
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return count


def _prepared_input(path_in: Path, work: Path) -> tuple[str, int]:
    """path_in with Gemm rewritten to MatMul, saved under `work` if anything changed; (path, gemms rewritten)."""
    import onnx

    model = onnx.load(str(path_in))
    count = gemm_to_matmul(model)
    if not count:
        return str(path_in), 0
    out = work / "gemm_as_matmul.onnx"
    onnx.save_model(model, str(out), save_as_external_data=True, location=out.name + ".data")
    return str(out), count


def _quantized_ops(path: Path) -> dict:
    import onnx

    counts = op_counts(onnx.load(str(path), load_external_data=False))
    keys = ("Integer", "Quant", "Dequant", "NBits", "QLinear", "QAttention", "QEmbed", "QGemm")
    return {op: n for op, n in sorted(counts.items()) if any(k in op for k in keys)}


def quantize_dynamic_int8(path_in: Path, path_out: Path, per_channel: bool, reduce_range: bool,
                          op_types: tuple[str, ...] = ("MatMul", "Attention")) -> dict:
    """Dynamic int8: weights int8 offline, activations quantized per run to u8 (QOperator integer ops).

    ORT has no dynamic QDQ form (QDQ needs fixed activation scales, i.e. static quantization); the integer-op
    form below is what ORT's CPU provider fuses into DynamicQuantizeMatMul / MatMulIntegerToFloat, its fastest
    dynamic int8 path. On a fused BERT graph, Attention becomes QAttention. Embedding Gathers stay fp32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path_out = Path(path_out)
    with tempfile.TemporaryDirectory(dir=path_out.parent) as work:
        src, gemms = _prepared_input(Path(path_in), Path(work))
        quantize_dynamic(src, str(path_out), per_channel=per_channel, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                         use_external_data_format=True,
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"format": "QOperator dynamic (DynamicQuantizeLinear + MatMulInteger; ORT fuses to DynamicQuantizeMatMul)",
            "why_not_qdq": "ORT has no dynamic QDQ form: QDQ carries fixed activation scales (static quantization)",
            "activations": "uint8, per run", "weights": "int8", "op_types": list(op_types),
            "per_channel": per_channel, "reduce_range": reduce_range, "gemm_rewritten_as_matmul": gemms,
            "ops": _quantized_ops(path_out)}


class _Batches:
    """CalibrationDataReader over prepared batches of real text, keeping only the graph's inputs (a decoder
    with a KV cache gets an empty one)."""

    def __init__(self, batches: list[dict[str, np.ndarray]], graph_inputs: list):
        names = {i.name for i in graph_inputs}
        batches = [{**b, **extra_inputs(graph_inputs, *b["input_ids"].shape)} for b in batches]
        self._batches = [{k: np.ascontiguousarray(v) for k, v in b.items() if k in names} for b in batches]
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._batches)


GELU_OPS = {"Gelu", "BiasGelu", "FastGelu", "QuickGelu", "Relu", "Silu"}


def fragile_matmuls(model: Any) -> list[str]:
    """MLP down-projections: MatMuls with a constant weight whose input is an activation function's output.

    Their inputs (after GELU / SiLU-gating) carry outliers that a per-tensor u8 scale cannot hold: on
    all-MiniLM-L6-v2 static int8 of every MatMul gives embedding cosine 0.94 vs fp32, 0.992 with these kept
    in float. Found structurally: the producer is a Gelu-family op, or a Mul of two computed tensors (erf/tanh
    GELU and SwiGLU both end that way; RMSNorm's Mul by its weight does not count).
    """
    import math

    graph = model.graph
    sizes = {t.name: math.prod(t.dims) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            sizes[n.output[0]] = math.prod(value.dims) if value is not None else 1
        elif n.op_type == "Identity" and n.input[0] in sizes:  # TorchScript's deduplicated initializers
            sizes[n.output[0]] = sizes[n.input[0]]
    producer = {o: n for n in graph.node for o in n.output}

    def origin(name: str):
        """The node that made `name`, looking through reshapes and Mul/Div by a scalar (erf GELU ends `* 0.5`)."""
        node = producer.get(name)
        while node is not None:
            if node.op_type in ("Reshape", "Flatten"):
                node = producer.get(node.input[0])
                continue
            if node.op_type not in ("Mul", "Div") or len(node.input) != 2:
                break
            scalar = [i for i in node.input if sizes.get(i) == 1]
            if len(scalar) != 1:
                break
            node = producer.get(next(i for i in node.input if i != scalar[0]))
        return node

    out = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in sizes:
            continue
        src = origin(node.input[0])
        if src is None:
            continue
        if src.op_type in GELU_OPS or (src.op_type == "Mul" and not any(i in sizes for i in src.input)):
            out.append(node.name)
    return out


def _symbolic_shapes(src: str, work: Path) -> tuple[str, str | None]:
    """Run ORT's symbolic shape inference when the graph has contrib ops (fused graphs): without it the
    quantizer cannot type the outputs of SkipLayerNormalization & co and silently leaves activations float."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(src, load_external_data=False)
    if not any(n.domain == "com.microsoft" for n in model.graph.node):
        return src, None
    out = work / "shapes.onnx"
    try:
        quant_pre_process(src, str(out), skip_optimization=True, auto_merge=True, save_as_external_data=True,
                          all_tensors_to_one_file=True, external_data_location=out.name + ".data")
    except Exception as exc:  # noqa: BLE001 - quantize what the plain shape inference allows
        return src, f"symbolic shape inference failed ({type(exc).__name__}: {str(exc)[:200]})"
    return str(out), "symbolic shape inference (fused graph)"


def quantize_static_int8(path_in: Path, path_out: Path, calibration_batches: list[dict[str, np.ndarray]],
                         method: str = "MinMax", per_channel: bool = True, reduce_range: bool = False,
                         op_types: tuple[str, ...] = ("MatMul",), exclude_fragile: bool = True,
                         nodes_to_exclude: list[str] | None = None, entropy_bins: int = 2048) -> dict:
    """Static int8 in QDQ form (u8 activations, s8 weights), activation ranges calibrated on the given batches.

    Only MatMul is quantized (quantizing Add/Softmax/LayerNorm inputs costs accuracy and saves little time);
    with `exclude_fragile` the MLP down-projections stay float (see `fragile_matmuls`). On the CPU provider
    ORT fuses the QDQ pairs around MatMul into integer kernels at session load. "Entropy" is calibrated here
    with `entropy_bins` histogram bins: through quantize_static, ORT 1.32 uses 128 bins for 128 quantized
    bins, which leaves a single candidate threshold, i.e. exactly MinMax. The KL search is quadratic in the
    bins (about 0.3 s per calibrated tensor at 2048 bins, ~40 s for MiniLM-L6), and on MiniLM entropy clips
    too hard (embedding cosine 0.85 vs 0.94 for MinMax, with every MatMul quantized).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in ("MinMax", "Entropy", "Percentile"):
        raise ValueError(f"calibration method {method!r}: use MinMax, Entropy or Percentile")
    path_out = Path(path_out)
    reader = _Batches(calibration_batches, cpu_session(path_in).get_inputs())
    with tempfile.TemporaryDirectory(dir=path_out.parent) as work:
        src, gemms = _prepared_input(Path(path_in), Path(work))
        src, shapes = _symbolic_shapes(src, Path(work))
        excluded = list(nodes_to_exclude or [])
        if exclude_fragile:
            excluded += [n for n in fragile_matmuls(onnx.load(src, load_external_data=False)) if n not in excluded]
        cache = None
        if method == "Entropy":
            cache = _entropy_ranges(src, list(op_types), reader, Path(work), entropy_bins)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
            quantize_static(src, str(path_out), None if cache else reader, quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, use_external_data_format=True,
                            calibrate_method=getattr(CalibrationMethod, method), op_types_to_quantize=list(op_types),
                            nodes_to_exclude=excluded, calibration_cache_path=cache,
                            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"format": "QDQ static", "activations": "uint8", "weights": "int8", "op_types": list(op_types),
            "calibration_samples": int(sum(len(next(iter(b.values()))) for b in calibration_batches)),
            "calibration_batches": len(calibration_batches), "method": method,
            **({"entropy_bins": max(entropy_bins, 256)} if method == "Entropy" else {}), "per_channel": per_channel,
            "reduce_range": reduce_range, "nodes_excluded": excluded,
            "exclude_fragile": exclude_fragile, "gemm_rewritten_as_matmul": gemms,
            **({"shape_inference": shapes} if shapes else {}), "ops": _quantized_ops(path_out)}


def _entropy_ranges(src: str, op_types: list[str], reader: _Batches, work: Path, bins: int) -> str:
    """KL-divergence (entropy) ranges over a `bins`-bin histogram, saved as a quantize_static calibration cache."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    with contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(Path(src), op_types, augmented_model_path=str(work / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Entropy, use_external_data_format=True,
                                       extra_options={"num_bins": max(bins, 256), "num_quantized_bins": 128})
        calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
    reader.rewind()
    cache = work / "entropy_ranges.json"
    save_tensors_data(ranges, cache)
    return str(cache)


def quantize_int4_weights(path_in: Path, path_out: Path, block_size: int = 32, symmetric: bool = True,
                          accuracy_level: int = 4) -> dict:
    """4-bit weight-only MatMul (com.microsoft.MatMulNBits), block-wise scales; activations stay float.

    accuracy_level 4 lets the CPU kernel quantize activations to int8 per block and use int8 dot products
    (fastest on VNNI/AMX); 0 keeps fp32 compute.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(path_in))
    gemms = gemm_to_matmul(model)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=symmetric,
                                     accuracy_level=accuracy_level)
    quantizer.process()
    quantizer.model.save_model_to_file(str(path_out), use_external_data_format=True)
    return {"format": "MatMulNBits (weight-only int4)", "bits": 4, "block_size": block_size,
            "symmetric": symmetric, "accuracy_level": accuracy_level, "gemm_rewritten_as_matmul": gemms,
            "ops": _quantized_ops(path_out)}
