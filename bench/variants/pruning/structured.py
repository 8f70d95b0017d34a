"""Structured pruning: physically remove attention heads and FFN neurons, so the model really runs with fewer
heads and a narrower FFN (a smaller dense model). It works on every model family with a pruning layout
(bench/models/families.py), which says where a block's attention and FFN projections live.

Design notes

* transformers 5 removed ``prune_heads``; the forwards of the supported families derive the head count from
  the tensor shapes (``view(..., -1, head_dim)``), and the few attributes they do read are named by the
  layout's ``head_attrs`` and updated here (BERT ``num_attention_heads``/``all_head_size``; GPT-2
  ``num_heads``/``split_size``, by which ``c_attn``'s output is split; Llama ``num_key_value_groups``, used by
  ``repeat_kv`` in eager and SDPA attention).
* Per-layer sizes may differ after pruning. Module attributes and weight shapes are the truth;
  ``config.pruned_layout`` records per-layer head/KV-head/FFN sizes. Global config fields are only changed
  where a model rebuilt from the config would then get the same shapes: the FFN width (the family's
  intermediate field, GPT-2 ``n_inner``) when it is the same in every layer, and the head counts when uniform
  in families whose config states ``head_dim`` (Llama class). Others derive the head size from
  ``hidden / heads``, so their head count is left as it was.
* GPT-2 uses ``Conv1D`` whose weight is stored transposed, ``(in_features, out_features)``: an output unit is a
  weight *column* and an input unit a weight *row*. A packed projection (GPT-2 ``c_attn``) holds
  ``[q | k | v]`` side by side, so removing a head removes its ``head_dim`` units from each of the three.
* Grouped-query attention: query head ``h`` reads KV head ``h // n_rep`` (``repeat_kv`` expands each KV head
  to ``n_rep`` consecutive query heads). ``prune_heads`` takes query-head indices and accepts any removal that
  leaves every surviving group with the same number of query heads; a group left with no query head is
  removed together with its K/V projection rows (with one head per group, as in BERT or GPT-2, removing a
  head removes its K/V). ``structured_prune(gqa="group")`` (default) ranks whole KV groups and removes them
  with their query heads, which shrinks q, k, v and o and the KV cache; ``gqa="within"`` removes the same
  number of lowest-ranked query heads from every group (only q and o shrink).
* Ranking: ``method="magnitude"`` (L_p norm of the weights touching a unit) needs no data but is a poor guide
  for Llama-class SwiGLU FFNs (SmolLM2-135M, 25% FFN removed: next-token accuracy 0.80 -> 0.03);
  ``method="activation"`` (mean |activation| on calibration text) kept 0.71 at 50% removed.
* At least one head and one FFN neuron are kept per layer (a zero-width projection cannot be reshaped into
  heads); asking to remove all of them raises ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from pydantic import Field

from ..config import NoOptions
from ..errors import Unsupported
from ..models.inputs import HELD_OUT_TEXT
from ..models.families import Family, family_of
from . import Transform, transforms
from .sparsity import count_params, is_linear_like

# --------------------------------------------------------------------------- layout of a model


def _rows(module: Any, conv1d: bool):
    """The weight as (out_features, in_features); a transposed view for Conv1D."""
    return module.weight.t() if conv1d else module.weight


def _has_paths(block: Any, paths: list[str]) -> bool:
    try:
        for p in paths:
            block.get_submodule(p)
    except AttributeError:
        return False
    return True


class _Heads:
    """One block's self-attention projections and their head geometry."""

    def __init__(self, family: Family, block: Any, head_dim: int):
        lay = family.pruning
        self.family, self.conv1d, self.head_dim = family, family.conv1d, head_dim
        self.attn = block.get_submodule(lay.attention)
        self.out = block.get_submodule(lay.out)
        if lay.qkv:
            qkv = block.get_submodule(lay.qkv)
            self.n_heads = self.n_kv = _rows(qkv, self.conv1d).shape[0] // (3 * head_dim)
            q_width, kv_width = self.n_heads * head_dim, self.n_kv * head_dim
            # (module, offset of its first unit): q, k and v side by side in one projection
            self.q, self.k, self.v = (qkv, 0), (qkv, q_width), (qkv, q_width + kv_width)
        else:
            self.q, self.k, self.v = ((block.get_submodule(p), 0) for p in (lay.q, lay.k, lay.v))
            self.n_heads = _rows(self.q[0], self.conv1d).shape[0] // head_dim
            self.n_kv = _rows(self.k[0], self.conv1d).shape[0] // head_dim
        self.n_rep = self.n_heads // self.n_kv

    def dims(self, heads) -> list[int]:
        hd = self.head_dim
        return [h * hd + j for h in heads for j in range(hd)]

    def _units(self, proj: tuple, h: int):
        module, offset = proj
        return _rows(module, self.conv1d)[offset + h * self.head_dim: offset + (h + 1) * self.head_dim]

    def query_weights(self, h: int) -> list:
        """Weights touching query head ``h`` alone: its q rows and the output-projection columns it feeds."""
        return [self._units(self.q, h), _rows(self.out, self.conv1d)[:, h * self.head_dim:(h + 1) * self.head_dim]]

    def kv_weights(self, g: int) -> list:
        return [self._units(self.k, g), self._units(self.v, g)]

    def weights(self, h: int) -> list:
        """Weights touching query head ``h``, with its K/V when no other head shares them."""
        return self.query_weights(h) + (self.kv_weights(h) if self.n_rep == 1 else [])

    def keep(self, keep: list[int]) -> list[int]:
        """Keep query heads ``keep`` (and the KV groups they read); returns the KV groups kept."""
        import torch

        per_group = [[h for h in keep if h // self.n_rep == g] for g in range(self.n_kv)]
        sizes = {len(k) for k in per_group if k}
        if len(sizes) != 1:
            raise ValueError(
                f"grouped-query attention: removal must leave every surviving KV group with the same number "
                f"of query heads (groups of {self.n_rep}; left {[len(k) for k in per_group]})"
            )
        kv_keep = [g for g, k in enumerate(per_group) if k]
        q_dims = torch.tensor(self.dims(keep), dtype=torch.long)
        kv_dims = torch.tensor(self.dims(kv_keep), dtype=torch.long)
        by_module: dict[int, tuple[Any, list]] = {}
        for (module, offset), units in ((self.q, q_dims), (self.k, kv_dims), (self.v, kv_dims)):
            by_module.setdefault(id(module), (module, []))[1].append(units + offset)
        for module, units in by_module.values():
            _keep_out(module, torch.cat(units), self.conv1d)
        _keep_in(self.out, q_dims, self.conv1d)
        values = {"heads": len(keep), "q_width": len(keep) * self.head_dim, "kv_groups": sizes.pop()}
        for attr, quantity in self.family.pruning.head_attrs.items():
            setattr(self.attn, attr, values[quantity])
        return kv_keep


class _Ffn:
    """One block's FFN: the projections whose outputs are its neurons (up, and gate) and the down projection."""

    def __init__(self, family: Family, block: Any):
        lay = family.pruning
        self.conv1d = family.conv1d
        self.ups = [block.get_submodule(p) for p in lay.ffn_up]
        self.down = block.get_submodule(lay.ffn_down)
        self.parent = block.get_submodule(lay.ffn_down.rpartition(".")[0])
        self.size = _rows(self.down, self.conv1d).shape[1]

    def keep(self, keep: list[int]) -> None:
        import torch

        k = torch.tensor(keep, dtype=torch.long)
        for u in self.ups:
            _keep_out(u, k, self.conv1d)
        _keep_in(self.down, k, self.conv1d)
        if hasattr(self.parent, "intermediate_size"):
            self.parent.intermediate_size = len(keep)


def block_list(model: Any) -> tuple[Family, Any]:
    """A model's family and its transformer blocks: the first ModuleList whose blocks have the family's layout."""
    import torch

    family = family_of(model)
    if family.pruning is None:
        raise Unsupported(f"structured pruning does not support the {family.name} family: {family.pruning_refusal}")
    paths = family.pruning.paths()
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0 and _has_paths(module[0], paths):
            return family, module
    raise Unsupported(f"{type(model).__name__} ({family.name} family) has no blocks with {', '.join(paths)}")


@dataclass
class _Blocks:
    """A model's family and transformer blocks (the first ModuleList whose blocks have the family's layout)."""

    family: Family
    blocks: list
    head_dim: int

    @classmethod
    def of(cls, model: Any) -> _Blocks:
        family, blocks = block_list(model)
        # head_dim never changes by pruning: the config's (or hidden / heads) stays right
        return cls(family, list(blocks), family.dims(model.config).head_dim)

    def heads(self, i: int) -> _Heads:
        return _Heads(self.family, self.blocks[i], self.head_dim)

    def ffn(self, i: int) -> _Ffn:
        return _Ffn(self.family, self.blocks[i])

    def matmul_params(self) -> int:
        """Weights of the Linear-like layers inside the blocks (what ``flops.forward_flops`` counts as
        ``linear``; embeddings, pooler and LM head excluded)."""
        return sum(m.weight.numel() for b in self.blocks for m in b.modules() if is_linear_like(m))

    def check_layer(self, i: int) -> int:
        if not 0 <= i < len(self.blocks):
            raise ValueError(f"layer {i} out of range 0..{len(self.blocks) - 1}")
        return i


def _keep_out(module: Any, idx, conv1d: bool) -> None:
    """Keep only output units ``idx`` of a Linear/Conv1D."""
    import torch

    with torch.no_grad():
        if conv1d:
            module.weight = torch.nn.Parameter(module.weight[:, idx].clone(), module.weight.requires_grad)
            module.nf = len(idx)
        else:
            module.weight = torch.nn.Parameter(module.weight[idx].clone(), module.weight.requires_grad)
            module.out_features = len(idx)
        if module.bias is not None:
            module.bias = torch.nn.Parameter(module.bias[idx].clone(), module.bias.requires_grad)


def _keep_in(module: Any, idx, conv1d: bool) -> None:
    """Keep only input units ``idx`` of a Linear/Conv1D."""
    import torch

    with torch.no_grad():
        if conv1d:
            module.weight = torch.nn.Parameter(module.weight[idx].clone(), module.weight.requires_grad)
            module.nx = len(idx)
        else:
            module.weight = torch.nn.Parameter(module.weight[:, idx].clone(), module.weight.requires_grad)
            module.in_features = len(idx)


def _norm(tensors: list, p: float) -> float:
    import torch

    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors])
    return float(torch.linalg.vector_norm(flat, ord=p))


