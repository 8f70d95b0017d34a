"""Quantization and precision changes of a transformers model with what the installed torch stack really runs.

Every transform returns `(model, info)`; `info` names the scheme, the library and API used, the layers
quantized and kept in float, and every setting, so a record says exactly what was timed.

Findings on torch 2.13 + torchao 0.18, CPU (x86 with AVX-512 VNNI, AVX512-BF16 and AMX):

* Dynamic int8: `torch.ao.quantization.quantize_dynamic` (deprecated, warns, still works) calls fbgemm or
  oneDNN int8 GEMMs and is the fast eager path. Its Linear forward hard-codes `reduce_range=True`
  (7-bit activations, a guard against int16 saturation in pre-VNNI u8*s8 instructions); on CPUs with
  VNNI/AMX-int8 we call `quantized::linear_dynamic(..., reduce_range=False)` instead: MiniLM's embedding
  cosine goes from 0.982 to 0.994 (per-channel weights) at the same speed. Per-channel weights cost
  nothing extra here (per-tensor cosine: 0.93-0.95). The oneDNN engine uses AMX-int8 and is ~3x faster
  than fbgemm at prefill sizes (M=1024 rows); fbgemm is a little faster at M=1.
  torchao's `Int8DynamicActivationInt8WeightConfig` runs in eager mode through a Python tensor subclass
  and `torch._int_mm`, which is slower than fp32 on CPU without torch.compile; it is kept as `api="torchao"`.
* Weight-only int8: torchao `Int8WeightOnlyConfig` converts the int8 weight to float on every call: it
  saves memory at about fp32 speed for MiniLM batch 8 but is ~3x slower than fp32 per layer at one row.
  aten `_weight_int8pack_mm` is a real CPU kernel, fast only with bf16 activations and few rows (2x
  faster than bf16 at one row, 13x slower at 1024 rows; with fp32 activations ~50x slower than fp32);
  `compute_dtype="bf16"` uses it up to DECODE_ROWS rows and a bf16 GEMM on the converted weight above.
* int4: torchao 0.18's `Int4WeightOnlyConfig` has no CPU packing format (`tile_packed_to_4d` is CUDA
  tinygemm, `plain`/`preshuffled` need the mslk package, `plain_int32` is XPU/NPU only). The CPU path is
  `torchao.prototype.quantization.int4.PrototypeInt4WeightOnlyConfig` (Int4OpaqueTensor) on PyTorch's
  `aten._weight_int4pack_mm_for_cpu`; it needs bf16 activations to be fast (fp32 activations take a
  ~70x slower path), out_features divisible by 16 and in_features divisible by the group size. Its
  sibling `Int8DynamicActivationInt4WeightConfig` needs the `torchao::da8w4_linear_cpu` C++ kernel, which
  this torchao wheel does not ship. The int4 kernel is decode-oriented: 3x faster than fp32 at one row,
  ~10x slower than bf16 at 1024 rows.
* Llama-class models: per-tensor activations lose to the activation outliers entering `down_proj`
  (SmolLM2 perplexity ratio 1.57 with every layer int8, 1.04 with down_proj kept float; torchao's
  per-token activations: 1.03). SmolLM2 ships as a Q4_1 GGUF (4-bit, blocks of 32, scale + min), so
  int4 with group size 32 re-finds its grid (ratio 1.002) and says nothing about int4 on native weights.
* fp16 on CPU runs but is not faster than fp32 without AMX-FP16 (oneDNN converts), so it is refused.
* TF32: `torch.backends.cuda.matmul.allow_tf32` (legacy) and `...matmul.fp32_precision` (new) must not be
  mixed: reading either after setting the other raises RuntimeError. We set the legacy flags, which
  `backends/pytorch/eager.py` also reads.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterable

from ..devices import get_device
from ..devices.cpu import BF16_FLAGS
from ..errors import Unsupported
from ..models.families import conv1d_to_linear
from .precision import resolve_flags

LM_HEAD_NAMES = ("lm_head",)
INT8_FULL_RANGE_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # u8*s8 without int16 saturation
INT4_GROUP_SIZES = (32, 64, 128)


# ---------------------------------------------------------------------------------------------- helpers

def _linear_names(model: Any, skip_lm_head: bool, skip_modules: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Linear layers to quantize and those kept in float (the LM head, and names containing `skip_modules`)."""
    import torch

    chosen, skipped = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            keep_float = (skip_lm_head and name.split(".")[-1] in LM_HEAD_NAMES) or any(s in name for s in skip_modules)
            (skipped if keep_float else chosen).append(name)
    return chosen, skipped


