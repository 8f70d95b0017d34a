"""Ranking attention heads and FFN neurons for structured pruning (higher = keep).

``method="magnitude"`` (L_p norm of the weights touching a unit) needs no data but is a poor guide for
Llama-class SwiGLU FFNs (SmolLM2-135M, 25% FFN removed: next-token accuracy 0.80 -> 0.03);
``method="activation"`` (mean |activation| on calibration text) kept 0.71 at 50% removed. Under grouped-query
attention a KV group is ranked as a whole too (the sum over its query heads, plus its K/V weights for magnitude).
"""

from __future__ import annotations

from typing import Any, Iterable, Literal

from .layout import Blocks, weight_rows


def _norm(tensors: list, p: float) -> float:
    import torch

    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors])
    return float(torch.linalg.vector_norm(flat, ord=p))


def _calibrate(model: Any, batches: Iterable, s: Blocks) -> tuple[dict, dict]:
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


def unit_scores(model, method, calibration_batches, p) -> tuple[Blocks, dict, dict, dict]:
    """Per layer: query-head scores, KV-group scores and FFN-neuron scores (higher = keep)."""
    import torch

    s = Blocks.of(model)
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
            parts = [weight_rows(u, f.conv1d).detach().float().abs().pow(p).sum(1) for u in f.ups]
            parts.append(weight_rows(f.down, f.conv1d).detach().float().abs().pow(p).sum(0))
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
    _, head_s, _, _ = unit_scores(model, method, calibration_batches, p)
    return {i: s.tolist() for i, s in head_s.items()}


def rank_ffn_neurons(
    model: Any,
    method: Literal["magnitude", "activation"] = "magnitude",
    calibration_batches: Iterable | None = None,
    p: float = 2,
) -> dict[int, list[float]]:
    """Importance of every FFN neuron per layer: L_p norm of its up (and gate) rows and down column,
    or mean |activation| entering the down projection on the calibration batches."""
    _, _, _, ffn_s = unit_scores(model, method, calibration_batches, p)
    return {i: s.tolist() for i, s in ffn_s.items()}
