"""Pruning transforms for suites: unstructured magnitude, CSR sparse kernels, structured removal, 2:4."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import NoOptions, Transform, transforms


@transforms.register("prune-unstructured")
class PruneUnstructured(Transform):
    """L1 magnitude pruning made permanent; dense kernels still do the same work."""

    kind = "pruning"

    class Options(NoOptions):
        sparsity: float = Field(0.5, gt=0, lt=1)
        scope: Literal["global", "layer"] = "global"

    def apply(self, model, options, ctx):
        from . import pruning

        return pruning.magnitude_prune(model, options.sparsity, options.scope)

    def describe(self, options):
        return f"{options.sparsity:.0%} unstructured ({options.scope}), dense kernels"


@transforms.register("sparse-csr")
class SparseCsr(Transform):
    """Run sufficiently sparse projections through torch's CSR sparse matmul (after prune-unstructured)."""

    kind = "pruning"

    class Options(NoOptions):
        min_sparsity: float = Field(0.5, gt=0, lt=1)

    def apply(self, model, options, ctx):
        from . import pruning

        return pruning.sparse_linear(model, options.min_sparsity)

    def describe(self, options):
        return f"CSR sparse matmul where sparsity >= {options.min_sparsity:.0%}"


@transforms.register("prune-structured")
class PruneStructured(Transform):
    """Physically remove the lowest-ranked attention heads and FFN neurons: a smaller dense model."""

    kind = "pruning"

    class Options(NoOptions):
        head_fraction: float = Field(0.0, ge=0, lt=1)
        ffn_fraction: float = Field(0.5, ge=0, lt=1)
        method: Literal["magnitude", "activation"] = "magnitude"
        calibration_samples: int = Field(8, ge=1, description="real-text windows for activation ranking")

    def apply(self, model, options, ctx):
        import torch

        from . import pruning

        batches = None
        if options.method == "activation":
            batches = [{k: torch.from_numpy(v) for k, v in b.items()}
                       for b in ctx.calibration_batches(options.calibration_samples)]
        model, info = pruning.structured_prune(model, options.head_fraction, options.ffn_fraction, options.method,
                                               batches)
        if batches:
            info["calibration"] = {"samples": len(batches), "seq_len": ctx.seq_len, "text": "pydoc_data.topics"}
        # what was actually removed scales the analytic FLOPs the config still describes
        info["flop_scales"] = {"matmul": info["matmul_param_ratio"], "attention": info["attention_head_ratio"]}
        return model, info

    def describe(self, options):
        parts = [f"{options.ffn_fraction:.0%} FFN"] if options.ffn_fraction else []
        parts += [f"{options.head_fraction:.0%} heads"] if options.head_fraction else []
        return f"structured: {' + '.join(parts) or 'nothing'} removed ({options.method} ranking)"


@transforms.register("sparse-2to4")
class SemiStructured(Transform):
    """2:4 semi-structured sparsity on Ampere-or-newer GPUs (unsupported elsewhere, with the reason).

    It runs after the precision stage: its kernels take the fp16/bf16 weights that stage produces."""

    kind = "pruning"

    after_precision = True

    def describe(self, options):
        return "2:4 semi-structured (sparse tensor cores)"

    def apply(self, model, options, ctx):
        from . import pruning

        return pruning.semi_structured_2to4(model, ctx.device)
