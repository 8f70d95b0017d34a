"""Greedy generation with a KV cache that reports each token as it is produced.

The loop is written out (not `model.generate`) so that the timing side can be told the moment each
token exists: on CUDA after a synchronise, on CPU as soon as argmax returns. The same loop serves the `generate`
scenario (one prompt length, the model's default positions) and the serving engines' batches of left-padded
prompts (explicit positions, so each row counts from its own first token).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from ...devices import get_device


def greedy_steps(model: Any, input_ids: Any, attention_mask: Any, device: str,
                 position_ids: Any = None) -> Iterator[Any]:
    """Each step's greedy tokens [batch, 1], computed when asked for (stop iterating and no further forward runs);
    yielded once they exist (after a synchronise on a device with a queue). `position_ids` None: the model's
    default positions (an unpadded batch)."""
    import torch

    sync = get_device(device).synchronize
    positions = {} if position_ids is None else {"position_ids": position_ids}
    with torch.inference_mode():  # entered per step: a suspended generator must not leave it on for its caller
        # logits for the last position only, as `generate` does: the prefill's LM head is not charged per prompt token
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, logits_to_keep=1, **positions)
        next_token = out.logits[:, -1, :].argmax(-1, keepdim=True)
    while True:
        sync()
        yield next_token
        with torch.inference_mode():
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], 1)
            if position_ids is not None:
                positions["position_ids"] = positions["position_ids"][:, -1:] + 1
            out = model(input_ids=next_token, attention_mask=attention_mask, past_key_values=out.past_key_values,
                        use_cache=True, **positions)
            next_token = out.logits[:, -1, :].argmax(-1, keepdim=True)


def greedy_generate(model: Any, input_ids: Any, attention_mask: Any, new_tokens: int,
                    on_token: Callable[[int], None], device: str) -> Any:
    """Exactly `new_tokens` greedy tokens per row (no EOS stop); returns them as a [batch, new_tokens] tensor."""
    import torch

    tokens: list = []
    for i, next_token in zip(range(new_tokens), greedy_steps(model, input_ids, attention_mask, device)):
        on_token(i)
        tokens.append(next_token)
    return torch.cat(tokens, dim=1)
