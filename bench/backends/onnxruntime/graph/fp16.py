"""fp16 graphs (for the CUDA execution provider: the CPU provider has few fp16 kernels)."""

from __future__ import annotations

from pathlib import Path


def convert_fp16(path_in: Path, path_out: Path, keep_io_types: bool = True) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path_in)), keep_io_types=keep_io_types)
    onnx.save_model(model, str(path_out), save_as_external_data=True, location=Path(path_out).name + ".data")
    return {"format": "fp16 graph", "keep_io_types": keep_io_types}