# --------------------------------------------------------------------------- ranking


def _calibrate(model: Any, batches: Iterable, s: _Blocks) -> tuple[dict, dict]:
    """Mean |activation| per head (input of the attention output projection) and per FFN neuron
    (input of the down projection), averaged over non-padding tokens of the calibration batches."""
    import torch

    heads = {i: s.heads(i) for i in range(len(s.blocks))}
    ffns = {i: s.ffn(i) for i in range(len(s.blocks))}
    sums: dict = {}
    counts: dict = {}
    state = {"mask": None}

    def make_hook(key):
        def hook(_module, args):
            x = args[0].detach().float().abs()
            mask = state["mask"]
            if x.dim() == 3 and mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
                w = mask.to(device=x.device, dtype=x.dtype).unsqueeze(-1)
                total, n = (x * w).sum(dim=(0, 1)), float(w.sum())
            else:
                x = x.reshape(-1, x.shape[-1])
                total, n = x.sum(0), float(x.shape[0])
            sums[key] = sums.get(key, 0) + total
            counts[key] = counts.get(key, 0.0) + n
        return hook

    handles = []
    for i in heads:
        handles.append(heads[i].out.register_forward_pre_hook(make_hook(("head", i))))
        handles.append(ffns[i].down.register_forward_pre_hook(make_hook(("ffn", i))))
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:  # dicts of model kwargs (tensors or numpy arrays) or input_ids
                if isinstance(batch, dict):
                    batch = {k: torch.as_tensor(v).to(device) if v is not None and not isinstance(v, (bool, str))
                             else v for k, v in batch.items()}
                    state["mask"] = batch.get("attention_mask")
                    model(**batch)
                else:
                    state["mask"] = None
                    model(torch.as_tensor(batch).to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not counts:
        raise ValueError("calibration_batches was empty")
    head_scores, ffn_scores = {}, {}
    for i, lay in heads.items():
        mean = sums[("head", i)] / max(counts[("head", i)], 1.0)
        head_scores[i] = mean.reshape(lay.n_heads, lay.head_dim).mean(1)
        ffn_scores[i] = sums[("ffn", i)] / max(counts[("ffn", i)], 1.0)
    return head_scores, ffn_scores


def _scores(model, method, calibration_batches, p) -> tuple[_Blocks, dict, dict, dict]:
    """Per layer: query-head scores, KV-group scores and FFN-neuron scores (higher = keep)."""
    import torch

    s = _Blocks.of(model)
    if method == "activation":
        if calibration_batches is None:
            raise ValueError("method='activation' needs calibration_batches")
        head_s, ffn_s = _calibrate(model, calibration_batches, s)
        group_s = {}
        for i in range(len(s.blocks)):
            lay = s.heads(i)
            group_s[i] = head_s[i].reshape(lay.n_kv, lay.n_rep).sum(1)
        return s, head_s, group_s, ffn_s
    if method != "magnitude":
        raise ValueError(f"method must be 'magnitude' or 'activation', got {method!r}")
    head_s, group_s, ffn_s = {}, {}, {}
    with torch.no_grad():
        for i in range(len(s.blocks)):
            lay = s.heads(i)
            head_s[i] = torch.tensor([_norm(lay.weights(h), p) for h in range(lay.n_heads)])
            group_s[i] = torch.tensor([
                _norm([w for h in range(g * lay.n_rep, (g + 1) * lay.n_rep) for w in lay.query_weights(h)]
                      + lay.kv_weights(g), p)
                for g in range(lay.n_kv)
            ])
            f = s.ffn(i)
            parts = [_rows(u, f.conv1d).detach().float().abs().pow(p).sum(1) for u in f.ups]
            parts.append(_rows(f.down, f.conv1d).detach().float().abs().pow(p).sum(0))
            ffn_s[i] = torch.stack(parts).sum(0).pow(1.0 / p)
    return s, head_s, group_s, ffn_s


def rank_heads(
    model: Any,
    method: Literal["magnitude", "activation"] = "magnitude",
    calibration_batches: Iterable | None = None,
    p: float = 2,
) -> dict[int, list[float]]:
    """Importance of every (query) head per layer; higher = more important.

    magnitude: L_p norm of the weights touching the head (its q/k/v output rows and the attention
    output-projection columns it feeds; under grouped-query attention the q rows and o columns, K/V being
    shared by the group). activation: mean |head output| (the input of the output projection) over the
    non-padding tokens of ``calibration_batches`` (dicts of model kwargs, or input_ids tensors).
    """
    _, head_s, _, _ = _scores(model, method, calibration_batches, p)
    return {i: s.tolist() for i, s in head_s.items()}


def rank_ffn_neurons(
    model: Any,
    method: Literal["magnitude", "activation"] = "magnitude",
    calibration_batches: Iterable | None = None,
    p: float = 2,
) -> dict[int, list[float]]:
    """Importance of every FFN neuron per layer: L_p norm of its up (and gate) rows and down column,
    or mean |activation| entering the down projection on the calibration batches."""
    _, _, _, ffn_s = _scores(model, method, calibration_batches, p)
    return {i: s.tolist() for i, s in ffn_s.items()}


# --------------------------------------------------------------------------- surgery


def _sync_config(model: Any, s: _Blocks) -> dict:
    fields = s.family.fields
    heads = [s.heads(i) for i in range(len(s.blocks))]
    layout = {"num_attention_heads": [h.n_heads for h in heads],
              "intermediate_size": [s.ffn(i).size for i in range(len(s.blocks))]}
    if fields.kv_heads:
        layout["num_key_value_heads"] = [h.n_kv for h in heads]
    config = getattr(model, "config", None)
    if config is not None:
        config.pruned_layout = layout
        ffn = set(layout["intermediate_size"])
        if len(ffn) == 1:
            setattr(config, fields.intermediate, ffn.pop())
        if fields.head_dim and fields.kv_heads and len(set(layout["num_attention_heads"])) == 1 \
                and len(set(layout["num_key_value_heads"])) == 1:
            setattr(config, fields.head_dim, s.head_dim)
            setattr(config, fields.heads, layout["num_attention_heads"][0])
            setattr(config, fields.kv_heads, layout["num_key_value_heads"][0])
    return layout


def _remove(model: Any, spec: dict, method: str, key: str, remove_in_layer) -> tuple[Any, dict]:
    """Run ``remove_in_layer(blocks, layer, units)`` on every layer named in ``spec`` and record what it did and
    the parameters before and after."""
    s = _Blocks.of(model)
    before = count_params(model)
    matmul_before = s.matmul_params()
    per_layer = {}
    for i, units in sorted(spec.items()):
        i = s.check_layer(int(i))
        per_layer[i] = remove_in_layer(s, i, {int(u) for u in units})
    layout = _sync_config(model, s)
    return model, {"method": method, "family": s.family.name, "params_before": before,
                   "params_after": count_params(model), "matmul_param_ratio": s.matmul_params() / matmul_before,
                   key: per_layer, "layout": layout}


def _prune_layer_heads(s: _Blocks, i: int, remove: set[int]) -> dict:
    lay = s.heads(i)
    bad = [h for h in remove if not 0 <= h < lay.n_heads]
    if bad:
        raise ValueError(f"head indices {bad} out of range 0..{lay.n_heads - 1}")
    keep = [h for h in range(lay.n_heads) if h not in remove]
    if not keep:
        raise ValueError("cannot remove every head of a layer; keep at least one")
    rec = {"heads_before": lay.n_heads, "heads_after": len(keep), "removed": sorted(remove)}
    kv_keep = lay.keep(keep) if remove else list(range(lay.n_kv))
    if s.family.fields.kv_heads:
        rec.update(kv_heads_before=lay.n_kv, kv_heads_after=len(kv_keep),
                   kv_removed=[g for g in range(lay.n_kv) if g not in kv_keep])
    return rec


def prune_heads(model: Any, heads_to_prune: dict[int, list[int]]) -> tuple[Any, dict]:
    """Physically remove attention heads: ``{layer: [head indices of that layer, as it is now]}``.

    Under grouped-query attention indices are query heads; removal must leave each surviving KV group with the
    same number of query heads, and a group left empty loses its K/V rows too.
    """
    return _remove(model, heads_to_prune, "remove-heads", "heads", _prune_layer_heads)


def prune_ffn_neurons(
    model: Any,
    neurons_to_prune: dict[int, list[int]] | None = None,
    neurons_to_keep: dict[int, list[int]] | None = None,
) -> tuple[Any, dict]:
    """Physically remove FFN neurons (up/gate output rows and down input columns) per layer; give
    either the indices to remove or those to keep (layers not named are left alone)."""
    if (neurons_to_prune is None) == (neurons_to_keep is None):
        raise ValueError("give exactly one of neurons_to_prune and neurons_to_keep")

    def prune_layer(s: _Blocks, i: int, idx: set[int]) -> dict:
        f = s.ffn(i)
        bad = [j for j in idx if not 0 <= j < f.size]
        if bad:
            raise ValueError(f"layer {i}: neuron indices {bad[:5]} out of range 0..{f.size - 1}")
        keep = sorted(idx) if neurons_to_keep is not None else [j for j in range(f.size) if j not in idx]
        if not keep:
            raise ValueError(f"layer {i}: cannot remove every FFN neuron; keep at least one")
        removed = [j for j in range(f.size) if j not in set(keep)]
        if removed:
            f.keep(keep)
        return {"before": f.size, "after": len(keep), "removed_count": len(removed), "removed": removed}

    spec = neurons_to_keep if neurons_to_keep is not None else neurons_to_prune
    return _remove(model, spec, "remove-ffn-neurons", "ffn", prune_layer)


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
    s, head_s, group_s, ffn_s = _scores(model, method, calibration_batches, p)
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
