"""Pruning of transformers models: unstructured magnitude sparsity, a CSR sparse execution path,
structured removal of attention heads and FFN neurons, and 2:4 semi-structured sparsity on CUDA.

Every public transform returns ``(model, info)``; ``info`` records the target and the achieved
settings so a result can say what was really measured. Models are changed in place.

Design notes

* Unstructured pruning (``magnitude_prune``) zeroes weights but keeps dense tensors, so dense
  kernels do the same work: expect no speed-up from it alone. ``sparse_linear`` swaps pruned layers
  for a module that runs ``torch.addmm(bias, W_csr, x.T)`` (MKL sparse on CPU) to show whether a
  sparse kernel pays off on the machine at hand. Measured on this 2-core x86 CPU (MiniLM-L6, b8 s128,
  1 thread): 0.24x dense speed at 50% sparsity, break-even at 90%.
* Structured pruning physically slices the projections, so the model really runs with fewer heads
  and a narrower FFN. transformers 5 removed ``prune_heads``; the forwards of the supported
  families derive the head count from the tensor shapes (``view(..., -1, head_dim)``), and the few
  attributes they do read are updated here: BERT ``num_attention_heads``/``all_head_size``; GPT-2
  ``num_heads``/``split_size`` (``c_attn`` output is split by ``split_size``); Llama
  ``num_key_value_groups`` (used by ``repeat_kv`` in eager and SDPA attention).
* Per-layer sizes may differ after pruning. Module attributes and weight shapes are the truth;
  ``config.pruned_layout`` records per-layer head/KV-head/FFN sizes. Global config fields are
  only changed where a model rebuilt from the config would then get the same shapes: the FFN width
  (``intermediate_size``, GPT-2 ``n_inner``) when it is the same in every layer, and for Llama the
  head counts when uniform (``head_dim`` is explicit there). BERT/GPT-2 derive the head size from
  ``hidden_size / num_attention_heads``, so their ``num_attention_heads`` is left as it was.
* GPT-2 uses ``Conv1D`` whose weight is stored transposed, ``(in_features, out_features)``: an output
  unit is a weight *column* and an input unit a weight *row*. ``c_attn`` packs q, k and v side by
  side (``[q | k | v]``, each ``split_size`` wide), so removing a head removes its ``head_dim``
  columns from each of the three blocks.
* Grouped-query attention (Llama class): query head ``h`` reads KV head ``h // n_rep``
  (``repeat_kv`` expands each KV head to ``n_rep`` consecutive query heads). ``prune_heads`` takes
  query-head indices and accepts any removal that leaves every surviving group with the same number
  of query heads; a group left with no query head is removed together with its K/V projection rows.
  ``structured_prune(gqa="group")`` (default) ranks whole KV groups and removes them with their
  query heads, which shrinks q, k, v and o and the KV cache; ``gqa="within"`` removes the same
  number of lowest-ranked query heads from every group (only q and o shrink).
* Ranking: ``method="magnitude"`` (L_p norm of the weights touching a unit) needs no data but is a
  poor guide for Llama-class SwiGLU FFNs (SmolLM2-135M, 25% FFN removed: next-token accuracy 0.80 ->
  0.03); ``method="activation"`` (mean |activation| on calibration text) kept 0.71 at 50% removed.
* At least one head and one FFN neuron are kept per layer (a zero-width projection cannot be
  reshaped into heads); asking to remove all of them raises ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Literal

from ..errors import Unsupported

OUTPUT_HEAD_NAMES = ("lm_head", "classifier", "score", "qa_outputs")
"""Last name components of task heads that unstructured pruning leaves alone by default."""

Family = Literal["bert", "gpt2", "llama"]


# --------------------------------------------------------------------------- helpers


def _is_conv1d(module: Any) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx")


def _is_linear_like(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or _is_conv1d(module)


def _dense_weight(module: Any):
    """Weight as ``(out_features, in_features)`` (a view for Conv1D)."""
    return module.weight.t() if _is_conv1d(module) else module.weight


def _embedding_weight_ids(model: Any) -> set[int]:
    import torch

    return {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}


def _default_include(model: Any) -> Callable[[str, Any], bool]:
    tied = _embedding_weight_ids(model)

    def include(name: str, module: Any) -> bool:
        return name.rsplit(".", 1)[-1] not in OUTPUT_HEAD_NAMES and id(module.weight) not in tied

    return include


def _candidates(model: Any, include: Callable[[str, Any], bool] | None) -> tuple[list, list[str]]:
    include = include or _default_include(model)
    chosen, excluded = [], []
    for name, module in model.named_modules():
        if _is_linear_like(module) and getattr(module, "weight", None) is not None:
            (chosen if include(name, module) else excluded).append((name, module))
    return chosen, [n for n, _ in excluded]


def _count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _block_matmul_params(blocks: list) -> int:
    """Weights of the Linear-like layers inside the transformer blocks (what ``flops.forward_flops``
    counts as ``linear``; embeddings, pooler and LM head excluded)."""
    return sum(m.weight.numel() for b in blocks for m in b.modules() if _is_linear_like(m))


def _tensor_stats(w) -> dict:
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
        elif _is_linear_like(module) and getattr(module, "weight", None) is not None:
            w = module.weight
            w = w.detach() if type(w) in (torch.Tensor, torch.nn.Parameter) else w
            if w.layout != torch.strided or type(w) is not torch.Tensor:
                # tensor subclasses (2:4 semi-structured, torchao quantized): shape only
                per_layer[name] = {"shape": list(w.shape), "format": type(w).__name__}
                continue
            stats = _tensor_stats(w)
            stats["format"] = "conv1d" if _is_conv1d(module) else "dense"
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


# --------------------------------------------------------------------------- unstructured


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
    chosen, excluded = _candidates(model, include)
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


# --------------------------------------------------------------------------- CSR execution path

_SPARSE_LINEAR_CLS = None


def _sparse_linear_class():
    """Built lazily so importing this module does not import torch."""
    global _SPARSE_LINEAR_CLS
    if _SPARSE_LINEAR_CLS is not None:
        return _SPARSE_LINEAR_CLS
    import torch

    class SparseLinear(torch.nn.Module):
        """y = x W^T + b with W held in CSR; runs ``addmm(b[:, None], W_csr, x2d^T)^T``.

        In torch 2.13 on CPU, ``sparse_csr @ dense`` (MKL sparse) is the fast form; ``dense @ csr``
        and ``F.linear(x, csr)`` work too but are 2-10x slower, COO and BSR slower still.
        """

        def __init__(self, weight, bias):
            super().__init__()
            self.out_features, self.in_features = weight.shape
            self.register_buffer("weight_csr", weight.detach().to_sparse_csr())
            self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)

        def forward(self, x):
            lead = x.shape[:-1]
            x2 = x.reshape(-1, self.in_features).t()
            if self.bias is not None:
                y = torch.addmm(self.bias.unsqueeze(1), self.weight_csr, x2)
            else:
                y = torch.mm(self.weight_csr, x2)
            return y.t().reshape(*lead, self.out_features)

        def extra_repr(self):
            nnz = self.weight_csr.values().numel()
            return (f"in_features={self.in_features}, out_features={self.out_features}, "
                    f"nnz={nnz}, density={nnz / (self.in_features * self.out_features):.3f}")

    _SPARSE_LINEAR_CLS = SparseLinear
    return SparseLinear


def sparse_linear(
    model: Any, min_sparsity: float = 0.5, include: Callable[[str, Any], bool] | None = None
) -> tuple[Any, dict]:
    """Swap Linear/Conv1D layers whose weight sparsity is at least ``min_sparsity`` for a CSR matmul layer."""
    import warnings

    import torch

    cls = _sparse_linear_class()
    chosen, _ = _candidates(model, include)
    parents = {name: mod for name, mod in model.named_modules()}
    replaced, skipped = {}, {}
    for name, module in chosen:
        w = _dense_weight(module).detach()
        stats = _tensor_stats(w)
        if stats["sparsity"] < min_sparsity:
            skipped[name] = f"sparsity {stats['sparsity']:.3f} < {min_sparsity}"
            continue
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            try:
                new = cls(w.contiguous(), module.bias)
                with torch.no_grad():
                    new(torch.zeros(1, new.in_features, dtype=w.dtype, device=w.device))
            except (RuntimeError, NotImplementedError) as exc:
                raise Unsupported(
                    f"CSR matmul not available for {w.dtype} on {w.device.type} in torch {torch.__version__}: {exc}"
                ) from exc
        parent_name, _, child = name.rpartition(".")
        setattr(parents[parent_name], child, new)
        replaced[name] = stats
    numel = sum(s["numel"] for s in replaced.values())
    nonzero = sum(s["nonzero"] for s in replaced.values())
    return model, {
        "method": "sparse-csr-linear",
        "kernel": "torch.addmm(bias, W_csr, x.T)",
        "min_sparsity": min_sparsity,
        "replaced": len(replaced),
        "replaced_sparsity": 1.0 - nonzero / numel if numel else 0.0,
        "per_layer": replaced,
        "skipped": skipped,
    }


# --------------------------------------------------------------------------- structured: model layout


def _block_family(block: Any) -> Family | None:
    att = getattr(block, "attention", None)
    if att is not None and hasattr(getattr(att, "self", None), "query") and hasattr(block, "intermediate"):
        return "bert"
    if hasattr(getattr(block, "attn", None), "c_attn") and hasattr(getattr(block, "mlp", None), "c_fc"):
        return "gpt2"
    if hasattr(getattr(block, "self_attn", None), "q_proj") and hasattr(getattr(block, "mlp", None), "gate_proj"):
        return "llama"
    return None


def _blocks(model: Any) -> tuple[Family, list]:
    import torch

    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            fam = _block_family(module[0])
            if fam is not None:
                return fam, list(module)
    raise Unsupported(
        f"structured pruning supports BERT-, GPT-2- and Llama-class models; {type(model).__name__} has no "
        "recognised transformer blocks"
    )


class _HeadLayout:
    """The projections of one block's self-attention and their head geometry."""

    def __init__(self, family: Family, block: Any):
        self.family = family
        if family == "bert":
            a = block.attention.self
            self.attn = a
            self.head_dim = a.attention_head_size
            self.n_heads = a.query.out_features // self.head_dim
            self.n_kv = self.n_heads
            self.out = block.attention.output.dense
        elif family == "gpt2":
            a = block.attn
            self.attn = a
            self.head_dim = a.head_dim
            self.n_heads = a.split_size // self.head_dim
            self.n_kv = self.n_heads
            self.out = a.c_proj
        else:
            a = block.self_attn
            self.attn = a
            self.head_dim = a.head_dim
            self.n_heads = a.q_proj.out_features // self.head_dim
            self.n_kv = a.k_proj.out_features // self.head_dim
            self.out = a.o_proj
        self.n_rep = self.n_heads // self.n_kv

    def dims(self, heads) -> list[int]:
        hd = self.head_dim
        return [h * hd + j for h in heads for j in range(hd)]

    def head_weights(self, h: int) -> list:
        """Weights touching query head ``h`` (excluding shared K/V of GQA)."""
        sl = slice(h * self.head_dim, (h + 1) * self.head_dim)
        o = _dense_weight(self.out)[:, sl]
        if self.family == "bert":
            a = self.attn
            return [a.query.weight[sl], a.key.weight[sl], a.value.weight[sl], o]
        if self.family == "gpt2":
            w, s = self.attn.c_attn.weight, self.attn.split_size  # (in, 3*split)
            return [w[:, k * s + sl.start: k * s + sl.stop] for k in range(3)] + [o]
        return [self.attn.q_proj.weight[sl], o]

    def kv_weights(self, g: int) -> list:
        sl = slice(g * self.head_dim, (g + 1) * self.head_dim)
        return [self.attn.k_proj.weight[sl], self.attn.v_proj.weight[sl]]


