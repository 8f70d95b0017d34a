"""Structured pruning: remove the lowest-ranked attention heads and FFN neurons of every layer, so the model
really runs with fewer heads and a narrower FFN (a smaller dense model). It works on every model family with a
pruning layout (bench/models/families.py); the surgery is layout.py's, the ranking ranking.py's.

Under grouped-query attention ``structured_prune(gqa="group")`` (default) ranks whole KV groups and removes them
with their query heads, which shrinks q, k, v and o and the KV cache; ``gqa="within"`` removes the same number of
lowest-ranked query heads from every group (only q and o shrink).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal

from pydantic import Field

from ...config import NoOptions
from ...models.inputs import HELD_OUT_TEXT
from .. import Transform, transforms
from ..sparsity import count_params
from .layout import prune_ffn_neurons, prune_heads
from .ranking import unit_scores


def _n_remove(fraction: float, total: int) -> int:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fractions must be in [0, 1), got {fraction}")
    return min(int(math.floor(fraction * total + 0.5)), total - 1)


def structured_prune(
    model: Any,
    head_fraction: float = 0.0,
    ffn_fraction: float = 0.5,
    method: Literal["magnitude", "activation"] = "magnitude",
    calibration_batches: Iterable | None = None,
    gqa: Literal["group", "within"] = "group",
    p: float = 2,
) -> tuple[Any, dict]:
    """Remove the lowest-ranked ``head_fraction`` of heads and ``ffn_fraction`` of FFN neurons in every
    layer (rounded per layer, at least one of each kept) and return the smaller dense model.

    All scores are computed on the model as given, before any surgery. Under grouped-query attention
    ``gqa="group"`` removes ``round(head_fraction * n_kv_heads)`` whole KV groups (group score = sum over its
    query heads, plus its K/V weights for magnitude); ``gqa="within"`` removes
    ``round(head_fraction * heads_per_group)`` query heads from every group.
    """
    if gqa not in ("group", "within"):
        raise ValueError(f"gqa must be 'group' or 'within', got {gqa!r}")
    s, head_s, group_s, ffn_s = unit_scores(model, method, calibration_batches, p)
    before = count_params(model)
    matmul_before = s.matmul_params()
    layers = range(len(s.blocks))
    heads_before = sum(s.heads(i).n_heads for i in layers)
    ffn_before = sum(s.ffn(i).size for i in layers)
    grouped = any(s.heads(i).n_rep > 1 for i in layers)
    heads_to_prune: dict[int, list[int]] = {}
    ffn_keep: dict[int, list[int]] = {}
    for i in layers:
        lay = s.heads(i)
        if head_fraction > 0:
            if lay.n_rep > 1 and gqa == "group":
                n = _n_remove(head_fraction, lay.n_kv)
                groups = group_s[i].argsort()[:n].tolist()
                heads_to_prune[i] = [h for g in groups for h in range(g * lay.n_rep, (g + 1) * lay.n_rep)]
            elif lay.n_rep > 1:
                n = _n_remove(head_fraction, lay.n_rep)
                rem = []
                for g in range(lay.n_kv):
                    members = range(g * lay.n_rep, (g + 1) * lay.n_rep)
                    order = head_s[i][g * lay.n_rep:(g + 1) * lay.n_rep].argsort()[:n].tolist()
                    rem += [members[j] for j in order]
                heads_to_prune[i] = rem
            else:
                heads_to_prune[i] = head_s[i].argsort()[:_n_remove(head_fraction, lay.n_heads)].tolist()
        if ffn_fraction > 0:
            size = s.ffn(i).size
            n = _n_remove(ffn_fraction, size)
            ffn_keep[i] = sorted(ffn_s[i].argsort(descending=True)[: size - n].tolist())
    _, head_info = prune_heads(model, heads_to_prune)
    _, ffn_info = prune_ffn_neurons(model, neurons_to_keep=ffn_keep)
    after = count_params(model)
    heads_removed = sum(len(v["removed"]) for v in head_info["heads"].values())
    ffn_removed = sum(v["removed_count"] for v in ffn_info["ffn"].values())
    return model, {
        "method": method,
        "family": s.family.name,
        "target_head_fraction": head_fraction,
        "target_ffn_fraction": ffn_fraction,
        "achieved_head_fraction": heads_removed / heads_before,
        "achieved_ffn_fraction": ffn_removed / ffn_before,
        "gqa": gqa if grouped else None,
        "norm_p": p if method == "magnitude" else None,
        "params_before": before,
        "params_after": after,
        "param_reduction": 1.0 - after / before,
        # read by the runner to scale the config-derived matmul FLOPs of the pruned model
        "matmul_param_ratio": s.matmul_params() / matmul_before,
        "attention_head_ratio": 1.0 - heads_removed / heads_before,
        "heads": head_info["heads"],
        "ffn": ffn_info["ffn"],
        "layout": ffn_info["layout"],
    }


@transforms.register("prune-structured")
class PruneStructured(Transform):
    """Physically remove the lowest-ranked attention heads and FFN neurons: a smaller dense model."""

    kind = "pruning"

    class Options(NoOptions):
        head_fraction: float = Field(0.0, ge=0, lt=1)
        ffn_fraction: float = Field(0.5, ge=0, lt=1)
        method: Literal["magnitude", "activation"] = "magnitude"
        calibration_samples: int = Field(8, ge=1, description="real-text windows for activation ranking")

    def cache_inputs(self, options, ctx):
        """Activation ranking calibrates on held-out windows of the run's sequence length."""
        if options.method != "activation":
            return {}
        return {"calibration": {"seq_len": ctx.seq_len, "samples": options.calibration_samples, "text": HELD_OUT_TEXT}}

    def apply(self, model, options, ctx):
        import torch

        batches = None
        if options.method == "activation":
            batches = [{k: torch.from_numpy(v) for k, v in b.items()}
                       for b in ctx.calibration_batches(options.calibration_samples)]
        model, info = structured_prune(model, options.head_fraction, options.ffn_fraction, options.method, batches)
        if batches:
            info["calibration"] = {"samples": len(batches), "seq_len": ctx.seq_len, "text": HELD_OUT_TEXT}
        # what was actually removed scales the analytic FLOPs the config still describes
        info["flop_scales"] = {"matmul": info["matmul_param_ratio"], "attention": info["attention_head_ratio"]}
        return model, info

    def describe(self, options):
        parts = [f"{options.ffn_fraction:.0%} FFN"] if options.ffn_fraction else []
        parts += [f"{options.head_fraction:.0%} heads"] if options.head_fraction else []
        return f"structured: {' + '.join(parts) or 'nothing'} removed ({options.method} ranking)"
