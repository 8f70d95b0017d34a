"""Layout surgery: find a model's transformer blocks by its family's pruning layout (bench/models/families.py,
which says where a block's attention and FFN projections live), and physically remove attention heads and FFN
neurons from them, so the model really runs with fewer heads and a narrower FFN. Structured pruning
(structured.py) removes what ranking.py ranks lowest; depth pruning (layers.py) finds the blocks here.

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
  head removes its K/V).
* At least one head and one FFN neuron are kept per layer (a zero-width projection cannot be reshaped into
  heads); asking to remove all of them raises ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import Unsupported
from ...models.families import Family, family_of
from ..sparsity import count_params, is_linear_like

# --------------------------------------------------------------------------- layout of a model


def weight_rows(module: Any, conv1d: bool):
    """The weight as (out_features, in_features); a transposed view for Conv1D."""
    return module.weight.t() if conv1d else module.weight


def _has_paths(block: Any, paths: list[str]) -> bool:
    try:
        for p in paths:
            block.get_submodule(p)
    except AttributeError:
        return False
    return True


class Heads:
    """One block's self-attention projections and their head geometry."""

    def __init__(self, family: Family, block: Any, head_dim: int):
        lay = family.pruning
        self.family, self.conv1d, self.head_dim = family, family.conv1d, head_dim
        self.attn = block.get_submodule(lay.attention)
        self.out = block.get_submodule(lay.out)
        if lay.qkv:
            qkv = block.get_submodule(lay.qkv)
            self.n_heads = self.n_kv = weight_rows(qkv, self.conv1d).shape[0] // (3 * head_dim)
            q_width, kv_width = self.n_heads * head_dim, self.n_kv * head_dim
            # (module, offset of its first unit): q, k and v side by side in one projection
            self.q, self.k, self.v = (qkv, 0), (qkv, q_width), (qkv, q_width + kv_width)
        else:
            self.q, self.k, self.v = ((block.get_submodule(p), 0) for p in (lay.q, lay.k, lay.v))
            self.n_heads = weight_rows(self.q[0], self.conv1d).shape[0] // head_dim
            self.n_kv = weight_rows(self.k[0], self.conv1d).shape[0] // head_dim
        self.n_rep = self.n_heads // self.n_kv

    def dims(self, heads) -> list[int]:
        hd = self.head_dim
        return [h * hd + j for h in heads for j in range(hd)]

    def _units(self, proj: tuple, h: int):
        module, offset = proj
        return weight_rows(module, self.conv1d)[offset + h * self.head_dim: offset + (h + 1) * self.head_dim]

    def query_weights(self, h: int) -> list:
        """Weights touching query head ``h`` alone: its q rows and the output-projection columns it feeds."""
        hd = self.head_dim
        return [self._units(self.q, h), weight_rows(self.out, self.conv1d)[:, h * hd:(h + 1) * hd]]

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


class Ffn:
    """One block's FFN: the projections whose outputs are its neurons (up, and gate) and the down projection."""

    def __init__(self, family: Family, block: Any):
        lay = family.pruning
        self.conv1d = family.conv1d
        self.ups = [block.get_submodule(p) for p in lay.ffn_up]
        self.down = block.get_submodule(lay.ffn_down)
        self.parent = block.get_submodule(lay.ffn_down.rpartition(".")[0])
        self.size = weight_rows(self.down, self.conv1d).shape[1]

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
class Blocks:
    """A model's family and transformer blocks (the first ModuleList whose blocks have the family's layout)."""

    family: Family
    blocks: list
    head_dim: int

    @classmethod
    def of(cls, model: Any) -> Blocks:
        family, blocks = block_list(model)
        # head_dim never changes by pruning: the config's (or hidden / heads) stays right
        return cls(family, list(blocks), family.dims(model.config).head_dim)

    def heads(self, i: int) -> Heads:
        return Heads(self.family, self.blocks[i], self.head_dim)

    def ffn(self, i: int) -> Ffn:
        return Ffn(self.family, self.blocks[i])

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


# --------------------------------------------------------------------------- surgery


def _sync_config(model: Any, s: Blocks) -> dict:
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
    s = Blocks.of(model)
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


def _prune_layer_heads(s: Blocks, i: int, remove: set[int]) -> dict:
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

    def prune_layer(s: Blocks, i: int, idx: set[int]) -> dict:
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
