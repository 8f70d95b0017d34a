"""ONNX export, ORT graph tools and ORT sessions, as plain functions for the backend and graph transforms.

Findings with torch 2.13 / transformers 5 / ORT 1.32: the TorchScript exporter (dynamo=False) bakes the
sdpa mask shapes of BERT and GPT-2 into the graph (wrong outputs at other shapes), so export uses the
dynamo exporter at opset 18 (opset 17 lacks Split's num_outputs). ORT's transformer optimizer fuses
LayerNorm/Gelu patterns in those graphs but not dynamo's attention pattern, and fails on GPT-2 graphs;
a failed fusion is recorded and the unfused graph kept.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import Unsupported

DEFAULT_OPSET = 18
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _wrapper(model: Any, output_name: str):
    """A module with positional (input_ids, attention_mask) inputs and one tensor output."""
    import torch

    class Primary(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            if output_name == "logits":
                return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Primary().eval()


def export_onnx(model: Any, example_inputs: dict, output_name: str, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """Export with dynamic batch and sequence axes; weights go to an external-data file beside it."""
    import warnings

    import torch

    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=2, max=8192)
    args = (example_inputs["input_ids"], example_inputs["attention_mask"])
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_wrapper(model, output_name), args, input_names=["input_ids", "attention_mask"],
                                    output_names=[output_name], opset_version=opset, dynamo=True,
                                    dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}), verbose=False)
    program.save(str(path), external_data=True)


def cache_key(key_parts: dict, opset: int) -> str:
    blob = json.dumps({**key_parts, "opset": opset}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_once(final: Path, build: Callable[[Path], None]) -> bool:
    """Run `build(folder)` in a temporary folder renamed to `final`, unless `final` exists; True on a cache hit.

    The rename is atomic, so a crash never leaves half a model where a later run would take it for whole.
    """
    if final.exists():
        return True
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.exists():  # a concurrent run finished first: use its result
            return True
        raise
    return False


def cached_export(model: Any, example_inputs: dict, output_name: str, key_parts: dict, cache_dir: Path,
                  opset: int = DEFAULT_OPSET) -> tuple[Path, bool]:
    """Export once per (model identity, transforms, task, opset); returns (path, cache_hit).

    Shapes are dynamic, so one export serves every batch size and sequence length.
    """
    final = Path(cache_dir) / cache_key(key_parts, opset)

    def build(folder: Path) -> None:
        export_onnx(model, example_inputs, output_name, folder / "model.onnx", opset)
        (folder / "key.json").write_text(json.dumps({**key_parts, "opset": opset}, indent=1, default=str))

    return final / "model.onnx", build_once(final, build)


def _op_counts(model_proto: Any) -> collections.Counter:
    return collections.Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in model_proto.graph.node)


def optimize_transformer(path_in: Path, path_out: Path, model_type: str, num_heads: int, hidden_size: int,
                         opt_level: int) -> dict:
    """ORT's transformer optimizer; returns the fused operators that appeared (or why none did)."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    before = _op_counts(onnx.load(str(path_in), load_external_data=False))
    ort_type = {"bert": "bert", "gpt2": "gpt2", "llama": "gpt2"}.get(model_type, "bert")
    info: dict[str, Any] = {"optimizer": "onnxruntime.transformers.optimizer.optimize_model",
                            "model_type": ort_type, "num_heads": num_heads, "hidden_size": hidden_size,
                            "opt_level": opt_level}
    try:
        optimized = optimize_model(str(path_in), model_type=ort_type, num_heads=num_heads, hidden_size=hidden_size,
                                   opt_level=opt_level)
        after = _op_counts(optimized.model)
        optimized.save_model_to_file(str(path_out), use_external_data_format=True)
    except Exception as exc:  # noqa: BLE001 - keep the unfused graph and say why
        info["fusion_error"] = f"{type(exc).__name__}: {exc}"
        after = before
        _copy_model(path_in, path_out)
    info["fused_ops"] = {op: n for op, n in sorted(after.items()) if op not in before}
    info["nodes_before"], info["nodes_after"] = sum(before.values()), sum(after.values())
    return info


def _copy_model(src: Path, dst: Path) -> None:
    import onnx

    onnx.save_model(onnx.load(str(src)), str(dst), save_as_external_data=True, location=dst.name + ".data")


