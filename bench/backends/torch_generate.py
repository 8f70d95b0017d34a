"""A manual greedy decoding loop with a KV cache: the system-under-test side of generation.

It owns no clock. It reports each token through `on_token(i)` the moment token `i` exists as a
materialised tensor (after `torch.cuda.synchronize()` on CUDA; on CPU the eager `argmax` has
already produced it), and the timing side stamps the time. `model.generate` is not used because
it hides per-token boundaries and adds logits processors, stopping criteria and streamer overhead
that would be charged to the model.

Equivalent to `model.generate(do_sample=False, min_new_tokens=n, max_new_tokens=n)`: exactly
`new_tokens` tokens, no EOS stop, positions derived from the attention mask as `generate` does.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable


def _accepted_kwargs(model: Any) -> frozenset[str]:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and "input_ids" not in params:
        return frozenset()
    return frozenset(params)


def greedy_generate(model: Any, input_ids: Any, attention_mask: Any, new_tokens: int,
                    on_token: Callable[[int], None], device: Any) -> Any:
    """Greedy-decode exactly `new_tokens` tokens after the prompt; returns them as a (batch, new_tokens) tensor.

    One prefill forward over the whole prompt (use_cache=True), then one single-token forward per
    further token, feeding back `past_key_values` (a transformers 5 `Cache` object, updated in place,
    or a legacy tuple, whichever the model returns). Batches of equal-length prompts are supported;
    left padding works too because position ids come from the attention mask (cumsum - 1) as in
    `generate`. `on_token(i)` is called once per token, i = 0 .. new_tokens - 1, right after token i
    is materialised for the whole batch. The prefill asks for the last position's logits only
    (`logits_to_keep=1`) when the model accepts it, as `generate` does.
    """
    import torch

    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    accepted = _accepted_kwargs(model)
    extra: dict[str, Any] = {}
    if "logits_to_keep" in accepted:
        extra["logits_to_keep"] = 1
    use_positions = "position_ids" in accepted

    with torch.inference_mode():
        input_ids = input_ids.to(dev)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.to(dev)
        batch = input_ids.shape[0]
        out_tokens = torch.empty((batch, new_tokens), dtype=torch.long, device=dev)

        kwargs = dict(extra)
        if use_positions:
            positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
            kwargs["position_ids"] = positions
            last_pos = positions[:, -1:]
        out = model(input_ids=input_ids, attention_mask=mask, use_cache=True, **kwargs)
        past = out.past_key_values
        token = out.logits[:, -1, :].argmax(dim=-1)
        out_tokens[:, 0] = token
        if sync is not None:
            sync()
        on_token(0)

        ones = torch.ones((batch, 1), dtype=mask.dtype, device=dev)
        for i in range(1, new_tokens):
            mask = torch.cat([mask, ones], dim=-1)
            kwargs = dict(extra)
            if use_positions:
                last_pos = last_pos + 1
                kwargs["position_ids"] = last_pos
            out = model(input_ids=token[:, None], attention_mask=mask, past_key_values=past,
                        use_cache=True, **kwargs)
            past = out.past_key_values
            token = out.logits[:, -1, :].argmax(dim=-1)
            out_tokens[:, i] = token
            if sync is not None:
                sync()
            on_token(i)
    return out_tokens