def _set_module(model: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


@contextlib.contextmanager
def _quantized_engine(engine: str):
    """Pack weights for `engine`; the packed params keep their engine after the global setting is restored."""
    import torch

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


_FULL_RANGE_CLS: Any = None


def _full_range_dynamic_linear() -> Any:
    """torch.ao's dynamic Linear, but with 8-bit (not 7-bit) activations. Built lazily: importing it loads torch."""
    global _FULL_RANGE_CLS
    if _FULL_RANGE_CLS is None:
        import torch
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        class FullRangeDynamicLinear(DynamicLinear):
            def forward(self, x):
                if self._packed_params.dtype == torch.qint8:
                    return torch.ops.quantized.linear_dynamic(
                        x, self._packed_params._packed_params, reduce_range=False).to(x.dtype)
                return super().forward(x)

        FullRangeDynamicLinear.__module__, FullRangeDynamicLinear.__qualname__ = __name__, "FullRangeDynamicLinear"
        globals()["FullRangeDynamicLinear"] = _FULL_RANGE_CLS = FullRangeDynamicLinear
    return _FULL_RANGE_CLS


# ---------------------------------------------------------------------------------------------- int8

def dynamic_int8(model: Any, skip_lm_head: bool = True, per_channel: bool = True,
                 skip_modules: tuple[str, ...] = (), *, api: str = "torch.ao", engine: str = "auto",
                 full_range: bool | None = None, cpu_flags: Iterable[str] | None = None) -> tuple[Any, dict]:
    """int8 weights and int8 activations quantized per call, on Linear layers (CPU).

    api="torch.ao": `quantize_dynamic` with fbgemm/oneDNN kernels (fast path). engine "auto" picks oneDNN
    on AMX-int8 CPUs (3x faster at prefill sizes), x86 (fbgemm) otherwise. full_range None: 8-bit
    activations where the CPU has VNNI/AMX-int8, 7-bit otherwise. api="torchao": torchao
    Int8DynamicActivationInt8WeightConfig (per-token activations, per-row weights; slower in eager mode).
    """
    import torch

    if api not in ("torch.ao", "torchao"):
        raise ValueError(f"api must be 'torch.ao' or 'torchao', not {api!r}")
    flags = resolve_flags(cpu_flags)
    converted = conv1d_to_linear(model)
    chosen, skipped = _linear_names(model, skip_lm_head, tuple(skip_modules))
    if not chosen:
        raise Unsupported("dynamic int8: no Linear layer left to quantize after the skips")
    common = {"quantized_layers": len(chosen), "quantized": chosen, "kept_float": skipped,
              "conv1d_converted": converted, "skip_lm_head": skip_lm_head, "skip_modules": list(skip_modules)}
    if api == "torchao":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        keep = set(chosen)
        quantize_(model, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False), filter_fn=lambda m, fqn: fqn in keep)
        return model, {"scheme": "dynamic int8: symmetric per-token int8 activations, per-row int8 weights, Linear",
                       "api": "torchao.quantization.quantize_(Int8DynamicActivationInt8WeightConfig())",
                       "library": "torchao", "per_channel": True, "eager": True, **common}

    available = torch.backends.quantized.supported_engines
    if engine == "auto":
        engine = "onednn" if "amx_int8" in flags and "onednn" in available else "x86"
    if engine not in available:
        raise Unsupported(f"quantized engine {engine!r} is not in this torch build ({available})")
    if full_range is None:
        full_range = bool(INT8_FULL_RANGE_FLAGS & flags)
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if per_channel
               else torch.ao.quantization.default_dynamic_qconfig)
    mapping = {torch.nn.Linear: _full_range_dynamic_linear()} if full_range else None
    with warnings.catch_warnings(), _quantized_engine(engine):
        warnings.simplefilter("ignore")  # the deprecation notice for torch.ao.quantization
        model = torch.ao.quantization.quantize_dynamic(model, {name: qconfig for name in chosen},
                                                       dtype=torch.qint8, mapping=mapping)
    return model, {"scheme": f"dynamic int8: per-tensor uint8 activations ({8 if full_range else 7}-bit range), "
                             f"{'per-channel' if per_channel else 'per-tensor'} int8 weights, Linear",
                   "api": "torch.ao.quantization.quantize_dynamic (deprecated; the fast eager CPU path)",
                   "library": f"torch {torch.__version__}", "engine": engine, "per_channel": per_channel,
                   "activation_reduce_range": not full_range, **common}


