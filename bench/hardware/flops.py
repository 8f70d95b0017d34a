"""Work accounting from a transformers config: FLOPs and bytes of a forward pass or of one decode step.

FLOP convention (stated in every record, see `CONVENTION`):
  * a multiply-add is 2 FLOPs; only matrix multiplications are counted: the q/k/v/o projections, the MLP
    (two matmuls, three for gated SwiGLU-style MLPs), the two attention products (Q K^T and P V) and the
    LM head. Embedding look-ups, norms, softmax, activations, biases and residual adds are not counted
    (well under 1% at GPT-2/BERT sizes).
  * linear layers: 2 x matmul weights x tokens (the "2 N" of Kaplan et al. 2020 / Megatron, with N the
    matmul weights of the blocks).
  * attention, `attention="full"` (default): 4 x layers x batch x seq^2 x (heads x head_dim), i.e. the full
    seq x seq score matrix for both products. That is what eager attention and the math/CPU SDPA kernels
    compute, causal or not (the mask is applied to a fully computed matrix), and what torch's
    FlopCounterMode counts for SDPA. `attention="causal"` counts only the seq (seq + 1) / 2 unmasked
    pairs, which is what block-skipping flash kernels approach for long causal sequences.
  * decode step: one new token per row attending to `context_len` cached positions.
  * the LM head is counted for causal LMs (tied or not: the matmul is computed either way) over the positions
    whose logits are computed: every position of a plain forward, the last of each row in a generation's
    prefill (`logits_to_keep=1`, the ORT decoder's `logit_positions`); BERT's pooler and any classifier head
    are not.

Bytes convention (`bytes_moved`): a lower bound on DRAM traffic: weights read once per forward (or per
decode step), activations written and read once per layer, the attention-probability matrix written and
read once when it is materialized (eager attention), and the KV cache read once per decode step (written
once per prefill when `kv_cache=True`).
"""

from __future__ import annotations

from typing import Any

from ..models.families import Dims, family_of

CONVENTION = ("2 FLOPs per multiply-add; matmuls only (projections, MLP, QK^T and PV, LM head); attention "
              "over the {attention} seq x seq matrix; embeddings, norms, softmax, activations excluded")
BYTES_CONVENTION = ("lower bound: weights once (less embedding tables a query only gathers rows from), activations "
                    "written+read once per layer, attention probabilities once when materialized, KV cache read once "
                    "per decode step")


def dims(config: Any) -> Dims:
    """The dimensions that decide the work, read from a transformers config by its model family."""
    return family_of(config).dims(config)


def matmul_params_per_layer(d: Dims) -> int:
    """Weights of the matmuls of one block: q, k, v, o projections and the MLP (biases excluded)."""
    attn = d.hidden * d.q_dim * 2 + d.hidden * d.kv_dim * 2
    mlp = (3 if d.gated_mlp else 2) * d.hidden * d.intermediate
    return attn + mlp


def matmul_params(config: Any, include_lm_head: bool = False) -> int:
    """Matmul weights of all blocks (the N of 2 N), plus the LM head when asked."""
    d = dims(config)
    return d.layers * matmul_params_per_layer(d) + (d.hidden * d.vocab if include_lm_head else 0)


def _pairs(seq_len: int, attention: str) -> float:
    if attention == "full":
        return seq_len * seq_len
    if attention == "causal":
        return seq_len * (seq_len + 1) / 2
    raise ValueError(f"attention must be 'full' or 'causal', not {attention!r}")


def forward_flops(config: Any, task: str, batch: int, seq_len: int, include_lm_head: bool = True,
                  attention: str = "full", logits_per_row: int | None = None) -> dict:
    """FLOPs of one forward pass over `batch` x `seq_len` tokens, with its breakdown and convention.

    logits_per_row: positions per row the LM head runs on (None: all `seq_len`; 1: a generation's prefill).
    """
    if task not in ("encoder", "causal-lm"):
        raise ValueError(f"task must be 'encoder' or 'causal-lm', not {task!r}")
    d = dims(config)
    tokens = batch * seq_len
    linear = 2 * d.layers * matmul_params_per_layer(d) * tokens
    attn = int(4 * d.layers * batch * _pairs(seq_len, attention) * d.q_dim)
    head_positions = batch * (seq_len if logits_per_row is None else min(logits_per_row, seq_len))
    head = 2 * d.hidden * d.vocab * head_positions if task == "causal-lm" and include_lm_head else 0
    return {"total": linear + attn + head, "linear": linear, "attention": attn, "lm_head": head,
            "tokens": tokens, "logit_positions": head_positions if head else 0,
            "convention": CONVENTION.format(attention=attention)}


