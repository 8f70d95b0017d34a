"""Depth pruning: remove whole transformer blocks. The model keeps its width and loses depth, so every
kernel stays dense and the speedup follows the blocks removed. Quality falls fast without recovery.

By default it removes a fraction of the blocks from the deep end, sparing the last block (the one that
feeds the output head), as depth-pruning papers find the middle and late-middle blocks the least needed.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ...config import NoOptions
from ...errors import Unsupported
from .. import Transform, transforms
from .layout import block_list


def blocks_to_drop(count: int, fraction: float) -> list[int]:
    """`fraction` of `count` blocks, taken from just before the last one downwards."""
    n = min(int(round(fraction * count)), count - 1)
    return list(range(count - 1 - n, count - 1))


@transforms.register("prune-layers")
class PruneLayers(Transform):
    """Remove transformer blocks (depth pruning): explicit indices, or a fraction from the deep end."""

    kind = "pruning"

    class Options(NoOptions):
        fraction: float = Field(0.25, gt=0, lt=1, description="share of the blocks to remove (ignored with `drop`)")
        drop: list[int] | None = Field(None, description="block indices to remove, instead of a fraction")

        @model_validator(mode="after")
        def _distinct(self):
            if self.drop is not None and len(set(self.drop)) != len(self.drop):
                raise ValueError("drop lists a block twice")
            return self

    def apply(self, model, options, ctx):
        family, blocks = block_list(model)
        count = len(blocks)
        drop = sorted(options.drop) if options.drop is not None else blocks_to_drop(count, options.fraction)
        if not drop or drop[0] < 0 or drop[-1] >= count or len(drop) >= count:
            raise Unsupported(f"prune-layers: cannot remove blocks {drop} of {count}; at least one must stay")
        params_before = sum(p.numel() for p in model.parameters())
        for index in reversed(drop):
            del blocks[index]  # ModuleList renumbers what stays
        kept = list(blocks)
        for index, block in enumerate(kept):  # KV caches index layers by position
            for module in block.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = index
        config = model.config
        setattr(config, family.fields.layers, len(kept))
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = [t for i, t in enumerate(config.layer_types) if i not in drop]
        return model, {"removed_blocks": drop, "blocks_before": count, "blocks_after": len(kept),
                       "params_before": params_before, "params_after": sum(p.numel() for p in model.parameters()),
                       "config_updated": family.fields.layers}

    def describe(self, options):
        which = f"blocks {options.drop}" if options.drop is not None else f"{options.fraction:.0%} of blocks"
        return f"depth: {which} removed"
