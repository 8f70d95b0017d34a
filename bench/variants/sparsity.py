"""What the pruning transforms share: which Linear-like layers they touch, and how sparse a model is.

Linear-like means nn.Linear or GPT-2's Conv1D (bench/models/families.py). Every pruning function returns
``(model, info)``; ``info`` records the target and the achieved settings, so a result says what was measured.
"""

from __future__ import annotations

from typing import Any, Callable

from ..models.families import is_conv1d

OUTPUT_HEAD_NAMES = ("lm_head", "classifier", "score", "qa_outputs")
"""Last name components of task heads that unstructured pruning leaves alone by default."""


def is_linear_like(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or is_conv1d(module)


def _default_include(model: Any) -> Callable[[str, Any], bool]:
    import torch

    tied = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}

    def include(name: str, module: Any) -> bool:
        return name.rsplit(".", 1)[-1] not in OUTPUT_HEAD_NAMES and id(module.weight) not in tied

    return include


def candidates(model: Any, include: Callable[[str, Any], bool] | None) -> tuple[list, list[str]]:
    """The (name, module) Linear-like layers `include(name, module)` picks, and the names it leaves out.

    Default: every one except task heads named in ``OUTPUT_HEAD_NAMES`` and weights tied to an embedding.
    """
    include = include or _default_include(model)
    chosen, excluded = [], []
    for name, module in model.named_modules():
        if is_linear_like(module) and getattr(module, "weight", None) is not None:
            (chosen if include(name, module) else excluded).append((name, module))
    return chosen, [n for n, _ in excluded]


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def tensor_stats(w) -> dict:
    numel = w.numel()
    nonzero = int((w != 0).sum().item())
    return {"shape": list(w.shape), "numel": numel, "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / numel if numel else 0.0}


def sparsity_report(model: Any) -> dict:
    """Zero counts of every Linear-like weight (Linear, GPT-2 Conv1D, CSR layers from ``sparse_linear``)
    and of all parameters, plus any pruning re-parametrizations (``weight_orig``/mask hooks) still present."""
    import torch
    from torch.nn.utils import prune

    per_layer: dict[str, dict] = {}
    lin_numel = lin_nonzero = 0
    leftovers = []
    for name, module in model.named_modules():
        if hasattr(module, "weight_orig") or any(
            isinstance(h, prune.BasePruningMethod) for h in module._forward_pre_hooks.values()
        ):
            leftovers.append(name)
        csr = getattr(module, "weight_csr", None)
        if csr is not None:
            numel = csr.shape[0] * csr.shape[1]
            nonzero = int((csr.values() != 0).sum().item())
            stats = {"shape": list(csr.shape), "numel": numel, "nonzero": nonzero,
                     "sparsity": 1.0 - nonzero / numel, "format": "csr"}
        elif is_linear_like(module) and getattr(module, "weight", None) is not None:
            w = module.weight
            w = w.detach() if type(w) in (torch.Tensor, torch.nn.Parameter) else w
            if w.layout != torch.strided or type(w) is not torch.Tensor:
                # tensor subclasses (2:4 semi-structured, torchao quantized): shape only
                per_layer[name] = {"shape": list(w.shape), "format": type(w).__name__}
                continue
            stats = tensor_stats(w)
            stats["format"] = "conv1d" if is_conv1d(module) else "dense"
        else:
            continue
        per_layer[name] = stats
        lin_numel += stats["numel"]
        lin_nonzero += stats["nonzero"]
    p_numel = p_nonzero = 0
    for p in model.parameters():
        if type(p) in (torch.Tensor, torch.nn.Parameter) and p.layout == torch.strided:
            p_nonzero += int((p.detach() != 0).sum().item())
            p_numel += p.numel()
    return {
        "linear_numel": lin_numel,
        "linear_nonzero": lin_nonzero,
        "linear_sparsity": 1.0 - lin_nonzero / lin_numel if lin_numel else 0.0,
        "params_numel": p_numel,
        "params_nonzero": p_nonzero,
        "params_sparsity": 1.0 - p_nonzero / p_numel if p_numel else 0.0,
        "pruning_reparametrizations": leftovers,
        "per_layer": per_layer,
    }