class _FfnLayout:
    def __init__(self, family: Family, block: Any):
        if family == "bert":
            self.ups, self.down, self.mlp = [block.intermediate.dense], block.output.dense, None
        elif family == "gpt2":
            self.ups, self.down, self.mlp = [block.mlp.c_fc], block.mlp.c_proj, block.mlp
        else:
            self.ups, self.down, self.mlp = [block.mlp.gate_proj, block.mlp.up_proj], block.mlp.down_proj, block.mlp
        self.size = _dense_weight(self.down).shape[1]


def _keep_out(module: Any, idx) -> None:
    """Keep only output units ``idx`` of a Linear/Conv1D."""
    import torch

    with torch.no_grad():
        if _is_conv1d(module):
            module.weight = torch.nn.Parameter(module.weight[:, idx].clone(), module.weight.requires_grad)
            module.nf = len(idx)
        else:
            module.weight = torch.nn.Parameter(module.weight[idx].clone(), module.weight.requires_grad)
            module.out_features = len(idx)
        if module.bias is not None:
            module.bias = torch.nn.Parameter(module.bias[idx].clone(), module.bias.requires_grad)


def _keep_in(module: Any, idx) -> None:
    """Keep only input units ``idx`` of a Linear/Conv1D."""
    import torch

    with torch.no_grad():
        if _is_conv1d(module):
            module.weight = torch.nn.Parameter(module.weight[idx].clone(), module.weight.requires_grad)
            module.nx = len(idx)
        else:
            module.weight = torch.nn.Parameter(module.weight[:, idx].clone(), module.weight.requires_grad)
            module.in_features = len(idx)


