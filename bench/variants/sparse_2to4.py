"""2:4 semi-structured sparsity on NVIDIA sparse tensor cores (CUDA, compute capability >= 8.0).

Two of every four consecutive weights along the input dimension are zeroed and the weights are stored with
``torch.sparse.to_sparse_semi_structured``, whose matmul kernels take fp16/bf16 Linear weights only.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import Unsupported
from ..models.families import conv1d_to_linear
from . import Transform, transforms
from .sparsity import candidates

SPARSE_TENSOR_CORES = {"cuda": (8, 0)}  # devices with 2:4 sparse matmul kernels, and the compute capability needed


def two_four_mask(weight):
    """Boolean mask keeping the 2 largest-|w| of every 4 consecutive weights along the input dim."""
    import torch

    out_f, in_f = weight.shape
    if in_f % 4:
        raise ValueError(f"2:4 sparsity needs in_features divisible by 4, got {in_f}")
    groups = weight.detach().abs().reshape(out_f, in_f // 4, 4)
    top = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return mask.reshape(out_f, in_f)


def semi_structured_2to4(
    model: Any,
    device: Any,
    dtype: Any = None,
    include: Callable[[str, Any], bool] | None = None,
) -> tuple[Any, dict]:
    """Apply a 2:4 magnitude mask to Linear weights and store them with
    ``torch.sparse.to_sparse_semi_structured`` so matmuls use sparse tensor cores.

    Needs CUDA on compute capability >= 8.0 (Ampere or newer) and fp16/bf16 weights: a model in another
    dtype is refused (Unsupported) unless ``dtype`` asks for the cast, so a record never says fp32 while
    running fp16. GPT-2 Conv1D layers are first turned into nn.Linear (the
    kernels take the sparse operand as a Linear weight only). Layers whose shape the kernels reject
    are left dense and listed under ``skipped``.
    """
    import torch

    dev = torch.device(device)
    if dev.type not in SPARSE_TENSOR_CORES:
        raise Unsupported(
            f"2:4 semi-structured sparsity runs on NVIDIA sparse tensor cores (CUDA, compute capability >= 8.0); "
            f"device is {dev.type}"
        )
    if not torch.cuda.is_available():
        raise Unsupported(f"2:4 semi-structured sparsity needs CUDA; torch {torch.__version__} sees no CUDA device")
    cap = torch.cuda.get_device_capability(dev)
    if cap < SPARSE_TENSOR_CORES[dev.type]:
        raise Unsupported(
            f"2:4 semi-structured sparsity needs compute capability >= 8.0 (Ampere or newer); "
            f"{torch.cuda.get_device_name(dev)} is sm_{cap[0]}{cap[1]}"
        )
    to_semi = getattr(torch.sparse, "to_sparse_semi_structured", None)
    if to_semi is None:
        raise Unsupported(f"torch {torch.__version__} has no torch.sparse.to_sparse_semi_structured")
    current = next(model.parameters()).dtype
    dtype = current if dtype is None else dtype
    if dtype not in (torch.float16, torch.bfloat16):
        raise Unsupported(
            f"2:4 semi-structured kernels take float16/bfloat16 weights, the model is "
            f"{str(dtype).replace('torch.', '')}: combine with precision fp16/bf16 (or pass dtype=)"
        )

    converted_conv1d = conv1d_to_linear(model)
    model.to(device=dev, dtype=dtype)
    chosen, excluded = candidates(model, include)
    done, skipped, kernels = {}, {}, set()
    with torch.no_grad():
        for name, m in chosen:
            w = m.weight.detach()
            try:
                masked = w * two_four_mask(w)
                sparse_w = to_semi(masked)
            except (RuntimeError, ValueError) as exc:
                skipped[name] = str(exc).splitlines()[0][:200]
                continue
            m.weight = torch.nn.Parameter(sparse_w, requires_grad=False)
            kernels.add(type(sparse_w).__name__)
            done[name] = {"shape": list(w.shape), "sparsity": 1.0 - float((masked != 0).sum()) / masked.numel()}
    if not done:
        raise Unsupported(f"no Linear layer accepted by the 2:4 kernels: {skipped}")
    return model, {
        "method": "semi-structured-2:4",
        "kernel": sorted(kernels),
        "device": str(dev),
        "compute_capability": f"{cap[0]}.{cap[1]}",
        "dtype": str(dtype).replace("torch.", ""),
        "cast_from": str(current).replace("torch.", "") if current != dtype else None,
        "conv1d_converted": converted_conv1d,
        "target_sparsity": 0.5,
        "layers": done,
        "skipped": skipped,
        "excluded": excluded,
    }


@transforms.register("sparse-2to4")
class SemiStructured(Transform):
    """2:4 semi-structured sparsity on Ampere-or-newer GPUs (unsupported elsewhere, with the reason).

    It runs after the precision stage: its kernels take the fp16/bf16 weights that stage produces."""

    kind = "pruning"

    after_precision = True

    def describe(self, options):
        return "2:4 semi-structured (sparse tensor cores)"

    def apply(self, model, options, ctx):
        return semi_structured_2to4(model, ctx.device)
