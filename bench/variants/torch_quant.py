"""Quantization of a transformers model's Linear layers with what the installed torch stack really runs.

Findings on torch 2.13 + torchao 0.18 (CPU): torchao's int8 configs run in eager mode but dequantize
in Python-level tensor subclasses, so dynamic int8 is slower than fp32 without torch.compile; the
deprecated `torch.ao.quantization.quantize_dynamic` still calls fbgemm/oneDNN int8 kernels and is
the fast path. torchao has no CPU int4 kernel here: `tile_packed_to_4d` needs CUDA, `plain` needs
the mslk package, and IntxWeightOnly stores int4 values in int8 bytes. ORT's MatMulNBits is the
CPU int4 path (see graph_transforms).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from ..errors import Unsupported

LM_HEAD_NAMES = ("lm_head",)


def conv1d_to_linear(model: Any) -> int:
    """Replace GPT-2's Conv1D (a transposed Linear) with nn.Linear so Linear quantizers see it."""
    import torch
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                in_f, out_f = child.weight.shape
                lin = torch.nn.Linear(in_f, out_f, bias=True, dtype=child.weight.dtype, device=child.weight.device)
                with torch.no_grad():
                    lin.weight.copy_(child.weight.t())
                    lin.bias.copy_(child.bias)
                setattr(parent, name, lin)
                replaced += 1
    return replaced


def _linear_names(model: Any, skip_lm_head: bool, skip_modules: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Linear layers to quantize and those kept in float (the LM head, and names containing `skip_modules`)."""
    import torch

    chosen, skipped = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            keep_float = (skip_lm_head and name.split(".")[-1] in LM_HEAD_NAMES) or any(s in name for s in skip_modules)
            (skipped if keep_float else chosen).append(name)
    return chosen, skipped


def dynamic_int8(model: Any, skip_lm_head: bool = True, per_channel: bool = False,
                 skip_modules: tuple[str, ...] = ()) -> tuple[Any, dict]:
    """int8 weights, activations quantized per batch at run time (fbgemm/oneDNN kernels).

    Measured here: per-channel weights raise MiniLM's embedding cosine from 0.93 to 0.98 but make the
    kernels ~3x slower, so per-tensor is the default. Llama-class `down_proj` inputs carry activation
    outliers: keeping them in float takes SmolLM2's perplexity ratio from 3.8 to 1.15.
    """
    import torch

    converted = conv1d_to_linear(model)
    chosen, skipped = _linear_names(model, skip_lm_head, tuple(skip_modules))
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if per_channel
               else torch.ao.quantization.default_dynamic_qconfig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.ao.quantization.quantize_dynamic(model, {name: qconfig for name in chosen}, dtype=torch.qint8)
    return model, {"scheme": f"dynamic int8 activations, int8 {'per-channel' if per_channel else 'per-tensor'} "
                             "weights, Linear layers",
                   "api": "torch.ao.quantization.quantize_dynamic (deprecated; the fast eager CPU path here)",
                   "engine": torch.backends.quantized.engine, "quantized_layers": len(chosen),
                   "kept_float": skipped, "conv1d_converted": converted}


def weight_only_int8(model: Any, skip_lm_head: bool = True) -> tuple[Any, dict]:
    """int8 weights dequantized on the fly, float activations (torchao)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    converted = conv1d_to_linear(model)
    chosen, skipped = _linear_names(model, skip_lm_head)
    keep = set(chosen)
    quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda m, fqn: fqn in keep)
    return model, {"scheme": "weight-only int8 (per-channel), float activations",
                   "api": "torchao.quantization.Int8WeightOnlyConfig", "quantized_layers": len(chosen),
                   "kept_float": skipped, "conv1d_converted": converted}


def weight_only_int4(model: Any, group_size: int, device: str) -> tuple[Any, dict]:
    """int4 weights with the tinygemm CUDA kernel; refused on CPU where no int4 kernel exists here."""
    if device != "cuda":
        raise Unsupported("no CPU int4 kernel in this torch/torchao stack (torchao tile_packed_to_4d needs CUDA, "
                          "'plain' needs mslk, IntxWeightOnly keeps int4 in int8 bytes); use ort-int4 (MatMulNBits)")
    import torch
    from torchao.quantization import Int4WeightOnlyConfig, quantize_

    conv1d_to_linear(model)
    chosen, skipped = _linear_names(model, True)
    keep = set(chosen)
    model = model.to(torch.bfloat16)
    quantize_(model, Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d"),
              filter_fn=lambda m, fqn: fqn in keep)
    return model, {"scheme": f"weight-only int4, group size {group_size}, bf16 activations",
                   "api": "torchao Int4WeightOnlyConfig(tile_packed_to_4d)", "quantized_layers": len(chosen),
                   "kept_float": skipped}


def tf32_matmul(enabled: bool) -> dict:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return {"tf32_matmul": enabled, "api": "torch.backends.cuda.matmul.allow_tf32"}


def weight_bytes(model: Any) -> int:
    """Bytes of the serialized state dict: true for packed int8 params and tensor subclasses alike."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()