def _norm(tensors: list, p: float) -> float:
    import torch

    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors])
    return float(torch.linalg.vector_norm(flat, ord=p))


# --------------------------------------------------------------------------- structured: ranking


def _calibrate(model: Any, batches: Iterable, family: Family, blocks: list) -> tuple[dict, dict]:
    """Mean |activation| per head (input of the attention output projection) and per FFN neuron
    (input of the down projection), averaged over non-padding tokens of the calibration batches."""
    import torch

    heads = {i: _HeadLayout(family, b) for i, b in enumerate(blocks)}
    ffns = {i: _FfnLayout(family, b) for i, b in enumerate(blocks)}
    sums: dict = {}
    counts: dict = {}
    state = {"mask": None}

    def make_hook(key):
        def hook(_module, args):
            x = args[0].detach().float().abs()
            mask = state["mask"]
            if x.dim() == 3 and mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
                w = mask.to(device=x.device, dtype=x.dtype).unsqueeze(-1)
                s, n = (x * w).sum(dim=(0, 1)), float(w.sum())
            else:
                x = x.reshape(-1, x.shape[-1])
                s, n = x.sum(0), float(x.shape[0])
            sums[key] = sums.get(key, 0) + s
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


def _scores(model, method, calibration_batches, p) -> tuple[Family, list, dict, dict, dict]:
    """Per layer: query-head scores, KV-group scores (Llama) and FFN-neuron scores (higher = keep)."""
    import torch

    family, blocks = _blocks(model)
    if method == "activation":
        if calibration_batches is None:
            raise ValueError("method='activation' needs calibration_batches")
        head_s, ffn_s = _calibrate(model, calibration_batches, family, blocks)
        group_s = {}
        for i, b in enumerate(blocks):
            lay = _HeadLayout(family, b)
            group_s[i] = head_s[i].reshape(lay.n_kv, lay.n_rep).sum(1)
        return family, blocks, head_s, group_s, ffn_s
    if method != "magnitude":
        raise ValueError(f"method must be 'magnitude' or 'activation', got {method!r}")
    head_s, group_s, ffn_s = {}, {}, {}
    with torch.no_grad():
        for i, b in enumerate(blocks):
            lay = _HeadLayout(family, b)
            head_s[i] = torch.tensor([_norm(lay.head_weights(h), p) for h in range(lay.n_heads)])
            group_s[i] = torch.tensor([
                _norm([w for h in range(g * lay.n_rep, (g + 1) * lay.n_rep) for w in lay.head_weights(h)]
                      + (lay.kv_weights(g) if family == "llama" else []), p)
                for g in range(lay.n_kv)
            ])
            f = _FfnLayout(family, b)
            parts = [_dense_weight(u).detach().float().abs().pow(p).sum(1) for u in f.ups]
            parts.append(_dense_weight(f.down).detach().float().abs().pow(p).sum(0))
            ffn_s[i] = torch.stack(parts).sum(0).pow(1.0 / p)
    return family, blocks, head_s, group_s, ffn_s