def decode_step_flops(config: Any, batch: int, context_len: int, include_lm_head: bool = True) -> dict:
    """One decode step: one new token per row, attending to `context_len` cached positions."""
    d = dims(config)
    linear = 2 * d.layers * matmul_params_per_layer(d) * batch
    attn = 4 * d.layers * batch * context_len * d.q_dim
    head = 2 * d.hidden * d.vocab * batch if include_lm_head else 0
    return {"total": linear + attn + head, "linear": linear, "attention": attn, "lm_head": head,
            "tokens": batch, "context_len": context_len,
            "convention": "one token per row; " + CONVENTION.format(attention="1 x context")}


def kv_cache_bytes(config: Any, batch: int, context_len: int, dtype_bytes: int) -> int:
    """Keys and values of every layer for `context_len` positions (GQA: kv_heads, not heads)."""
    d = dims(config)
    return 2 * d.layers * d.kv_dim * context_len * batch * dtype_bytes


def weight_bytes_from_config(config: Any, dtype_bytes: float, include_lm_head: bool = True) -> int:
    """Matmul weights (plus the LM head) at `dtype_bytes` each: an analytic stand-in for a measured size."""
    return int(matmul_params(config, include_lm_head=include_lm_head) * dtype_bytes)


def bytes_moved(config: Any, batch: int, seq_len: int, weight_bytes: int, dtype_bytes: int,
                decode_context: int | None = None, kv_cache: bool = False,
                attention_probs: bool = True) -> dict:
    """Lower-bound traffic of a forward pass over `seq_len` tokens, or of one decode step when
    `decode_context` is given (then `seq_len` is ignored: one token per row).

    kv_cache: a prefill that writes the KV cache for a later decode (counts its bytes once).
    attention_probs: the seq x seq probabilities are materialized (eager attention); False for fused
    flash/SDPA kernels that keep them on chip.
    """
    d = dims(config)
    decode = decode_context is not None
    tokens = batch if decode else batch * seq_len
    # per layer: block input, q, k, v, context, attention output, MLP input and output (8 x hidden), the
    # MLP intermediate written and read (2 x intermediate), each once
    per_layer = tokens * (8 * d.hidden + 2 * d.intermediate) * dtype_bytes
    probs = 0
    if attention_probs:
        rows = 1 if decode else seq_len
        cols = decode_context if decode else seq_len
        probs = d.layers * 2 * batch * d.heads * rows * cols * dtype_bytes
    activations = d.layers * per_layer + probs
    if decode:
        kv = kv_cache_bytes(config, batch, decode_context, dtype_bytes)
    else:
        kv = kv_cache_bytes(config, batch, seq_len, dtype_bytes) if kv_cache else 0
    return {"total": weight_bytes + activations + kv, "weights": weight_bytes, "activations": activations,
            "attention_probs": probs, "kv_cache": kv, "convention": BYTES_CONVENTION}


def arithmetic_intensity(flops: float, nbytes: float) -> float:
    """FLOPs per byte moved."""
    return flops / nbytes if nbytes else float("inf")


def _cpu_sdpa_formula():
    """FlopCounterMode has no formula for the CPU flash SDPA kernel; count it like the CUDA ones."""
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None:
        return {}

    def formula(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return {op: formula}


def count_flops_torch(model: Any, inputs: dict, by_op: bool = False) -> int | dict:
    """Cross-check: the FLOPs torch's FlopCounterMode attributes to matmuls and attention in one forward.

    Same convention as above (2 per multiply-add, full attention matrix for SDPA). With `by_op`, a dict
    {op name: FLOPs} instead of the total.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_formula())
    with counter, torch.inference_mode():
        model(**inputs)
    if by_op:
        return {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops()