def cpu_int8_settings(cpu_flags: set[str]) -> dict:
    """u8s8 int8 GEMMs saturate on x86 without VNNI; reduce_range (7-bit weights) avoids that."""
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags)
    x86 = bool({"avx2", "sse4_2", "avx512f"} & cpu_flags)
    reduce_range = x86 and not vnni
    return {"per_channel": True, "reduce_range": reduce_range,
            "reason": "VNNI/AMX present: full-range int8" if vnni else
                      ("x86 without VNNI: reduce_range avoids u8s8 saturation" if x86 else "non-x86 CPU")}


def quantize_dynamic_int8(path_in: Path, path_out: Path, per_channel: bool, reduce_range: bool) -> dict:
    """Dynamic int8: weights quantized offline, activations per run (MatMulInteger/DynamicQuantizeLinear).

    ORT's quantize_dynamic produces integer operators, not QDQ: QDQ pairs for activations need static
    scales, so dynamic quantization has no QDQ form in ORT 1.32; this is the format its CPU kernels run fastest.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(path_in), str(path_out), per_channel=per_channel, reduce_range=reduce_range,
                     weight_type=QuantType.QInt8, use_external_data_format=True,
                     extra_options={"MatMulConstBOnly": True})
    return {"format": "QOperator (MatMulInteger + DynamicQuantizeLinear)", "weight_type": "int8",
            "per_channel": per_channel, "reduce_range": reduce_range, "ops": _quantized_ops(path_out)}


def _quantized_ops(path: Path) -> dict:
    import onnx

    counts = _op_counts(onnx.load(str(path), load_external_data=False))
    return {op: n for op, n in counts.items() if any(k in op for k in ("Integer", "Quant", "NBits", "QLinear"))}


class _Batches:
    """CalibrationDataReader over prepared batches of real text."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # not needed for a single pass
        pass


def quantize_static_int8(path_in: Path, path_out: Path, calibration_batches: list[dict[str, np.ndarray]],
                         method: str, per_channel: bool, reduce_range: bool) -> dict:
    """Static int8 in QDQ form with activation ranges calibrated on real text."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(path_in), str(path_out), _Batches(calibration_batches), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, use_external_data_format=True,
                    calibrate_method=getattr(CalibrationMethod, method), op_types_to_quantize=["MatMul"],
                    extra_options={"MatMulConstBOnly": True})
    return {"format": "QDQ", "activations": "uint8", "weights": "int8", "op_types": ["MatMul"],
            "calibration_samples": len(calibration_batches), "method": method, "per_channel": per_channel,
            "reduce_range": reduce_range, "ops": _quantized_ops(path_out)}


def quantize_int4_weights(path_in: Path, path_out: Path, block_size: int = 32, symmetric: bool = True) -> dict:
    """4-bit weight-only MatMul (com.microsoft.MatMulNBits); activations stay float."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(path_in)), bits=4, block_size=block_size,
                                     is_symmetric=symmetric, accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(path_out), use_external_data_format=True)
    return {"format": "MatMulNBits", "bits": 4, "block_size": block_size, "symmetric": symmetric,
            "accuracy_level": 4, "ops": _quantized_ops(path_out)}


def convert_fp16(path_in: Path, path_out: Path, keep_io_types: bool = True) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path_in)), keep_io_types=keep_io_types)
    onnx.save_model(model, str(path_out), save_as_external_data=True, location=Path(path_out).name + ".data")
    return {"format": "fp16 graph", "keep_io_types": keep_io_types}


GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}


def make_session(path: Path, provider: str, graph_opt_level: str, intra_op_threads: int, inter_op_threads: int):
    import onnxruntime as ort

    name = PROVIDERS[provider]
    if name not in ort.get_available_providers():
        raise Unsupported(f"ONNX Runtime has no {name} here (installed providers: "
                          f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu for CUDA")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[graph_opt_level])
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=[name])


def run_fn(session: Any, inputs: dict[str, np.ndarray], provider: str) -> Callable[[], None]:
    """A zero-argument callable that runs one inference and returns when it is done.

    On CUDA the inputs are copied to the device once, here, and IO binding keeps outputs on the device,
    so the timed call measures the model, not host transfers; `synchronize_outputs` waits for completion.
    """
    if provider != "cuda":
        return lambda: session.run(None, inputs)
    import onnxruntime as ort

    binding = session.io_binding()
    device_inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in inputs.items()}
    for name, value in device_inputs.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda")

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run.device_inputs = device_inputs  # keep the device buffers alive
    return run


def onnx_file_bytes(path: Path) -> int:
    """The model file plus every external-data file its tensors point to."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    locations = {entry.value for t in _get_all_tensors(model)
                 if t.data_location == onnx.TensorProto.EXTERNAL
                 for entry in t.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / loc).stat().st_size for loc in locations)
