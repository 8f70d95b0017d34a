"""Work accounting from a transformers config: FLOPs and bytes of a forward pass or a decode step.

Conventions (stated in every record): a multiply-add is 2 FLOPs; attention scores and the
attention-weighted sum are counted over the full seq x seq matrix (what dense kernels compute, causal
or not); embeddings, norms, softmax and activations are not counted (a few % at these sizes).
Bytes are a lower bound: weights read once per forward, activations written and read once per layer,
and the KV cache read once per decode step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    gated_mlp: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def dims(config: Any) -> Dims:
    g = lambda *names, default=None: next((getattr(config, n) for n in names  # noqa: E731
                                           if getattr(config, n, None) is not None), default)
    hidden = g("hidden_size", "n_embd", "d_model")
    heads = g("num_attention_heads", "n_head")
    return Dims(hidden=hidden, layers=g("num_hidden_layers", "n_layer"), heads=heads,
                kv_heads=g("num_key_value_heads", default=heads),
                intermediate=g("intermediate_size", "n_inner", default=None) or 4 * hidden,
                vocab=g("vocab_size"), gated_mlp=getattr(config, "model_type", "") in ("llama", "mistral", "qwen2"))


def matmul_params_per_layer(d: Dims) -> int:
    """Weights of the matmuls of one block: q, k, v, o projections and the MLP."""
    kv = d.kv_heads * d.head_dim
    attn = d.hidden * d.hidden * 2 + d.hidden * kv * 2
    mlp = (3 if d.gated_mlp else 2) * d.hidden * d.intermediate
    return attn + mlp


def forward_flops(config: Any, task: str, batch: int, seq_len: int, include_lm_head: bool = True) -> dict:
    d = dims(config)
    tokens = batch * seq_len
    linear = 2 * d.layers * matmul_params_per_layer(d) * tokens
    attention = 4 * d.layers * batch * seq_len * seq_len * d.hidden
    head = 2 * d.hidden * d.vocab * tokens if task == "causal-lm" and include_lm_head else 0
    return {"total": linear + attention + head, "linear": linear, "attention": attention, "lm_head": head,
            "convention": "2 FLOPs per multiply-add; full seq x seq attention; norms/softmax/embeddings excluded"}


def decode_step_flops(config: Any, batch: int, context_len: int) -> dict:
    """One new token per row attending to `context_len` cached positions."""
    d = dims(config)
    linear = 2 * d.layers * matmul_params_per_layer(d) * batch
    attention = 4 * d.layers * batch * context_len * d.hidden
    head = 2 * d.hidden * d.vocab * batch
    return {"total": linear + attention + head, "linear": linear, "attention": attention, "lm_head": head}


def kv_cache_bytes(config: Any, batch: int, context_len: int, dtype_bytes: int) -> int:
    d = dims(config)
    return 2 * d.layers * d.kv_heads * d.head_dim * context_len * batch * dtype_bytes


def bytes_moved(config: Any, batch: int, seq_len: int, weight_bytes: int, dtype_bytes: int,
                decode_context: int | None = None) -> dict:
    """Lower-bound traffic of a forward pass (or of one decode step when `decode_context` is given)."""
    d = dims(config)
    tokens = batch if decode_context is not None else batch * seq_len
    per_layer = tokens * (8 * d.hidden + 2 * d.intermediate) * dtype_bytes
    if decode_context is None:
        per_layer += 2 * batch * d.heads * seq_len * seq_len * dtype_bytes  # attention probabilities
    activations = d.layers * per_layer
    kv = kv_cache_bytes(config, batch, decode_context, dtype_bytes) if decode_context is not None else 0
    return {"total": weight_bytes + activations + kv, "weights": weight_bytes, "activations": activations,
            "kv_cache": kv, "convention": "weights once, activations written+read once per layer, KV cache once"}


def arithmetic_intensity(flops: float, nbytes: float) -> float:
    return flops / nbytes if nbytes else float("inf")


def count_flops_torch(model: Any, inputs: dict) -> int:
    """Cross-check: FLOPs torch's FlopCounterMode attributes to matmuls and attention."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(**inputs)
    return counter.get_total_flops()