def rank_heads(
    model: Any,
    method: Literal["magnitude", "activation"] = "magnitude",
    calibration_batches: Iterable | None = None,
    p: float = 2,
) -> dict[int, list[float]]:
    """Importance of every (query) head per layer; higher = more important.

    magnitude: L_p norm of the weights touching the head (its q/k/v output rows and the attention
    output-projection columns it feeds; for Llama the q rows and o columns, K/V being shared by the
    group). activation: mean |head output| (the input of the output projection) over the
    non-padding tokens of ``calibration_batches`` (dicts of model kwargs, or input_ids tensors).
    """
    _, _, head_s, _, _ = _scores(model, method, calibration_batches, p)
    return {i: s.tolist() for i, s in head_s.items()}


def rank_ffn_neurons(
    model: Any,
    method: Literal["magnitude", "activation"] = "magnitude",
    calibration_batches: Iterable | None = None,
    p: float = 2,
) -> dict[int, list[float]]:
    """Importance of every FFN neuron per layer: L_p norm of its up (and gate) rows and down column,
    or mean |activation| entering the down projection on the calibration batches."""
    _, _, _, _, ffn_s = _scores(model, method, calibration_batches, p)
    return {i: s.tolist() for i, s in ffn_s.items()}


# --------------------------------------------------------------------------- structured: surgery