DECODE_ROWS = 16  # at or below this many rows, aten's int8 weight-only kernel beats converting the weight


_INT8_BF16_CLS: Any = None


def _int8_bf16_linear() -> Any:
    """An nn.Module for bf16 activations x per-channel int8 weights (built lazily: it needs torch)."""
    global _INT8_BF16_CLS
    if _INT8_BF16_CLS is not None:
        return _INT8_BF16_CLS
    import torch

    class Int8WeightOnlyLinear(torch.nn.Module):
        """aten._weight_int8pack_mm for decode-sized inputs; int8 -> bf16 conversion + bf16 GEMM above that."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            w = linear.weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-8)
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8))
            self.register_buffer("scales", scale.to(torch.bfloat16))
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))

        def forward(self, x):
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous()
            if x2.shape[0] <= DECODE_ROWS:
                y = torch.ops.aten._weight_int8pack_mm(x2, self.weight_int8, self.scales)
            else:
                y = torch.nn.functional.linear(x2, self.weight_int8.to(torch.bfloat16)) * self.scales
            if self.bias is not None:
                y = y + self.bias
            return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

        def extra_repr(self):
            return f"in_features={self.in_features}, out_features={self.out_features}"

    Int8WeightOnlyLinear.__module__, Int8WeightOnlyLinear.__qualname__ = __name__, "Int8WeightOnlyLinear"
    globals()["Int8WeightOnlyLinear"] = _INT8_BF16_CLS = Int8WeightOnlyLinear
    return _INT8_BF16_CLS


def _require_bf16(what: str, flags: frozenset[str]) -> None:
    if not (BF16_FLAGS & flags):
        raise Unsupported(f"{what} needs bf16 activations and this CPU has no avx512_bf16 or amx_bf16 flag, "
                          "so bf16 would be emulated")


def weight_only_int8(model: Any, skip_lm_head: bool = True, *, compute_dtype: str = "fp32",
                     cpu_flags: Iterable[str] | None = None) -> tuple[Any, dict]:
    """int8 per-channel symmetric weights, float activations.

    compute_dtype="fp32": torchao Int8WeightOnlyConfig (converts the weight per call: smaller, fp32 speed).
    compute_dtype="bf16": model cast to bf16; Linear layers use aten._weight_int8pack_mm at decode sizes
    (<= DECODE_ROWS rows, ~2x faster than bf16 there) and int8 -> bf16 conversion + GEMM above.
    """
    import torch

    if compute_dtype not in ("fp32", "bf16"):
        raise ValueError(f"compute_dtype must be 'fp32' or 'bf16', not {compute_dtype!r}")
    if compute_dtype == "bf16":
        _require_bf16("weight-only int8 with bf16 compute", resolve_flags(cpu_flags))
    converted = conv1d_to_linear(model)
    chosen, skipped = _linear_names(model, skip_lm_head)
    if not chosen:
        raise Unsupported("weight-only int8: no Linear layer left to quantize after the skips")
    common = {"quantized_layers": len(chosen), "quantized": chosen, "kept_float": skipped,
              "conv1d_converted": converted, "skip_lm_head": skip_lm_head, "granularity": "per output channel",
              "compute_dtype": compute_dtype}
    if compute_dtype == "fp32":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        keep = set(chosen)
        quantize_(model, Int8WeightOnlyConfig(set_inductor_config=False), filter_fn=lambda m, fqn: fqn in keep)
        return model, {"scheme": "weight-only int8 (symmetric, per-channel), fp32 activations",
                       "api": "torchao.quantization.quantize_(Int8WeightOnlyConfig())", "library": "torchao",
                       "kernel": "int8 weight converted to fp32 per call, then fp32 GEMM", **common}
    cls = _int8_bf16_linear()
    with torch.no_grad():
        for name in chosen:
            _set_module(model, name, cls(model.get_submodule(name)))
        model = model.to(torch.bfloat16)
    return model, {"scheme": "weight-only int8 (symmetric, per-channel), bf16 activations and model",
                   "api": "torch.ops.aten._weight_int8pack_mm (bench module Int8WeightOnlyLinear)",
                   "library": f"torch {torch.__version__}",
                   "kernel": f"aten _weight_int8pack_mm for <= {DECODE_ROWS} rows, else int8->bf16 + bf16 GEMM",
                   **common}


# ---------------------------------------------------------------------------------------------- int4

def weight_only_int4(model: Any, group_size: int = 128, device: str = "cpu", skip_lm_head: bool = True,
                     *, algorithm: str = "tinygemm", cpu_flags: Iterable[str] | None = None) -> tuple[Any, dict]:
    """Group-wise asymmetric int4 weights, bf16 activations (the model is cast to bf16).

    CPU: torchao PrototypeInt4WeightOnlyConfig (Int4OpaqueTensor on aten._weight_int4pack_mm_for_cpu), a
    decode-oriented kernel (3x faster than fp32 at one row, ~10x slower than bf16 at 1024 rows). Layers
    whose in_features is not a multiple of group_size or whose out_features is not a multiple of 16 stay
    bf16 (kept_float_reasons). algorithm: "tinygemm" (round to nearest) or "hqq" (optimized scales).
    CUDA: torchao Int4WeightOnlyConfig(int4_packing_format="tile_packed_to_4d") (tinygemm).
    """
    if group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"group_size must be one of {INT4_GROUP_SIZES}, not {group_size}")
    if algorithm not in ("tinygemm", "hqq"):
        raise ValueError(f"algorithm must be 'tinygemm' or 'hqq', not {algorithm!r}")
    kernel = INT4_KERNELS.get(device)
    if kernel is None:
        raise Unsupported(f"int4 weight-only has no kernel for device {device!r} here")
    get_device(device).require()
    return kernel(model, group_size, skip_lm_head, algorithm, resolve_flags(cpu_flags), device)


def _int4_tinygemm(model: Any, group_size: int, skip_lm_head: bool, algorithm: str, cpu_flags: frozenset[str],
                   device: str) -> tuple[Any, dict]:
    import torch
    from torchao.quantization import Int4WeightOnlyConfig, quantize_
    from torchao.quantization.quantize_.workflows import Int4ChooseQParamsAlgorithm

    converted = conv1d_to_linear(model)
    chosen, skipped = _linear_names(model, skip_lm_head)
    keep = set(chosen)
    model = model.to(device=device, dtype=torch.bfloat16)
    quantize_(model, Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d",
                                          int4_choose_qparams_algorithm=Int4ChooseQParamsAlgorithm(algorithm)),
              filter_fn=lambda m, fqn: fqn in keep)
    return model, {"scheme": f"weight-only int4 (asymmetric, group size {group_size}), bf16 activations",
                   "api": "torchao Int4WeightOnlyConfig(int4_packing_format='tile_packed_to_4d')",
                   "library": "torchao", "kernel": "tinygemm (CUDA)", "group_size": group_size,
                   "algorithm": algorithm, "quantized_layers": len(chosen), "quantized": chosen,
                   "kept_float": skipped, "conv1d_converted": converted}


def _int4_cpu(model: Any, group_size: int, skip_lm_head: bool, algorithm: str, cpu_flags: frozenset[str],
              device: str) -> tuple[Any, dict]:
    import torch

    try:
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
        from torchao.quantization import quantize_
        from torchao.quantization.quantize_.workflows import Int4ChooseQParamsAlgorithm
    except ImportError as exc:
        raise Unsupported(f"int4 on CPU: torchao's PrototypeInt4WeightOnlyConfig (Int4OpaqueTensor) is not "
                          f"importable here ({exc}); torchao's Int4WeightOnlyConfig has no CPU packing format") from exc
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        raise Unsupported(f"int4 on CPU: torch {torch.__version__} lacks aten._weight_int4pack_mm_for_cpu")
    _require_bf16("int4 weight-only on CPU (the aten int4 kernel is ~70x slower with fp32 activations)", cpu_flags)
    converted = conv1d_to_linear(model)
    chosen, skipped = _linear_names(model, skip_lm_head)
    eligible, reasons = [], {}
    for name in chosen:
        lin = model.get_submodule(name)
        if lin.in_features % group_size:
            reasons[name] = f"in_features {lin.in_features} not a multiple of group size {group_size}"
        elif lin.out_features % 16:
            reasons[name] = f"out_features {lin.out_features} not a multiple of 16 (kernel packing)"
        else:
            eligible.append(name)
    if not eligible:
        raise Unsupported(f"int4 group size {group_size}: no Linear layer fits the CPU int4 kernel "
                          f"(e.g. {next(iter(reasons.values()), 'none left after skips')})")
    keep = set(eligible)
    model = model.to(torch.bfloat16)  # scales, zeros and activations follow the weight dtype
    config = PrototypeInt4WeightOnlyConfig(group_size=group_size, set_inductor_config=False,
                                           int4_choose_qparams_algorithm=Int4ChooseQParamsAlgorithm(algorithm))
    quantize_(model, config,
              filter_fn=lambda m, fqn: fqn in keep)
    return model, {"scheme": f"weight-only int4 (asymmetric uint4, group size {group_size}, {algorithm} qparams, "
                             "bf16 scales and zeros), bf16 activations and model",
                   "api": "torchao.prototype.quantization.int4.PrototypeInt4WeightOnlyConfig via quantize_",
                   "library": "torchao (Int4OpaqueTensor)", "kernel": "aten _weight_int4pack_mm_for_cpu",
                   "group_size": group_size, "algorithm": algorithm,
                   "quantized_layers": len(eligible), "quantized": eligible,
                   "kept_float": skipped + list(reasons), "kept_float_reasons": reasons,
                   "conv1d_converted": converted, "skip_lm_head": skip_lm_head}


INT4_KERNELS = {"cpu": _int4_cpu, "cuda": _int4_tinygemm}  # the devices int4 weight-only has a kernel for


def tf32_matmul(enabled: bool) -> dict:
    """Allow (or forbid) TF32 tensor-core math for fp32 matmuls and convolutions on CUDA; a no-op on CPU."""
    import torch

    if not torch.cuda.is_available():
        return {"tf32_matmul": enabled, "applied": False, "note": "no CUDA device: TF32 is a CUDA matmul mode"}
    # legacy flags on purpose: backends/pytorch/eager.py reads allow_tf32, and mixing the legacy and the new
    # fp32_precision API makes torch raise on the next read.
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return {"tf32_matmul": enabled, "applied": True,
            "api": "torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32"}
