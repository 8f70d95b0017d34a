"""Greedy generation with a KV cache that reports each token as it is produced.

The loop is written out (not `model.generate`) so that the timing side can be told the moment each
token exists: on CUDA after a synchronise, on CPU as soon as argmax returns.
"""

from __future__ import annotations

from typing import Any, Callable

from ...devices import get_device


def greedy_generate(model: Any, input_ids: Any, attention_mask: Any, new_tokens: int,
                    on_token: Callable[[int], None], device: str) -> Any:
    """Exactly `new_tokens` greedy tokens per row (no EOS stop); returns them as a [batch, new_tokens] tensor."""
    import torch

    sync = get_device(device).synchronize
    tokens: list = []
    next_token = None
    with torch.inference_mode():
        # logits for the last position only, as `generate` does: the prefill's LM head is not charged per prompt token
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, logits_to_keep=1)
        for i in range(new_tokens):
            if i:
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], 1)
                out = model(input_ids=next_token, attention_mask=attention_mask, past_key_values=out.past_key_values,
                            use_cache=True)
            next_token = out.logits[:, -1, :].argmax(-1, keepdim=True)
            sync()
            on_token(i)
            tokens.append(next_token)
    return torch.cat(tokens, dim=1)