def _sync_config(model: Any, family: Family, blocks: list) -> dict:
    layout = {"num_attention_heads": [], "intermediate_size": []}
    if family == "llama":
        layout["num_key_value_heads"] = []
    for b in blocks:
        lay = _HeadLayout(family, b)
        layout["num_attention_heads"].append(lay.n_heads)
        if family == "llama":
            layout["num_key_value_heads"].append(lay.n_kv)
        layout["intermediate_size"].append(_FfnLayout(family, b).size)
    config = getattr(model, "config", None)
    if config is not None:
        config.pruned_layout = layout
        ffn = set(layout["intermediate_size"])
        if len(ffn) == 1:
            setattr(config, "n_inner" if family == "gpt2" else "intermediate_size", ffn.pop())
        if family == "llama" and len(set(layout["num_attention_heads"])) == 1 \
                and len(set(layout["num_key_value_heads"])) == 1:
            config.head_dim = _HeadLayout(family, blocks[0]).head_dim
            config.num_attention_heads = layout["num_attention_heads"][0]
            config.num_key_value_heads = layout["num_key_value_heads"][0]
    return layout


def _prune_layer_heads(family: Family, block: Any, remove: set[int]) -> dict:
    import torch

    lay = _HeadLayout(family, block)
    bad = [h for h in remove if not 0 <= h < lay.n_heads]
    if bad:
        raise ValueError(f"head indices {bad} out of range 0..{lay.n_heads - 1}")
    keep = [h for h in range(lay.n_heads) if h not in remove]
    if not keep:
        raise ValueError("cannot remove every head of a layer; keep at least one")
    rec = {"heads_before": lay.n_heads, "heads_after": len(keep), "removed": sorted(remove)}
    if not remove:
        if family == "llama":
            rec.update(kv_heads_before=lay.n_kv, kv_heads_after=lay.n_kv, kv_removed=[])
        return rec
    hd = lay.head_dim
    q_dims = torch.tensor(lay.dims(keep), dtype=torch.long)
    a = lay.attn
    if family == "bert":
        for m in (a.query, a.key, a.value):
            _keep_out(m, q_dims)
        _keep_in(lay.out, q_dims)
        a.num_attention_heads = len(keep)
        a.all_head_size = len(keep) * hd
    elif family == "gpt2":
        s = a.split_size
        cols = torch.cat([q_dims + k * s for k in range(3)])
        _keep_out(a.c_attn, cols)
        _keep_in(lay.out, q_dims)
        a.num_heads = len(keep)
        a.split_size = len(keep) * hd
    else:
        per_group = [[h for h in keep if h // lay.n_rep == g] for g in range(lay.n_kv)]
        sizes = {len(k) for k in per_group if k}
        if len(sizes) != 1:
            raise ValueError(
                f"grouped-query attention: removal must leave every surviving KV group with the same number "
                f"of query heads (groups of {lay.n_rep}; left {[len(k) for k in per_group]})"
            )
        kv_keep = [g for g, k in enumerate(per_group) if k]
        kv_dims = torch.tensor(lay.dims(kv_keep), dtype=torch.long)
        _keep_out(a.q_proj, q_dims)
        _keep_out(a.k_proj, kv_dims)
        _keep_out(a.v_proj, kv_dims)
        _keep_in(lay.out, q_dims)
        a.num_key_value_groups = sizes.pop()
        a.num_heads = len(keep)
        a.num_key_value_heads = len(kv_keep)
        rec.update(kv_heads_before=lay.n_kv, kv_heads_after=len(kv_keep),
                   kv_removed=[g for g in range(lay.n_kv) if g not in kv_keep])
    return rec


def prune_heads(model: Any, heads_to_prune: dict[int, list[int]]) -> tuple[Any, dict]:
    """Physically remove attention heads: ``{layer: [head indices of that layer, as it is now]}``.

    Llama class: indices are query heads; removal must leave each surviving KV group with the same
    number of query heads, and a group left empty loses its K/V rows too.
    """
    family, blocks = _blocks(model)
    before = _count_params(model)
    matmul_before = _block_matmul_params(blocks)
    per_layer = {}
    for i, heads in sorted(heads_to_prune.items()):
        if not 0 <= int(i) < len(blocks):
            raise ValueError(f"layer {i} out of range 0..{len(blocks) - 1}")
        per_layer[int(i)] = _prune_layer_heads(family, blocks[int(i)], {int(h) for h in heads})
    layout = _sync_config(model, family, blocks)
    return model, {"method": "remove-heads", "family": family, "params_before": before,
                   "params_after": _count_params(model),
                   "matmul_param_ratio": _block_matmul_params(blocks) / matmul_before,
                   "heads": per_layer, "layout": layout}


def prune_ffn_neurons(
    model: Any,
    neurons_to_prune: dict[int, list[int]] | None = None,
    neurons_to_keep: dict[int, list[int]] | None = None,
) -> tuple[Any, dict]:
    """Physically remove FFN neurons (up/gate output rows and down input columns) per layer; give
    either the indices to remove or those to keep (layers not named are left alone)."""
    import torch

    if (neurons_to_prune is None) == (neurons_to_keep is None):
        raise ValueError("give exactly one of neurons_to_prune and neurons_to_keep")
    family, blocks = _blocks(model)
    before = _count_params(model)
    matmul_before = _block_matmul_params(blocks)
    per_layer = {}
    spec = neurons_to_keep if neurons_to_keep is not None else neurons_to_prune
    for i, idx in sorted(spec.items()):
        i = int(i)
        if not 0 <= i < len(blocks):
            raise ValueError(f"layer {i} out of range 0..{len(blocks) - 1}")
        f = _FfnLayout(family, blocks[i])
        idx = {int(j) for j in idx}
        bad = [j for j in idx if not 0 <= j < f.size]
        if bad:
            raise ValueError(f"layer {i}: neuron indices {bad[:5]} out of range 0..{f.size - 1}")
        keep = sorted(idx) if neurons_to_keep is not None else [j for j in range(f.size) if j not in idx]
        if not keep:
            raise ValueError(f"layer {i}: cannot remove every FFN neuron; keep at least one")
        removed = [j for j in range(f.size) if j not in set(keep)]
        if removed:
            k = torch.tensor(keep, dtype=torch.long)
            for u in f.ups:
                _keep_out(u, k)
            _keep_in(f.down, k)
            if f.mlp is not None and hasattr(f.mlp, "intermediate_size"):
                f.mlp.intermediate_size = len(keep)
        per_layer[i] = {"before": f.size, "after": len(keep), "removed_count": len(removed), "removed": removed}
    layout = _sync_config(model, family, blocks)
    return model, {"method": "remove-ffn-neurons", "family": family, "params_before": before,
                   "params_after": _count_params(model),
                   "matmul_param_ratio": _block_matmul_params(blocks) / matmul_before,
                   "ffn": per_layer, "layout": layout}


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

    All scores are computed on the model as given, before any surgery. Llama class: ``gqa="group"``
    removes ``round(head_fraction * n_kv_heads)`` whole KV groups (group score = sum over its query
    heads, plus its K/V weights for magnitude); ``gqa="within"`` removes
    ``round(head_fraction * heads_per_group)`` query heads from every group.
    """
    if gqa not in ("group", "within"):
        raise ValueError(f"gqa must be 'group' or 'within', got {gqa!r}")
    family, blocks, head_s, group_s, ffn_s = _scores(model, method, calibration_batches, p)
    before = _count_params(model)
    matmul_before = _block_matmul_params(blocks)
    heads_before = sum(_HeadLayout(family, b).n_heads for b in blocks)
    ffn_before = sum(_FfnLayout(family, b).size for b in blocks)
    heads_to_prune: dict[int, list[int]] = {}
    ffn_keep: dict[int, list[int]] = {}
    for i, b in enumerate(blocks):
        lay = _HeadLayout(family, b)
        if head_fraction > 0:
            if family == "llama" and gqa == "group":
                n = _n_remove(head_fraction, lay.n_kv)
                groups = group_s[i].argsort()[:n].tolist()
                heads_to_prune[i] = [h for g in groups for h in range(g * lay.n_rep, (g + 1) * lay.n_rep)]
            elif family == "llama":
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
            size = _FfnLayout(family, b).size
            n = _n_remove(ffn_fraction, size)
            ffn_keep[i] = sorted(ffn_s[i].argsort(descending=True)[: size - n].tolist())
    _, head_info = prune_heads(model, heads_to_prune)
    _, ffn_info = prune_ffn_neurons(model, neurons_to_keep=ffn_keep)
    after = _count_params(model)
    layout = ffn_info["layout"]
    heads_removed = sum(len(v["removed"]) for v in head_info["heads"].values())
    ffn_removed = sum(v["removed_count"] for v in ffn_info["ffn"].values())
    return model, {
        "method": method,
        "family": family,
        "target_head_fraction": head_fraction,
        "target_ffn_fraction": ffn_fraction,
        "achieved_head_fraction": heads_removed / heads_before,
        "achieved_ffn_fraction": ffn_removed / ffn_before,
        "gqa": gqa if family == "llama" else None,
        "norm_p": p if method == "magnitude" else None,
        "params_before": before,
        "params_after": after,
        "param_reduction": 1.0 - after / before,
        # read by the runner to scale the config-derived matmul FLOPs of the pruned model
        "matmul_param_ratio": _block_matmul_params(blocks) / matmul_before,
        "attention_head_ratio": 1.0 - heads_removed / heads_before,
        "heads": head_info["heads"],
        "ffn": ffn_info["ffn"],
        "layout": layout,
    }


# --------------------------------------------------------------------------- 2:4 semi-structured


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
    device: Any = "cuda",
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
    if dev.type != "cuda":
        raise Unsupported(
            f"2:4 semi-structured sparsity runs on NVIDIA sparse tensor cores (CUDA, compute capability >= 8.0); "
            f"device is {dev.type}"
        )
    if not torch.cuda.is_available():
        raise Unsupported(f"2:4 semi-structured sparsity needs CUDA; torch {torch.__version__} sees no CUDA device")
    cap = torch.cuda.get_device_capability(dev)
    if cap < (8, 0):
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

    from transformers.pytorch_utils import Conv1D

    converted_conv1d = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                lin = torch.nn.Linear(child.nx, child.nf, bias=True, dtype=child.weight.dtype,
                                      device=child.weight.device)
                with torch.no_grad():
                    lin.weight.copy_(child.weight.t())
                    lin.bias.copy_(child.bias)
                setattr(parent, name, lin)
                converted_conv1d += 1
    model.to(device=dev, dtype=dtype)
    chosen, excluded = _candidates(model, include)
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
