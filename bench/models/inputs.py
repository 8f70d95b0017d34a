"""Model inputs: real tokenized text cut to the requested shape, built before any clock starts."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .text import reference_text

CHARS_PER_TOKEN_BOUND = 8
HELD_OUT_FROM = 0.5  # calibration and training windows come from this fraction of the text onwards
HELD_OUT_TEXT = "pydoc_data.topics, second half (never read by the timed inputs or the quality check)"  # generous: English averages ~4-5 characters per token


@lru_cache(maxsize=4)
def _token_stream(tokenizer: Any, chars: int) -> tuple[int, ...]:
    text = reference_text()[:chars]
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_stream(tokenizer: Any, n_tokens: int) -> list[int]:
    """At least `n_tokens` ids of reference text, tokenized once per length class."""
    chars = max(4096, n_tokens * CHARS_PER_TOKEN_BOUND)
    total = len(reference_text())
    while True:
        ids = _token_stream(tokenizer, min(chars, total))
        if len(ids) >= n_tokens or chars >= total:
            break
        chars *= 2
    if len(ids) < n_tokens:
        raise ValueError(f"the reference text gives only {len(ids)} tokens; {n_tokens} were asked for")
    return list(ids[:n_tokens])


def make_inputs(tokenizer: Any, task: str, batch_size: int, seq_len: int, vocab_size: int,
                offset_windows: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """A batch of distinct windows of real text, each exactly `seq_len` tokens.

    Encoders get [CLS] ... [SEP] around each window when the tokenizer has them. Ids at or above the
    model's vocabulary (a stand-in tokenizer) are wrapped modulo the vocabulary, and that is recorded.
    """
    cls, sep = getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "sep_token_id", None)
    wrap_specials = task == "encoder" and cls is not None and sep is not None and seq_len >= 3
    body = seq_len - 2 if wrap_specials else seq_len
    ids = token_stream(tokenizer, body * (batch_size + offset_windows))
    rows = []
    for i in range(offset_windows, offset_windows + batch_size):
        window = ids[i * body:(i + 1) * body]
        rows.append([cls, *window, sep] if wrap_specials else window)
    input_ids = np.asarray(rows, dtype=np.int64)
    wrapped = bool((input_ids >= vocab_size).any())
    if wrapped:
        input_ids %= vocab_size
    inputs = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
    info = {"text": "pydoc_data.topics (stdlib)", "batch_size": batch_size, "seq_len": seq_len,
            "special_tokens": wrap_specials, "ids_wrapped_to_vocab": wrapped}
    return inputs, info


@lru_cache(maxsize=4)
def held_out_windows(tokenizer: Any, task: str, vocab_size: int, seq_len: int) -> tuple[Any, dict]:
    """Every whole `seq_len`-token window of the reference text from HELD_OUT_FROM on, [CLS]/[SEP]-wrapped for
    encoders as the timed inputs are: text that neither the timed inputs nor the quality check read (they take
    windows from the start), for calibration and recovery training."""
    import torch

    text = reference_text()
    start = int(len(text) * HELD_OUT_FROM)
    ids = tokenizer(text[start:], add_special_tokens=False)["input_ids"]
    cls, sep = getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "sep_token_id", None)
    specials = task == "encoder" and cls is not None and sep is not None
    body = seq_len - 2 if specials else seq_len
    count = len(ids) // body
    rows = torch.tensor(ids[:count * body], dtype=torch.int64).view(count, body)
    if specials:
        rows = torch.cat([torch.full((count, 1), cls), rows, torch.full((count, 1), sep)], dim=1)
    wrapped = bool((rows >= vocab_size).any())
    return rows % vocab_size, {"text": "pydoc_data.topics (stdlib)", "chars": [start, len(text)],
                               "windows": count, "seq_len": seq_len, "ids_wrapped_to_vocab": wrapped}
