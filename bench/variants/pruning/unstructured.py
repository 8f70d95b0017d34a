"""Unstructured magnitude pruning: zeroes weights but keeps dense tensors, so dense kernels do the same work.

Expect no speed-up from it alone; `sparse-csr` (variants/sparse_csr.py) swaps the pruned layers for a sparse matmul to
show whether a sparse kernel pays off on the machine at hand.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field

from ...config import NoOptions
from .. import Transform, transforms
from ..sparsity import candidates, sparsity_report


def magnitude_prune(
    model: Any,
    sparsity: float,
    scope: Literal["global", "layer"] = "global",
    include: Callable[[str, Any], bool] | None = None,
) -> tuple[Any, dict]:
    """L1 unstructured pruning of Linear (and GPT-2 Conv1D) weights, made permanent.

    ``scope="layer"`` zeroes ``round(sparsity * numel)`` weights in every tensor; ``"global"`` ranks
    all candidate weights together, so layers end up with different sparsities. ``include(name,
    module)`` picks the layers (default: every Linear-like layer except task heads named in
    ``OUTPUT_HEAD_NAMES`` and weights tied to an embedding). Biases are not pruned.
    """
    import torch
    from torch.nn.utils import prune

    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    chosen, excluded = candidates(model, include)
    if not chosen:
        raise ValueError("no Linear layers selected for pruning")
    params = [(m, "weight") for _, m in chosen]
    with torch.no_grad():
        if scope == "global":
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(sparsity))
        else:
            for m, attr in params:
                prune.l1_unstructured(m, attr, amount=float(sparsity))
        for m, attr in params:
            prune.remove(m, attr)

    report = sparsity_report(model)
    per_layer = {name: report["per_layer"][name] for name, _ in chosen}
    numel = sum(s["numel"] for s in per_layer.values())
    nonzero = sum(s["nonzero"] for s in per_layer.values())
    return model, {
        "method": "magnitude-l1-unstructured",
        "note": "zeros stay in dense tensors: dense kernels do the same work (see sparse_linear)",
        "scope": scope,
        "target_sparsity": float(sparsity),
        "achieved_sparsity": 1.0 - nonzero / numel,
        "achieved_sparsity_all_linear": report["linear_sparsity"],
        "pruned_tensors": len(chosen),
        "pruned_numel": numel,
        "pruned_nonzero": nonzero,
        "all_linear_numel": report["linear_numel"],
        "all_linear_nonzero": report["linear_nonzero"],
        "excluded": excluded,
        "per_layer": per_layer,
    }


@transforms.register("prune-unstructured")
class PruneUnstructured(Transform):
    """L1 magnitude pruning made permanent; dense kernels still do the same work."""

    kind = "pruning"

    class Options(NoOptions):
        sparsity: float = Field(0.5, gt=0, lt=1)
        scope: Literal["global", "layer"] = "global"

    def apply(self, model, options, ctx):
        return magnitude_prune(model, options.sparsity, options.scope)

    def describe(self, options):
        return f"{options.sparsity:.0%} unstructured ({options.scope}), dense kernels"
